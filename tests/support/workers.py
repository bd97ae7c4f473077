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
