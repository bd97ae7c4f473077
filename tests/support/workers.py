"""Worker modules and tasks used across the tests.  Importable, so they pickle by reference."""

from __future__ import annotations

import ctypes
import os
import signal
import time

import honeydew

# --- a module-style worker is this module itself: init + @task functions -----------------------

def init(prefix: str = "state") -> dict:
    return {"prefix": prefix, "pid": os.getpid(), "created": time.time()}


@honeydew.task
def echo(value, state):
    return value


@honeydew.task
def tag(value, state, *, suffix=""):
    return f"{state['prefix']}:{value}{suffix}"


@honeydew.task
def whoami(state):
    return state["pid"]


@honeydew.task
def sleep(seconds, state):
    time.sleep(seconds)
    return seconds


@honeydew.task
def boom(message, state):
    raise ValueError(message)


@honeydew.task
def die(how, state):
    crash(how)


def crash(how: str) -> None:
    """Kill the calling process the way ``how`` says."""
    if how == "exit0":
        os._exit(0)
    if how == "exit":
        os._exit(13)
    if how == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if how == "term":
        os.kill(os.getpid(), signal.SIGTERM)
    if how == "segv":
        ctypes.string_at(0)
    raise ValueError(f"unknown crash {how!r}")


# --- plain functions for a worker-less pool ---------------------------------------------------

def square(x):
    return x * x


def add(a, b):
    return a + b


def nap(seconds):
    time.sleep(seconds)
    return seconds


def fail(message):
    raise ValueError(message)


def getpid():
    return os.getpid()


def die_plain(how):
    crash(how)


# --- a class worker -----------------------------------------------------------------------------

class Counter:
    def __init__(self, start: int = 0) -> None:
        self.value = start
        self.pid = os.getpid()

    @honeydew.task
    def incr(self, by: int = 1) -> int:
        self.value += by
        return self.value

    @honeydew.task
    def get(self) -> int:
        return self.value

    def not_a_task(self) -> None:
        pass


class Unpicklable:
    """Pickles fine, but unpickling runs ``os._exit(7)`` (a crash while decoding arguments)."""

    def __reduce__(self):
        return (os._exit, (7,))


class RaisesOnUnpickle:
    def __reduce__(self):
        return (_raise_value_error, ("cannot rebuild",))


def _raise_value_error(msg):
    raise ValueError(msg)


class Hooked:
    """A class worker with ``before_job``/``after_job`` hooks that record what they saw; a task
    arms the next job's ``before_job`` to raise, or this job's ``after_job``."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str | None]] = []
        self.refuse_next = False
        self.after_raises = False

    def before_job(self, job: honeydew.JobInfo) -> None:
        self.seen.append(("before", job.id, None))
        if self.refuse_next:
            self.refuse_next = False
            raise PermissionError(f"before_job refused job {job.id}")

    def after_job(self, job: honeydew.JobInfo, error: BaseException | None) -> None:
        self.seen.append(("after", job.id, type(error).__name__ if error is not None else None))
        if self.after_raises:
            self.after_raises = False
            raise RuntimeError("after_job broke")

    @honeydew.task
    def history(self) -> list[tuple[str, str, str | None]]:
        return list(self.seen)

    @honeydew.task
    def arm_refusal(self) -> str:
        self.refuse_next = True
        return honeydew.current_job().id

    @honeydew.task
    def arm_after_failure(self) -> str:
        self.after_raises = True
        return honeydew.current_job().id

    @honeydew.task
    def fail(self) -> None:
        raise ValueError("the task failed")

    @honeydew.task
    def steps(self, n: int) -> int:
        for i in range(1, n + 1):
            honeydew.progress(i / n, f"step {i} of {n}")
        return n
