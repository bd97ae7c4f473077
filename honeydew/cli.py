"""The operator's command line: ``honeydew`` (a console script) and ``python -m honeydew``.

::

    honeydew status            --pid PID | --sqlite PATH   [--pool N] [--json] [--timeout S]
    honeydew pools             --pid PID
    honeydew failed list       --pid PID | --sqlite PATH   [--limit N]
    honeydew failed retry [ID...]  (no id: every kept job)
    honeydew failed purge [ID...]
    honeydew suspend | resume  --pid PID | --sqlite PATH

A target is a running program (``--pid``: the pid of the program that holds the ``Pool``, reached
through its control socket, :mod:`honeydew.control`) or a durable queue file (``--sqlite``: opened
here with ``honeydew.queues.SQLite``).  Output is an aligned table, or JSON with ``--json``.  Exit
status: 0 it worked, 1 the operation failed (for a pool, or for some of the given ids), 2 a usage
or target error (a bad option, a dead pid, a pid without a pool, a bad path).  Errors are one or two
lines on stderr, with a correct call; never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from . import control

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

#: the operation each command asks for
_OPS = {"status": "status", "pools": "pools", "list": "failed", "retry": "retry_failed", "purge": "purge_failed",
        "suspend": "suspend", "resume": "resume"}


class _TargetError(Exception):
    """The target cannot be used (exit 2): the message, and a correct call to show."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


class _Parser(argparse.ArgumentParser):
    """An argparse parser whose errors are two lines: what is wrong, and a correct call."""

    example = ""

    def error(self, message: str) -> NoReturn:
        example = self.example or "honeydew status --pid 12345"
        self.exit(EXIT_USAGE, f"{self.prog}: {message}\n  e.g. {example}   (more: {self.prog} --help)\n")


def _parser() -> _Parser:
    top = _Parser(prog="honeydew", description="Look at and steer honeydew pools: a running program's (--pid) or "
                  "a durable queue file's (--sqlite).",
                  epilog="exit status: 0 it worked, 1 the operation failed, 2 a usage or target error")
    top.example = "honeydew status --pid 12345"
    from . import __version__
    top.add_argument("--version", action="version", version=f"honeydew {__version__}")

    def target(p: _Parser, sqlite: bool = True, pool: bool = True) -> None:
        group = p.add_mutually_exclusive_group()
        group.add_argument("--pid", type=int, metavar="PID",
                           help="the pid of the running program that holds the Pool (its control socket)")
        if sqlite:
            group.add_argument("--sqlite", metavar="PATH", help="a durable queue file (honeydew.queues.SQLite)")
        if pool:
            p.add_argument("--pool", type=int, metavar="N",
                           help="with --pid: only the program's pool N (honeydew pools --pid PID lists them); "
                                "default: every pool")
        p.add_argument("--json", action="store_true", help="print JSON (for scripts) instead of a table")
        p.add_argument("--timeout", type=float, default=control.DEFAULT_TIMEOUT, metavar="S",
                       help=f"seconds to wait for the answer (default {control.DEFAULT_TIMEOUT:g})")

    commands = top.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    p = commands.add_parser("status", help="queues and worker slots: state, pids, pending and running jobs")
    p.example = "honeydew status --pid 12345"
    target(p)
    p = commands.add_parser("pools", help="the pools a program holds (their indices for --pool)")
    p.example = "honeydew pools --pid 12345"
    target(p, sqlite=False, pool=False)

    failed = commands.add_parser("failed", help="the jobs honeydew.Move() kept: list, retry, purge")
    failed.example = "honeydew failed list --pid 12345"
    failed.set_defaults(failed_parser=failed)
    actions = failed.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    p = actions.add_parser("list", help="the kept jobs, newest first")
    p.example = "honeydew failed list --pid 12345"
    target(p)
    p.add_argument("--limit", type=int, default=100, metavar="N", help="at most N jobs (default 100)")
    for name, what in (("retry", "put kept jobs back in the queue (no ID: all of them)"),
                       ("purge", "delete kept jobs (no ID: all of them)")):
        p = actions.add_parser(name, help=what)
        p.example = f"honeydew failed {name} --pid 12345 [ID ...]"
        p.add_argument("ids", nargs="*", metavar="ID", help="job ids, as `honeydew failed list` shows them")
        target(p)

    for name, what in (("suspend", "dispatch nothing more until resume (running jobs finish)"),
                       ("resume", "dispatch again")):
        p = commands.add_parser(name, help=what)
        p.example = f"honeydew {name} --pid 12345"
        target(p)
    from . import worker_node
    worker_node.add_parser(commands)
    return top


# --------------------------------------------------------------------------- main

