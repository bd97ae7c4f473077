"""``honeydew worker``: a worker node on a RabbitMQ queue, from the command line.

::

    honeydew worker MODULE[:CLASS] --queue URL --name NAME --workers N [--args JSON]
                    [--failure-mode SPEC] [--allow-callables]

It imports the worker (a module with ``@honeydew.task`` functions and an optional ``init``, or a
class), builds ``honeydew.Pool(worker, args, num_workers=N, queue=RabbitMQ(URL, NAME))`` and serves
until it is stopped.  The signing key comes from the environment (``HONEYDEW_SIGNING_KEY``), never
from the command line, where any user could read it with ``ps``.

``SPEC`` is a failure mode: ``abandon`` (the default), ``move``, ``requeue`` or ``requeue:N``
(``max_deliveries``), ``retry``, ``retry:TIMES`` or ``retry:TIMES:BACKOFF`` (seconds, doubling),
each optionally followed by ``+`` and the mode that takes over when it gives up:
``retry:3:1.0+move``, ``requeue:5+move``.

SIGTERM (or Ctrl-C) is a warm stop: running jobs finish and are acked, no new job starts, and the
jobs the node had prefetched go back to the broker; a second one stops at once (the broker then
delivers the running jobs again).  Either way no job is lost.  After a warm stop the process ends
as SIGTERM ends it (status 143 in a shell); 1: the pool failed; 2: a usage error (said on stderr in
one or two lines, with a correct call).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import sys
import time
from typing import Any

from .failure_modes import Abandon, FailureMode, Move, Requeue, Retry

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXAMPLE = ("HONEYDEW_SIGNING_KEY=... honeydew worker myapp.tasks --queue amqp://user:password@host:5672/%2F "
           "--name jobs --workers 4")


class UsageError(Exception):
    """A bad argument (exit 2): the message, and a correct call."""


def add_parser(commands: Any) -> None:
    """Register ``worker`` among the command line's subcommands."""
    p = commands.add_parser("worker", help="serve a RabbitMQ queue: a worker node (honeydew worker --help)",
                            description="Run a worker node: a pool of N workers consuming the RabbitMQ queue NAME. "
                                        "The signing key is read from HONEYDEW_SIGNING_KEY.")
    p.example = EXAMPLE
    p.add_argument("worker", metavar="MODULE[:CLASS]", help="the worker: an importable module, or a class in it")
    p.add_argument("--queue", required=True, metavar="URL", help="the broker's AMQP URL (pika's URLParameters)")
    p.add_argument("--name", default="honeydew", help="the queue's name (default: honeydew)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, metavar="N",
                   help="worker processes (default: the number of CPUs)")
    p.add_argument("--args", default="[]", metavar="JSON", help="init's (or the class's) positional arguments, a "
                   "JSON list (default: [])")
    p.add_argument("--failure-mode", default="abandon", metavar="SPEC",
                   help="abandon | move | requeue[:N] | retry[:TIMES[:BACKOFF]], optionally +MODE for what takes "
                        "over (e.g. retry:3:1.0+move)")
    p.add_argument("--allow-callables", action="store_true",
                   help="also run jobs that carry a callable instead of naming a registered task")


def failure_mode(spec: str) -> FailureMode:
    """The failure mode ``spec`` stands for (see the module docstring); ``UsageError`` if none."""
    head, _, rest = spec.strip().partition("+")
    then = failure_mode(rest) if rest else None
    word, *numbers = head.strip().lower().split(":")
    try:
        if word == "abandon" and not numbers and then is None:
            return Abandon()
        if word == "move" and not numbers and then is None:
            return Move()
        if word == "requeue" and len(numbers) <= 1:
            return Requeue(int(numbers[0]) if numbers else 5, then=then)
        if word == "retry" and len(numbers) <= 2:
            times = int(numbers[0]) if numbers else 3
            backoff = float(numbers[1]) if len(numbers) > 1 else 1.0
            return Retry(times=times, backoff=backoff, then=then)
    except (TypeError, ValueError) as e:
        raise UsageError(f"--failure-mode {spec!r}: {e}") from None
    raise UsageError(f"--failure-mode {spec!r} is not a failure mode: abandon, move, requeue[:N] or "
                     f"retry[:TIMES[:BACKOFF]], optionally +MODE (e.g. retry:3:1.0+move)")


def load_worker(target: str) -> Any:
    """Import ``MODULE[:CLASS]``."""
    module_name, _, class_name = target.partition(":")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as e:
        raise UsageError(f"cannot import the worker module {module_name!r}: {type(e).__name__}: {e}") from None
    if not class_name:
        return module
    worker = getattr(module, class_name, None)
    if not isinstance(worker, type):
        raise UsageError(f"{module_name!r} has no class {class_name!r}")
    return worker


def run(args: argparse.Namespace) -> int:
    """``honeydew worker ...``: serve until stopped."""
    import honeydew
    from honeydew.queues import RabbitMQ

    try:
        if args.workers < 1:
            raise UsageError(f"--workers must be >= 1, not {args.workers}")
        try:
            init_args = json.loads(args.args)
        except ValueError as e:
            raise UsageError(f"--args must be a JSON list, got {args.args!r} ({e})") from None
        if not isinstance(init_args, list):
            raise UsageError(f"--args must be a JSON list, got {args.args!r}")
        mode = failure_mode(args.failure_mode)
        worker = load_worker(args.worker)
        try:
            queue = RabbitMQ(args.queue, args.name, allow_callables=args.allow_callables)
        except ValueError as e:
            raise UsageError(str(e)) from None
    except UsageError as e:
        print(f"honeydew worker: {e}\n  e.g. {EXAMPLE}", file=sys.stderr)
        return EXIT_USAGE
    try:
        pool = honeydew.Pool(worker, tuple(init_args) if init_args else None, num_workers=args.workers, queue=queue,
                             failure_mode=mode)
    except (honeydew.HoneydewError, TypeError, ValueError) as e:
        print(f"honeydew worker: {e}", file=sys.stderr)
        return EXIT_USAGE if isinstance(e, (TypeError, ValueError)) else EXIT_FAILED
    print(f"honeydew worker: serving queue {args.name!r} of {queue!r} with {args.workers} worker(s), failure mode "
          f"{mode!r}; SIGTERM or Ctrl-C: warm stop", flush=True)
    stopping = _watch_sigterm()
    while True:
        try:
            time.sleep(1.0)
            if not stopping:
                pool.status()  # (raises once the pool is broken)
        except KeyboardInterrupt:
            if stopping:
                pool.terminate()
                return EXIT_OK
            os.kill(os.getpid(), signal.SIGTERM)  # the first Ctrl-C: a warm stop, as SIGTERM
        except honeydew.HoneydewError as e:
            if stopping:
                continue  # (the warm stop is over: the pool ends this process by SIGTERM)
            print(f"honeydew worker: the pool stopped: {e}", file=sys.stderr)
            return EXIT_FAILED


def _watch_sigterm() -> list[int]:
    """A list that becomes non-empty at the first SIGTERM; the pools' own handler (the warm stop)
    still runs."""
    seen: list[int] = []
    previous = signal.getsignal(signal.SIGTERM)

    def handle(signum: int, frame: Any) -> None:
        seen.append(signum)
        if callable(previous):
            previous(signum, frame)
        else:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, handle)
    return seen
