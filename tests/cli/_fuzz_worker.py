"""Worker process of ``test_fuzz.py``: runs ``probe list`` in-process on each mutant.

Usage: ``python tests/cli/_fuzz_worker.py CASES.json EVENTS.jsonl``. ``CASES.json``
is a list of ``{"id": ..., "path": ...}``. One JSON line is appended to
``EVENTS.jsonl`` (and flushed) when the worker is ready, when a case starts and
when it ends, so the parent process can tell which case hung or crashed the
worker and enforce its time bound by killing it. TensorFlow is imported once.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path
from typing import IO, Any

#: At most this much of a case's stdout is kept in its record.
STDOUT_KEPT = 2000


def _emit(events: IO[str], **record: Any) -> None:
    """Appends one event line and makes it visible to the parent at once."""
    events.write(json.dumps(record) + "\n")
    events.flush()


def main(argv: list[str]) -> int:
    """Runs every case of ``argv[1]``, reporting to ``argv[2]``."""
    cases = json.loads(Path(argv[1]).read_text())
    from click.testing import CliRunner

    from probe_cli.backends import tfenv as _tf
    from probe_cli.cli import cli

    _tf.keras()  # import TensorFlow before the first case, so its cost is no case's
    try:  # and the TensorFlow Lite interpreter, when installed
        import ai_edge_litert.interpreter  # noqa: F401
    except ImportError:
        pass
    try:  # and ONNX, when installed
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        pass
    runner = CliRunner()
    with open(argv[2], "a", encoding="utf-8") as events:
        _emit(events, event="ready")
        for case in cases:
            _emit(events, event="start", id=case["id"])
            started = time.monotonic()
            result = runner.invoke(cli, ["list", case["path"]], catch_exceptions=True)
            escaped = None
            if result.exception is not None and not isinstance(result.exception, SystemExit):
                escaped = "".join(traceback.format_exception(result.exception))
            _emit(
                events,
                event="done",
                id=case["id"],
                exit_code=result.exit_code,
                stdout=result.stdout[:STDOUT_KEPT],
                stderr=result.stderr,
                escaped=escaped,
                seconds=time.monotonic() - started,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
