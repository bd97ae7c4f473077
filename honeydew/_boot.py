"""Entry point of a supervisor started as a fresh interpreter (the caller had other threads, and
forking a multi-threaded process can copy a lock some other thread held).

``python -m honeydew._boot FD``: reads from pipe ``FD`` the caller's ``sys.path`` (plain pickle,
so that the next read can import the user's modules) and then the cloudpickled
:class:`~honeydew.supervisor.SupervisorConfig`, and runs the supervisor.
"""

from __future__ import annotations

import os
import pickle
import sys


def main() -> None:
    fd = int(sys.argv[1])
    with os.fdopen(fd, "rb") as f:
        path = pickle.load(f)
        sys.path[:] = path
        cfg = pickle.load(f)
    from . import supervisor

    supervisor.run(cfg)


if __name__ == "__main__":
    main()