def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (the console script exits with it)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "worker":
        from .worker_node import run
        return run(args)
    if args.command is None:
        parser.error("give a command: status, pools, failed list|retry|purge, suspend or resume")
    command = args.action if args.command == "failed" else args.command
    if command is None:
        args.failed_parser.error("give an action: list, retry or purge")
    words = "failed " + command if args.command == "failed" else command
    op = _OPS[command]
    sqlite = getattr(args, "sqlite", None)
    as_json = bool(args.json)
    target: dict[str, Any] = {"pid": args.pid} if args.pid is not None else {"sqlite": sqlite}
    try:
        _check_usage(args, words, sqlite)
        if sqlite is not None:
            entries = _on_sqlite(sqlite, op, args)
        else:
            entries = _on_pid(args.pid, op, args, words)
    except _TargetError as e:
        return _target_failed(str(e), e.hint, as_json, target, op)
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # (a bug of this command: said in one line all the same)
        print(f"honeydew: {words}: unexpected error: {control._describe(e)}", file=sys.stderr)
        return EXIT_FAILED
    try:
        if as_json:
            return _print_json(entries, target, op, args)
        return _print_table(entries, op, args, sqlite is not None)
    except BrokenPipeError:   # (| head: the reader has gone; say nothing more)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def _check_usage(args: argparse.Namespace, words: str, sqlite: str | None) -> None:
    if args.pid is None and sqlite is None:
        pids = control.live_pids()
        raise _TargetError(f"{words}: give a target: --pid PID (the program that holds the Pool) or --sqlite PATH "
                           f"(a queue file)", _example(words, pids))
    if sqlite is not None and getattr(args, "pool", None) is not None:
        raise _TargetError(f"{words}: --pool chooses among a program's pools; with --sqlite there is only the file",
                           f"honeydew {words} --sqlite {sqlite}")
    if not 0 < args.timeout <= control.MAX_TIMEOUT:
        raise _TargetError(f"{words}: --timeout must be in (0, {control.MAX_TIMEOUT:g}] seconds, not {args.timeout:g}",
                           f"honeydew {words} --pid 12345 --timeout 10")
    if getattr(args, "limit", 0) < 0:
        raise _TargetError(f"{words}: --limit must be >= 0, not {args.limit}", f"honeydew {words} --pid 12345 "
                           f"--limit 20")


def _example(words: str, pids: list[int]) -> str:
    """A correct call: with a pid of this user's that holds a pool, if there is one."""
    if pids:
        more = f" (programs with pools: {', '.join(map(str, pids[:8]))})" if len(pids) > 1 else ""
        return f"honeydew {words} --pid {pids[0]}{more}"
    return (f"honeydew {words} --pid PID   (PID: the program that made the Pool; none of this user's programs "
            f"holds one now)")


def _target_failed(message: str, hint: str, as_json: bool, target: dict[str, Any], op: str) -> int:
    if as_json:
        print(json.dumps({"ok": False, "target": target, "op": op, "error": message}))
    text = f"honeydew: {message}"
    if hint:
        text += f"\n  e.g. {hint}"
    print(text, file=sys.stderr)
    return EXIT_USAGE


# --------------------------------------------------------------------------- --pid: the control socket

def _on_pid(pid: int, op: str, args: argparse.Namespace, words: str) -> list[dict[str, Any]]:
    request: dict[str, Any] = {"op": op, "pool": getattr(args, "pool", None)}
    if op == "failed":
        request["limit"] = args.limit
    if op in ("retry_failed", "purge_failed"):
        request["ids"] = list(dict.fromkeys(args.ids)) or None
    try:
        answer = control.ask(pid, request, timeout=args.timeout)
    except control.ControlError as e:
        others = [p for p in control.live_pids() if p != pid]
        raise _TargetError(str(e), _example(words, others)) from None
    if not answer.get("ok"):
        error = str(answer.get("error", "refused"))
        hint = f"honeydew pools --pid {pid}" if "has no pool" in error else ""
        raise _TargetError(error if f"process {pid}" in error else f"process {pid}: {error}", hint)
    value = answer.get("value")
    if not isinstance(value, list):
        raise _TargetError(f"process {pid} answered {str(value)[:80]!r}, not a list of pools")
    return value


# --------------------------------------------------------------------------- --sqlite: the queue file

