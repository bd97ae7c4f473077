"""Entry point of a supervisor started as a fresh interpreter (the caller had other threads, and
forking a multi-threaded process can copy a lock some other thread held).

``python -c "from honeydew._boot import main; main()" FD`` (not ``-m``, which would warn that the
module is already imported): reads from pipe ``FD`` the caller's ``sys.path`` (plain pickle,
so that the next read can import the user's modules), its logging set-up, and then the
cloudpickled :class:`~honeydew.supervisor.SupervisorConfig`, and runs the supervisor.
"""

from __future__ import annotations

import logging
import os
import pickle
import sys
from typing import Any


def logging_setup() -> dict[str, Any]:
    """In the caller: the root logger's level and the formats of its stdout/stderr handlers, so that
    pool processes started from a fresh interpreter log like the forked ones would."""
    root = logging.getLogger()
    handlers = []
    for h in root.handlers:
        stream = getattr(h, "stream", None)
        name = "stderr" if stream is sys.stderr else "stdout" if stream is sys.stdout else None
        if name is None or type(h) is not logging.StreamHandler:
            continue
        fmt = h.formatter
        handlers.append((name, h.level, fmt._fmt if fmt else None, fmt.datefmt if fmt else None,
                         type(fmt._style).__name__ if fmt else "PercentStyle"))
    return {"level": root.level, "handlers": handlers}


_STYLES = {"PercentStyle": "%", "StrFormatStyle": "{", "StringTemplateStyle": "$"}


def apply_logging(setup: dict[str, Any]) -> None:
    root = logging.getLogger()
    root.setLevel(setup["level"])
    for name, level, fmt, datefmt, style in setup["handlers"]:
        h = logging.StreamHandler(sys.stderr if name == "stderr" else sys.stdout)
        h.setLevel(level)
        h.setFormatter(logging.Formatter(fmt, datefmt, style=_STYLES.get(style, "%")))  # type: ignore[arg-type]
        root.addHandler(h)


def main() -> None:
    fd = int(sys.argv[1])
    with os.fdopen(fd, "rb") as f:
        path = pickle.load(f)
        sys.path[:] = path
        apply_logging(pickle.load(f))
        cfg = pickle.load(f)
    from . import supervisor

    supervisor.run(cfg)


if __name__ == "__main__":
    main()
