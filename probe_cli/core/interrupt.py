"""A Ctrl-C or SIGTERM that is never lost, wherever it lands.

Python turns a signal into a ``KeyboardInterrupt`` wherever the main thread is. There it can be
lost: inside an import that catches everything, a C extension that drops it, a ``__del__`` that
prints and swallows it ("Exception ignored in ..."). So the CLI's handler records the signal here
before raising, and whatever publishes a result (the archive writer) asks :func:`check` first: a
recorded signal stops the publishing even when its exception never arrived. Pure Python: nothing
here installs a handler; a library caller's process is only affected when it calls :func:`request`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_requested = False
#: Depth of :func:`publishing` sections: a signal there is recorded, not raised.
_publishing = 0
#: Archives published while :func:`watch` was on, so an interrupt's message can tell the truth.
_published: list[Path] | None = None


def request() -> bool:
    """Records a signal; whether the handler should raise now (not while a result is being published)."""
    global _requested
    _requested = True
    return _publishing == 0


def requested() -> bool:
    return _requested


def check() -> None:
    """Raises ``KeyboardInterrupt`` if a signal was recorded, even one whose exception was lost."""
    if _requested:
        raise KeyboardInterrupt


@contextmanager
def publishing(path: Path) -> Iterator[None]:
    """Around making a result visible at ``path``: first :func:`check`, then no signal interrupts the
    publishing half-way; one that arrives meanwhile stays recorded for the caller to honour."""
    global _publishing
    _publishing += 1
    try:
        check()
        yield
        if _published is not None:
            _published.append(Path(path))
    finally:
        _publishing -= 1


def published() -> list[Path]:
    """What :func:`publishing` made visible since :func:`watch` began."""
    return list(_published or ())


@contextmanager
def watch() -> Iterator[None]:
    """For the CLI, which owns its process: remember what is published, for :func:`published`. A signal
    recorded during one invocation is forgotten after it, so a script or notebook running the CLI again
    in the same process is not stopped by an old Ctrl-C."""
    global _published, _requested
    saved, _published = _published, []
    saved_request, _requested = _requested, False
    try:
        yield
    finally:
        _published, _requested = saved, saved_request
