"""probe as a user runs it: the installed executable, ``python -m probe_cli``, start-up cost and log noise."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import ANSI, ROOT, SAMPLES, Samples, tensors_of

from probe_cli import __version__
from probe_cli.cli.commands import INTERRUPTED_MESSAGE

#: Lines TensorFlow prints on its own (C++ logging, oneDNN, CUDA probing) that probe must hide.
TF_NOISE = ("oneDNN", "absl::InitializeLog", "cuda", "cpu_feature_guard", "I0000", "W0000", "E0000", "tensorflow/")


def probe_executable() -> Path:
    """The console script installed beside this interpreter (else on PATH)."""
    beside = Path(sys.executable).parent / "probe"
    if beside.is_file():
        return beside
    found = shutil.which("probe")
    if found is None:
        pytest.skip("the probe console script is not installed")
    return Path(found)


def clean_env() -> dict[str, str]:
    """The environment of a fresh shell: nothing this test process set up to quieten TensorFlow."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "PYTHONWARNINGS"))}
    env.pop("COLUMNS", None)
    return env


def run(args: list[str], env: dict[str, str] | None = None, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Runs a command as a user would, from the repo root, in a clean environment (plus ``env``)."""
    return subprocess.run(
        args,
        capture_output=True,
        text=True,
        timeout=120,
        env={**clean_env(), **(env or {})},
        cwd=kwargs.pop("cwd", ROOT),
        **kwargs,
    )


def assert_quiet(stderr: str) -> None:
    """No TensorFlow log line, traceback or warning on stderr."""
    for noise in TF_NOISE:
        assert noise not in stderr, f"TensorFlow log line leaked ({noise!r}):\n{stderr}"
    assert "Traceback" not in stderr
    assert "Warning" not in stderr, stderr


@pytest.mark.parametrize("args", [["--help"], ["dump", "--help"], ["list", "--help"], ["--version"]])
def test_help_does_not_import_tensorflow(args: list[str]) -> None:
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from probe_cli.cli import cli\n"
        f"result = CliRunner().invoke(cli, {args!r})\n"
        "assert result.exit_code == 0, result.output\n"
        "heavy = sorted(m for m in ('tensorflow', 'keras', 'h5py') if m in sys.modules)\n"
        "print(repr(heavy))\n"
    )
    result = run([sys.executable, "-c", code])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"{args} imported {result.stdout.strip()}"


CLI_LIST = (
    "from click.testing import CliRunner\n"
    "from probe_cli.cli import cli\n"
    "result = CliRunner().invoke(cli, {args!r})\n"
    "assert result.exit_code == 0, result.output\n"
)
LIBRARY_IMPORT = "from probe_cli.backends import tfenv as _tf\n_tf.keras()\n"


@pytest.mark.parametrize(
    ("through", "expected"),
    [("the CLI", "none False"), ("the library", "pyplot True"), ("the library after the CLI", "pyplot True")],
)
def test_plotting_packages_skipped_only_by_the_cli(samples: Samples, through: str, expected: str) -> None:
    """Keras imports matplotlib.pyplot (0.3 s median) when installed; the CLI's TensorFlow import skips it and
    leaves matplotlib importable (``probe plot`` needs it), the library leaves a user's process as it was,
    also after the CLI ran in that process."""
    pytest.importorskip("matplotlib")
    call = {
        "the CLI": CLI_LIST.format(args=["list", str(samples.cnn_h5)]),
        "the library": LIBRARY_IMPORT,
        "the library after the CLI": CLI_LIST.format(args=["--help"]) + LIBRARY_IMPORT,
    }[through]
    code = (
        "import sys\n"
        f"{call}"
        "import keras.src.visualization.plot_image_gallery as gallery\n"
        "print('pyplot' if 'matplotlib.pyplot' in sys.modules else 'none', gallery.plt is not None)\n"
        "from matplotlib.figure import Figure\n"
        "Figure()\n"
    )
    result = run([sys.executable, "-c", code])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


def test_pure_modules_do_not_import_tensorflow() -> None:
    """The stages that need no graph (resolve, feed, archive, names, stats) load without TensorFlow."""
    code = (
        "import sys, probe_cli.core.resolve, probe_cli.feed, probe_cli.archive.writer, probe_cli.archive.reader, "
        "probe_cli.core.names, probe_cli.core.stats, probe_cli.analysis.show, probe_cli.analysis.diff\n"
        "print(repr(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules)))\n"
    )
    result = run([sys.executable, "-c", code])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_installed_help_imports_no_framework() -> None:
    """The console script's --help (what ratio 7 times in ``make bench``) imports neither TensorFlow nor h5py."""
    result = run([str(probe_executable()), "--help"], env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert result.returncode == 0 and "dump" in result.stdout and "Exit codes" in result.stdout
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in result.stderr.splitlines() if "|" in line}
    assert "click" in imported  # the import log is there to read
    assert not imported & {"tensorflow", "keras", "h5py", "numpy"}, sorted(imported)


def test_installed_executable_list_is_plain_and_quiet(
    samples: Samples, index_of: Callable[[str], dict[str, Any]]
) -> None:
    """Piped output has no color or box drawing; TensorFlow's log lines stay hidden; names match in-process ones."""
    result = run([str(probe_executable()), "list", str(samples.cnn_h5)])
    assert result.returncode == 0, result.stderr
    assert not ANSI.search(result.stdout)
    assert_quiet(result.stderr)
    assert result.stderr == ""
    for tensor in index_of("cnn")["tensors"]:
        assert tensor["name"] in result.stdout


def test_installed_executable_dump_custom_layer(samples: Samples, tmp_path: Path) -> None:
    """A second process names the custom layer's ops as this one does, and dumps them."""
    archive = tmp_path / "rcnn.h5"
    result = run(
        [str(probe_executable()), "dump", str(samples.rcnn_h5), "--custom-objects", str(samples.rcnn_layers),
         "-t", "ROI/.*NonMax.*", "-o", str(archive), "--json"]
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert_quiet(result.stderr)
    doc = json.loads(result.stdout)
    names = [t["name"] for t in doc["tensors"]]
    assert names and all(n.startswith("ROI/") for n in names)
    assert any(n.endswith("NonMaxSuppressionV3:0") for n in names)
    assert archive.is_file()


def test_installed_executable_error_is_one_line(tmp_path: Path) -> None:
    result = run([str(probe_executable()), "list", str(tmp_path / "missing.h5")])
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"Error: model {str(tmp_path / 'missing.h5')!r} does not exist"]
    assert result.stdout == ""


@pytest.mark.parametrize("where", ["before the command", "after it"])
def test_python_dash_m_verbose_shows_tensorflow_logs(samples: Samples, where: str) -> None:
    """``python -m probe_cli -v``: TensorFlow's own log lines reach stderr, stdout stays clean JSON."""
    args = ["list", str(samples.cnn_h5), "--layers", "--json"]
    args = ["-v", *args] if where == "before the command" else [*args, "-v"]
    result = run([sys.executable, "-m", "probe_cli", *args])
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert [layer["name"] for layer in doc["layers"]][:2] == ["image", "conv1"]
    assert any(noise in result.stderr for noise in TF_NOISE), f"-v should let TensorFlow log:\n{result.stderr}"


def test_python_dash_m_version() -> None:
    result = run([sys.executable, "-m", "probe_cli", "--version"])
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"probe, version {__version__}\n"


def test_closed_stdout_is_not_a_crash(samples: Samples) -> None:
    """``probe list MODEL | head -1``: the reader leaving early gives no traceback and no 'unexpected' error."""
    proc = subprocess.Popen(
        [str(probe_executable()), "list", str(samples.cnn_h5)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=clean_env(),
        cwd=ROOT,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # nobody reads: every write probe makes fails with EPIPE
    stderr = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert "Traceback" not in stderr and "unexpected" not in stderr, stderr
    assert "Exception ignored" not in stderr, stderr
    assert proc.returncode in (0, 1, 141, -13), proc.returncode


def _wait_until_mapped(proc: subprocess.Popen[str], library: str, timeout: float = 60.0) -> None:
    """Returns once ``proc`` has ``library`` mapped; otherwise kills it and fails with its stderr."""
    maps = Path(f"/proc/{proc.pid}/maps")
    deadline = time.monotonic() + timeout
    while library not in maps.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            _, stderr = proc.communicate(timeout=60)
            pytest.fail(f"{library} was never loaded (exit {proc.returncode}): {stderr}")
        time.sleep(0.005)


def _signal_while_loading(
    args: list[str], signum: int, library: str = "libtensorflow", delay: float = 0.0, **popen: Any
) -> tuple[int, str]:
    """``probe ARGS``, sent ``signum`` ``delay`` seconds after ``library`` is mapped; its exit code and stderr."""
    proc = subprocess.Popen(
        [str(probe_executable()), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
        cwd=ROOT,
        **popen,
    )
    _wait_until_mapped(proc, library)
    time.sleep(delay)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=120)
    return proc.returncode, stderr


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc")
def test_an_ignored_ctrl_c_stays_ignored(samples: Samples, tmp_path: Path) -> None:
    """A shell starts ``probe dump ... &`` with SIGINT ignored, so Ctrl-C on the script leaves it running."""
    output = tmp_path / "out.h5"
    code, stderr = _signal_while_loading(
        ["dump", str(samples.cnn_h5), "-l", "probs", "-o", str(output)],
        signal.SIGINT,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    assert code == 0, stderr
    assert "probs/Softmax:0" in tensors_of(output)


#: Moments to signal at: once a shared library is mapped, plus a delay. They span h5py's import, TensorFlow's
#: C++ core and its Python modules importing (where a signal was lost in CI) and the rest of the import.
SIGNAL_MOMENTS = [
    ("libhdf5", 0.0),
    ("libtensorflow_framework", 0.0),
    ("libtensorflow_framework", 0.2),
    ("_pywrap_tfe", 0.0),
    ("_pywrap_utils", 0.05),
    ("_pywrap_parallel_device", 0.0),
]


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc")
def test_signals_at_many_moments_exit_130_and_write_nothing(samples: Samples, tmp_path: Path) -> None:
    """Ctrl-C or SIGTERM while probe works: exit 130, one line, no archive, wherever the signal lands.

    In CI a signal during ``import tensorflow`` came back from a C extension as ``ImportError:
    initialization failed``, and once it was lost altogether: exit 0 and an archive. The dumps run at
    once, so each signal lands on a loaded machine (2 cores in CI) as it did there; each is sent once a
    library is mapped, not after a fixed sleep that a fast machine outruns.
    """
    from concurrent.futures import ThreadPoolExecutor

    def interrupted(case: int) -> tuple[int, str, list[Path]]:
        library, delay = SIGNAL_MOMENTS[case]
        out = tmp_path / str(case)
        out.mkdir()
        signum = (signal.SIGINT, signal.SIGTERM)[case % 2]
        code, stderr = _signal_while_loading(
            ["dump", str(samples.cnn_h5), "-o", str(out / "out.h5")], signum, library, delay
        )
        return code, stderr, list(out.iterdir())

    with ThreadPoolExecutor(len(SIGNAL_MOMENTS)) as pool:
        results = list(pool.map(interrupted, range(len(SIGNAL_MOMENTS))))
    for moment, (code, stderr, left) in zip(SIGNAL_MOMENTS, results):
        assert (code, stderr.strip().splitlines(), left) == (130, [f"Error: {INTERRUPTED_MESSAGE}"], []), moment


TFLITE_DELEGATE_LINE = "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
LIBRARY_ON_TFLITE = (
    "import os, probe_cli as probe\n"
    "m = probe.open({float!r})\n"
    "m.run(layers=['probs'])\n"
    "probe.compare({float!r}, {int8!r})\n"
    "os.write(2, b'stderr is back\\n')\n"
)


@pytest.mark.parametrize("through", ["the CLI", "the CLI with -v", "the library"])
def test_the_tflite_delegate_line_is_hidden_unless_verbose(samples: Samples, tmp_path: Path, through: str) -> None:
    """LiteRT's C++ side prints its delegate's INFO line on the process's stderr: hidden as TensorFlow's own
    messages are, shown with -v; around a library call fd 2 is redirected only for the call."""
    pytest.importorskip("ai_edge_litert")
    tflite, int8 = SAMPLES / "cnn_float.tflite", SAMPLES / "cnn_int8.tflite"
    if through == "the library":
        result = run([sys.executable, "-c", LIBRARY_ON_TFLITE.format(float=str(tflite), int8=str(int8))])
        assert (result.returncode, result.stderr) == (0, "stderr is back\n")
        return
    verbose = ["-v"] if through == "the CLI with -v" else []
    result = run([str(probe_executable()), "dump", str(tflite), "-o", str(tmp_path / "t.h5"), *verbose])
    assert result.returncode == 0, result.stderr
    assert (TFLITE_DELEGATE_LINE in result.stderr) == bool(verbose), result.stderr
    if not verbose:
        assert result.stderr == ""
