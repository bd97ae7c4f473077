"""A benchmark host: one long-lived process per system, which runs that system's trials.

``python -m benchmarks.host SYSTEM``.  The runner writes one JSON command per line on stdin and
reads one JSON reply per line.  Replies go out on a private copy of the original stdout; fd 1
itself is pointed at stderr, so whatever a pool or a task prints never mixes with the replies.

Why a process per system: each side's workers are forked from a parent that has imported only
that side's library (plus this harness); honeydew's default start method sees a single-threaded
caller, as a user's script would; and a trial that hangs costs one host (the runner kills it and
starts another), not the whole run.  Startup costs are paid once per host, outside every timing;
a host's first pool (created, used once and left) is also outside every timing, so helper
processes a library keeps for the life of its parent (loky's resource tracker) exist before the
first measured pool and are not counted as that pool's processes.
"""

from __future__ import annotations

import faulthandler
import json
import os
import signal
import sys
import traceback
from typing import Any


def main() -> None:
    name = sys.argv[1]
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    from . import systems, trials

    def reply(obj: dict[str, Any]) -> None:
        out.write(json.dumps(obj) + "\n")

    try:
        if name not in (systems.SERIAL, systems.FLOOR, systems.HUEY):
            from . import tasks
            system = systems.adapter(name)
            pool = system.open()
            system.call(pool, tasks.noop)
            system.exit(pool)
            trials.single_threaded(name)
        helpers = sorted(f"{pid}:{trials._name(p)}" for pid, p in trials.descendants().items())
        reply({"ok": True, "ready": name, "pid": os.getpid(), "helpers": helpers})
    except BaseException:
        reply({"ok": False, "error": traceback.format_exc()})
        raise
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd.get("kind") == "exit":
            break
        before = os.times()
        try:
            result = trials.run_trial(cmd["kind"], name, cmd["params"])
        except Exception:
            reply({"ok": False, "error": traceback.format_exc()})
        else:
            # CPU of this host and of every pool process it (or its descendants) reaped meanwhile
            after = os.times()
            cpu = sum(after[:4]) - sum(before[:4])
            reply({"ok": True, "result": result, "cpu_s": cpu})
    out.close()


if __name__ == "__main__":
    main()