def _on_sqlite(path: str, op: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    words = {"status": "status", "failed": "failed list", "retry_failed": "failed retry",
             "purge_failed": "failed purge"}.get(op, op)
    if op == "pools":
        raise _TargetError("pools lists a program's pools: it needs --pid", "honeydew pools --pid 12345")
    try:
        from .queues import SQLite
    except ImportError:
        raise _TargetError("--sqlite is not available in this honeydew (honeydew.queues.SQLite is missing)",
                           f"honeydew {words} --pid 12345") from None
    full = os.path.abspath(path)
    if not os.path.exists(full):
        raise _TargetError(f"no queue file {full}", f"honeydew {words} --sqlite /path/to/jobs.db   (the path given to "
                           f"honeydew.queues.SQLite)")
    if not os.path.isfile(full):
        raise _TargetError(f"{full} is not a queue file (not a regular file)",
                           f"honeydew {words} --sqlite /path/to/jobs.db")
    backend = SQLite(full)
    if op in ("suspend", "resume") and not callable(getattr(backend, "set_suspended", None)):
        raise _TargetError(f"{op} is per pool: the queue file {full} cannot {op} the pools that serve it",
                           f"honeydew {op} --pid PID   (each program that serves {os.path.basename(full)})")
    from .queues.base import Owner
    try:
        backend.check()
        # (as an owner of its own: the file's reads and writes are those of an open backend)
        backend.open(Owner(f"cli-{os.urandom(6).hex()}", 0, 0, os.getpid()))
    except Exception as e:
        raise _TargetError(f"{full}: {e}", f"honeydew {words} --sqlite /path/to/jobs.db") from None
    entry: dict[str, Any] = {"pool": None, "repr": repr(backend)}
    try:
        entry.update(ok=True, value=_sqlite_op(backend, op, args))
    except Exception as e:
        entry.update(ok=False, error=control._describe(e))
    finally:
        try:
            backend.close()
        except Exception:
            pass
    return [entry]


def _sqlite_op(backend: Any, op: str, args: argparse.Namespace) -> Any:
    if op == "status":
        status = dict(backend.status())
        if isinstance(status.get("owners"), int):
            status["owners"] = max(0, status["owners"] - 1)  # (not counting this command's own opening)
        return status
    if op == "failed":
        from .failed import describe
        return [describe(job)._asdict() for job in backend.failed(args.limit)]
    if op in ("retry_failed", "purge_failed"):
        return getattr(backend, op)(list(dict.fromkeys(args.ids)) or None)
    return backend.set_suspended(op == "suspend")  # (the queue processes that did not confirm in time)


# --------------------------------------------------------------------------- output

def _asked(args: argparse.Namespace) -> int:
    return len(dict.fromkeys(getattr(args, "ids", None) or ()))


def _shortfall(entries: list[dict[str, Any]], op: str, args: argparse.Namespace) -> str:
    """For retry/purge of given ids: why it did not do them all ('' if it did)."""
    asked = _asked(args)
    if op not in ("retry_failed", "purge_failed") or not asked:
        return ""
    done = sum(e["value"] for e in entries if e.get("ok") and isinstance(e.get("value"), int))
    if done >= asked:
        return ""
    return f"{asked - done} of the {asked} given job id(s) are not in the failed store"


def _print_json(entries: list[dict[str, Any]], target: dict[str, Any], op: str, args: argparse.Namespace) -> int:
    failed = [e for e in entries if not e.get("ok")]
    short = _shortfall(entries, op, args)
    out: dict[str, Any] = {"ok": not failed and not short, "target": target, "op": op, "results": entries}
    if op in ("retry_failed", "purge_failed"):
        out["count"] = sum(e["value"] for e in entries if e.get("ok") and isinstance(e.get("value"), int))
    if short:
        out["error"] = short
    print(json.dumps(out, indent=2, default=repr))
    return EXIT_OK if out["ok"] else EXIT_FAILED


def _print_table(entries: list[dict[str, Any]], op: str, args: argparse.Namespace, sqlite: bool) -> int:
    ok = [e for e in entries if e.get("ok")]
    render: dict[str, Callable[[list[dict[str, Any]], bool, str], list[str]]] = {
        "status": _status_lines, "pools": _pools_lines, "failed": _failed_lines,
        "retry_failed": _count_lines, "purge_failed": _count_lines, "suspend": _toggle_lines,
        "resume": _toggle_lines}
    lines = render[op](ok, sqlite, op) if ok else []
    if lines:
        print("\n".join(lines))
    status = EXIT_OK
    for e in entries:
        if not e.get("ok"):
            where = "" if sqlite else f"pool {e.get('pool')} {e.get('repr', '')}: "
            print(f"honeydew: {where}{e.get('error', 'failed')}", file=sys.stderr)
            status = EXIT_FAILED
    short = _shortfall(entries, op, args)
    if short:
        print(f"honeydew: {short} (see honeydew failed list)", file=sys.stderr)
        status = EXIT_FAILED
    return status


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """Aligned columns, two spaces apart, no trailing blanks."""
    cells = [[_cell(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in [list(headers), *cells]]


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return " ".join(str(value).split())   # one line


def _clip(text: Any, width: int) -> str:
    text = _cell(text)
    return text if len(text) <= width else text[:width - 1] + "…"


def age(seconds: float) -> str:
    """``12s``, ``4m``, ``3h``, ``2d``."""
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def _status_lines(entries: list[dict[str, Any]], sqlite: bool, op: str) -> list[str]:
    if sqlite:
        st = entries[0]["value"]
        keys = [k for k in ("pending", "delayed", "reserved", "failed_store", "replies", "owners", "file_suspended")
                if k in st]
        return table(["QUEUE FILE", *(("SUSPENDED" if k == "file_suspended" else k.upper()) for k in keys)],
                     [[st.get("path", entries[0]["repr"]), *(_cell(st[k]) for k in keys)]])
    out: list[str] = []
    for e in entries:
        st = e["value"]
        if out:
            out.append("")
        backends = sorted({str(q.get("backend", "?")) for q in st.get("queues", [])})
        out.append(f"pool {e['pool']}  {e['repr']}")
        out.append(f"  queue {', '.join(backends) or '?'}; suspended: {_cell(st.get('suspended'))}; "
                   f"closed: {_cell(st.get('closed'))}; supervisor pid {_cell(st.get('supervisor_pid'))}; "
                   f"start method {_cell(st.get('start_method'))}")
        running: dict[int, list[str]] = {}
        rows = []
        for q in st.get("queues", []):
            jobs = q.get("running") or {}
            for slot, ids in jobs.items():
                running.setdefault(int(slot), []).extend(ids)
            rows.append([q.get("index"), q.get("pid"), _queue_state(q), q.get("pending"), q.get("delayed"),
                         sum(len(ids) for ids in jobs.values()), q.get("done"), q.get("failed"),
                         q.get("suspended")])
        out += table(["QUEUE", "PID", "STATE", "PENDING", "DELAYED", "RUNNING", "DONE", "FAILED", "SUSPENDED"],
                     rows)
        rows = []
        for w in st.get("workers", []):
            state = str(w.get("state", "?"))
            if state == "backoff" and w.get("next_attempt_in"):
                state += f" ({w['next_attempt_in']:.0f}s)"
            jobs = running.get(int(w.get("slot", -1)), [])
            rows.append([w.get("slot"), w.get("pid") or None, state, ", ".join(jobs) or None,
                         w.get("init_failures"), w.get("monitor_restarts"), _clip(w.get("last_error") or None, 60)])
        if rows:
            out += table(["WORKER", "PID", "STATE", "RUNNING", "INIT FAILURES", "RESTARTS", "LAST ERROR"], rows)
    return out


def _queue_state(q: dict[str, Any]) -> str:
    for key, word in (("shutting_down", "stopping"), ("draining", "draining"), ("no_worker", "no worker"),
                      ("suspended", "suspended")):
        if q.get(key):
            return word
    return "running"


def _pools_lines(entries: list[dict[str, Any]], sqlite: bool, op: str) -> list[str]:
    return table(["POOL", "PID", "QUEUE", "POOL REPR"],
                 [[e["pool"], e["value"].get("pid"), e["value"].get("backend"), e["repr"]] for e in entries])


def _failed_lines(entries: list[dict[str, Any]], sqlite: bool, op: str) -> list[str]:
    now = time.time()
    several = len(entries) > 1
    rows = []
    for e in entries:
        for r in e["value"]:
            row = [r.get("id"), _clip(r.get("task"), 40), _clip(r.get("error"), 70), r.get("deliveries"),
                   age(now - float(r.get("failed_at") or now))]
            rows.append([e["pool"], *row] if several else row)
    if not rows:
        return ["no failed jobs"]
    headers = ["ID", "TASK", "ERROR", "DELIVERIES", "AGE"]
    return table(["POOL", *headers] if several else headers, rows)


def _count_lines(entries: list[dict[str, Any]], sqlite: bool, op: str) -> list[str]:
    total = sum(int(e["value"]) for e in entries)
    line = f"{'retried' if op == 'retry_failed' else 'purged'} {total} failed job(s)"
    if len(entries) > 1:
        line += " (" + ", ".join(f"pool {e['pool']}: {e['value']}" for e in entries) + ")"
    return [line]


def _toggle_lines(entries: list[dict[str, Any]], sqlite: bool, op: str) -> list[str]:
    done = "suspended" if op == "suspend" else "resumed"
    if sqlite:
        late = entries[0].get("value") or []
        return [f"{done}: {entries[0]['repr']}: every pool on the file" + (
            f" (not yet confirmed by {', '.join(late)}: it dispatches nothing once it sees the file)" if late else "")]
    return [f"{done}: pool {e['pool']}  {e['repr']}" for e in entries]
