"""Entry point of a supervisor started as a fresh interpreter (the caller had other threads, and
forking a multi-threaded process can copy a lock some other thread held).

``python -c "from honeydew._boot import main; main()" FD CONTROL`` (not ``-m``, which would warn
that the module is already imported): reads from pipe ``FD`` the caller's ``sys.path`` (plain
pickle, so that the next read can import the user's modules), its logging set-up, its
``multiprocessing`` authkey, and then the cloudpickled :class:`~honeydew.supervisor.SupervisorConfig`,
and runs the supervisor.  If that config cannot be loaded (a pool made at the top level of the
worker's module, say), it says why on the control socket ``CONTROL`` (``BootFailed``) and exits 5.
"""

from __future__ import annotations

import logging
import os
import pickle
import sys
from typing import Any

from . import _process
from ._process import EXIT_BOOT_FAILED, become


def output_fds() -> set[int]:
    """In the caller: the descriptors behind ``sys.stdout``/``sys.stderr`` (which need not be 1 and
    2: a redirected or captured stream) and those its logging handlers write to.  A forked supervisor
    keeps them while it closes every other inherited descriptor, so pool processes print and log
    where the caller does."""
    fds = set()
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            fds.add(stream.fileno())  # type: ignore[union-attr]
        except (AttributeError, OSError, ValueError):
            pass
    loggers = [logging.getLogger()] + [lg for lg in logging.Logger.manager.loggerDict.values()
                                       if isinstance(lg, logging.Logger)]
    for lg in loggers:
        for h in lg.handlers:
            try:
                fds.add(h.stream.fileno())  # type: ignore[attr-defined]
            except (AttributeError, OSError, ValueError):
                pass
    return fds


def logging_setup() -> dict[str, Any]:
    """In the caller: the root logger's level and its stdout/stderr and file handlers (with their
    formats), so that pool processes started from a fresh interpreter log like the forked ones."""
    root = logging.getLogger()
    handlers = []
    for h in root.handlers:
        stream = getattr(h, "stream", None)
        if type(h) is logging.FileHandler:
            target = "file:" + h.baseFilename
        elif type(h) is logging.StreamHandler and stream in (sys.stderr, sys.stdout):
            target = "stderr" if stream is sys.stderr else "stdout"
        else:
            continue
        fmt = h.formatter
        handlers.append((target, h.level, fmt._fmt if fmt else None, fmt.datefmt if fmt else None,
                         type(fmt._style).__name__ if fmt else "PercentStyle"))
    return {"level": root.level, "handlers": handlers}


_STYLES = {"PercentStyle": "%", "StrFormatStyle": "{", "StringTemplateStyle": "$"}


def apply_logging(setup: dict[str, Any]) -> None:
    root = logging.getLogger()
    root.setLevel(setup["level"])
    for target, level, fmt, datefmt, style in setup["handlers"]:
        h: logging.Handler
        if target.startswith("file:"):
            h = logging.FileHandler(target[5:], mode="a")
        else:
            h = logging.StreamHandler(sys.stderr if target == "stderr" else sys.stdout)
        h.setLevel(level)
        h.setFormatter(logging.Formatter(fmt, datefmt, style=_STYLES.get(style, "%")))  # type: ignore[arg-type]
        root.addHandler(h)


def main() -> None:
    fd, control = int(sys.argv[1]), int(sys.argv[2])
    with os.fdopen(fd, "rb") as f:
        path = pickle.load(f)
        sys.path[:] = path
        apply_logging(pickle.load(f))
        # the caller's multiprocessing authkey: Manager proxies and the like passed as arguments
        # authenticate with it, as they do in a forked pool
        import multiprocessing

        multiprocessing.current_process().authkey = pickle.load(f)
        # loading the config imports the user's worker module: a pool made at its top level is refused
        _process.decoding = "the pool's supervisor (a fresh interpreter) imported the worker"
        try:
            cfg = pickle.load(f)
        except BaseException as e:
            _boot_failed(control, e)
        finally:
            _process.decoding = ""
    from . import supervisor

    supervisor.run(cfg)


def _boot_failed(control: int, e: BaseException) -> None:
    """Tell the caller why this supervisor cannot start (``BootFailed``), log it, and exit."""
    import socket

    from ._wire import Endpoint
    from .errors import qualname
    from .protocol import BootFailed

    become("hd-supervisor", parent=None)
    reason = f"{qualname(type(e))}: {e}"
    logging.getLogger("honeydew.supervisor").error("the pool's supervisor cannot start: %s", reason,
                                                   exc_info=(type(e), e, e.__traceback__))
    try:
        Endpoint(socket.socket(fileno=control)).send(BootFailed(reason))
    except OSError:
        pass
    sys.stderr.flush()
    os._exit(EXIT_BOOT_FAILED)


if __name__ == "__main__":
    main()
