"""``@task``, ``make_spec`` and ``WorkerSpec``: how a user's worker becomes something a worker process runs."""

from __future__ import annotations

import pickle
import types
from typing import Any

import cloudpickle
import pytest
from support import workers as W

import honeydew
from honeydew.errors import UnknownTask
from honeydew.tasks import WorkerSpec, make_spec, task


def module(name: str, **attrs: Any) -> types.ModuleType:
    m = types.ModuleType(name)
    for k, v in attrs.items():
        setattr(m, k, v)
    return m


@task
def record(*args: Any, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
    return args, kwargs


def make_state(*args: Any) -> tuple[str, tuple[Any, ...]]:
    return ("STATE", args)


class Recorder:
    def __init__(self, *args: Any) -> None:
        self.args = args

    @task
    def record(self, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        return (self, args, kwargs)

    @task
    def other(self) -> str:
        return "other"

    def helper(self) -> None:
        pass


class SubRecorder(Recorder):
    @task
    def extra(self) -> str:
        return "extra"


# --------------------------------------------------------------------------- @task


def test_task_marks_and_returns_the_function() -> None:
    def f() -> None:
        pass

    assert task(f) is f
    assert honeydew.task is task


@pytest.mark.parametrize("bad", [42, "name", None])
def test_task_on_a_non_callable(bad: Any) -> None:
    with pytest.raises(TypeError, match="honeydew.task"):
        task(bad)


def test_task_on_a_builtin() -> None:
    with pytest.raises(TypeError, match="honeydew.task"):
        task(len)


# --------------------------------------------------------------------------- make_spec


def test_module_worker() -> None:
    spec = make_spec(W, ["p"])
    assert spec.kind == "module"
    assert spec.name == "support.workers"
    assert spec.init is W.init
    assert spec.args == ("p",)
    assert spec.has_state
    assert {"echo", "tag", "whoami", "sleep", "boom", "die"} <= set(spec.tasks)
    assert not {"init", "crash", "square", "add"} & set(spec.tasks)
    assert spec.tasks["echo"] is W.echo


@pytest.mark.parametrize("args", [None, [], ()])
def test_module_worker_default_init_args(args: Any) -> None:
    spec = make_spec(W, args)
    assert spec.args == ()
    assert spec.build_state()["prefix"] == "state"


def test_module_worker_tuple_args() -> None:
    assert make_spec(W, ("x",)).args == ("x",)


def test_class_worker() -> None:
    spec = make_spec(W.Counter, [10])
    assert spec.kind == "class"
    assert spec.name == "Counter"
    assert spec.init is W.Counter
    assert spec.args == (10,)
    assert set(spec.tasks) == {"incr", "get"}
    state = spec.build_state()
    assert isinstance(state, W.Counter) and state.value == 10


def test_class_worker_inherits_tasks() -> None:
    spec = make_spec(SubRecorder, [])
    assert set(spec.tasks) == {"record", "other", "extra"}


def test_overriding_a_task_without_the_decorator_runs_the_override() -> None:
    """A subclass overrides a task method (without repeating @task).  Calling the task must not run
    the base class's method, which ``self.method()`` would never call: either the override runs, or
    the name is no longer a task."""

    class Base:
        @task
        def which(self) -> str:
            return "base"

    class Sub(Base):
        def which(self) -> str:
            return "sub"

    spec = make_spec(Sub, [])
    assert spec.tasks.get("which") in (None, Sub.which)
    if "which" in spec.tasks:
        assert spec.invoke("which", (), {}, Sub()) == "sub"


def test_no_worker() -> None:
    for args in (None, (), []):
        spec = make_spec(None, args)
        assert spec.kind == "none"
        assert not spec.has_state
        assert spec.tasks == {}
        assert spec.build_state() is None


def test_namespace_worker() -> None:
    ns = types.SimpleNamespace(init=make_state, record=record)
    spec = make_spec(ns, [1])
    assert spec.kind == "module"
    assert spec.tasks == {"record": record}


def test_module_without_init_has_no_state() -> None:
    spec = make_spec(module("noinit", record=record), [])
    assert spec.kind == "module"
    assert not spec.has_state
    assert spec.invoke("record", (1, 2), {"k": 3}, spec.build_state()) == ((1, 2), {"k": 3})


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize("args", ["abc", b"abc", 5, {"a": 1}, {1, 2}, 1.5], ids=repr)
def test_init_args_must_be_a_list_or_tuple(args: Any) -> None:
    for worker in (W, W.Counter, None):
        with pytest.raises(TypeError) as info:
            make_spec(worker, args)
        message = str(info.value)
        assert "list or tuple" in message
        assert "honeydew.Pool(" in message  # shows a correct call


def test_init_args_without_init() -> None:
    with pytest.raises(TypeError) as info:
        make_spec(module("noinit", record=record), [1, 2])
    assert "(1, 2)" in str(info.value) and "init" in str(info.value)


def test_init_args_without_worker() -> None:
    with pytest.raises(TypeError) as info:
        make_spec(None, ["x"])
    message = str(info.value)
    assert "no worker" in message and "honeydew.Pool(" in message


@pytest.mark.parametrize("args", [[1, 2], ["a", "b", "c"]])
def test_module_init_arity(args: list[Any]) -> None:
    with pytest.raises(TypeError) as info:
        make_spec(W, args)
    message = str(info.value)
    assert "init" in message and repr(tuple(args)) in message


def test_module_init_keyword_only_mismatch() -> None:
    def init(*, required: int) -> int:
        return required

    with pytest.raises(TypeError, match="init"):
        make_spec(module("kw", init=init), [])


def test_module_init_not_callable() -> None:
    with pytest.raises(TypeError, match="init"):
        make_spec(module("badinit", init=42), [])


@pytest.mark.parametrize("args", [[1, 2, 3], ["a", "b"]])
def test_class_init_arity(args: list[Any]) -> None:
    """``Pool(Counter, [1, 2, 3])`` cannot work (``Counter(1, 2, 3)`` is a TypeError in every worker,
    retried forever): like a module's init, the class's constructor arguments are checked up front."""
    with pytest.raises(TypeError) as info:
        make_spec(W.Counter, args)
    assert repr(tuple(args)) in str(info.value)


@pytest.mark.parametrize("worker", [42, "support.workers", lambda: None, W.square], ids=repr)
def test_not_a_worker(worker: Any) -> None:
    with pytest.raises(TypeError) as info:
        make_spec(worker, [])
    assert "honeydew.Pool(" in str(info.value)


# --------------------------------------------------------------------------- resolve (caller side)


def test_resolve_by_name_and_by_function() -> None:
    spec = make_spec(W, [])
    assert spec.resolve("echo") == "echo"
    assert spec.resolve(W.echo) == "echo"
    assert spec.resolve(W.square) is W.square  # not a task: sent as a callable
    lam = lambda x: x  # noqa: E731
    assert spec.resolve(lam) is lam


def test_resolve_class_task_by_function() -> None:
    spec = make_spec(W.Counter, [])
    assert spec.resolve(W.Counter.incr) == "incr"
    assert spec.resolve("get") == "get"
    sub = make_spec(SubRecorder, [])
    assert sub.resolve(Recorder.other) == "other"
    assert sub.resolve(SubRecorder.extra) == "extra"


def test_resolve_unknown_name_lists_the_tasks() -> None:
    spec = make_spec(W, [])
    with pytest.raises(UnknownTask) as info:
        spec.resolve("nope")
    message = str(info.value)
    assert "'nope'" in message
    for name in ("echo", "tag", "whoami"):
        assert name in message
    assert "@honeydew.task" in message
    assert isinstance(info.value, LookupError)


def test_resolve_name_without_worker() -> None:
    spec = make_spec(None, [])
    with pytest.raises(UnknownTask) as info:
        spec.resolve("square")
    assert "none" in str(info.value)
    assert spec.resolve(W.square) is W.square


def test_resolve_not_callable() -> None:
    with pytest.raises(TypeError):
        make_spec(W, []).resolve(42)  # type: ignore[arg-type]


def test_resolve_unhashable_callable() -> None:
    class Unhashable:
        __hash__ = None  # type: ignore[assignment]

        def __call__(self) -> int:
            return 1

    fn = Unhashable()
    assert make_spec(W, []).resolve(fn) is fn


# --------------------------------------------------------------------------- invoke (worker side)


def test_invoke_module_task_appends_state() -> None:
    spec = make_spec(module("m", init=make_state, record=record), ["a"])
    state = spec.build_state()
    assert state == ("STATE", ("a",))
    assert spec.invoke("record", (1, 2), {"k": 3}, state) == ((1, 2, state), {"k": 3})


def test_invoke_module_task_for_real() -> None:
    spec = make_spec(W, ["pre"])
    state = spec.build_state()
    assert spec.invoke("tag", ("v",), {"suffix": "!"}, state) == "pre:v!"
    assert spec.invoke(spec.resolve(W.echo), (5,), {}, state) == 5


def test_invoke_plain_callable_with_state_gets_the_state_last() -> None:
    spec = make_spec(module("m", init=make_state), [])
    state = spec.build_state()
    assert spec.invoke(lambda *a: a, (1, 2), {}, state) == (1, 2, state)


def test_invoke_class_task_self_first() -> None:
    spec = make_spec(Recorder, ["x"])
    state = spec.build_state()
    me, args, kwargs = spec.invoke("record", (1, 2), {"k": 3}, state)
    assert me is state and args == (1, 2) and kwargs == {"k": 3}
    counter = make_spec(W.Counter, [10])
    c = counter.build_state()
    assert counter.invoke(counter.resolve(W.Counter.incr), (5,), {}, c) == 15
    assert counter.invoke("get", (), {}, c) == 15


def test_invoke_without_worker_passes_no_state() -> None:
    spec = make_spec(None, [])
    assert spec.invoke(W.add, (2, 3), {}, None) == 5
    assert spec.invoke(record, (1,), {"k": 2}, None) == ((1,), {"k": 2})


def test_invoke_unknown_name() -> None:
    spec = make_spec(W, [])
    with pytest.raises(UnknownTask):
        spec.invoke("nope", (), {}, spec.build_state())


# --------------------------------------------------------------------------- pickling


@pytest.mark.parametrize("dumps", [pickle.dumps, cloudpickle.dumps], ids=["pickle", "cloudpickle"])
@pytest.mark.parametrize(("worker", "args"), [(W, ["p"]), (W.Counter, [3]), (None, [])],
                         ids=["module", "class", "none"])
def test_spec_pickles(dumps: Any, worker: Any, args: list[Any]) -> None:
    spec = make_spec(worker, args)
    back = pickle.loads(dumps(spec))
    assert isinstance(back, WorkerSpec)
    assert (back.kind, back.name, back.init, back.args, back.tasks) == (spec.kind, spec.name, spec.init, spec.args,
                                                                        spec.tasks)
    assert back.by_function == spec.by_function
    if worker is W:
        assert back.resolve(W.echo) == "echo"
        assert back.invoke("tag", ("v",), {}, back.build_state()) == "p:v"
    if worker is W.Counter:
        assert back.invoke("incr", (2,), {}, back.build_state()) == 5


def test_spec_with_a_local_class_pickles_by_value() -> None:
    class Local:
        def __init__(self, start: int) -> None:
            self.n = start

        @task
        def bump(self, by: int) -> int:
            self.n += by
            return self.n

    spec = make_spec(Local, [1])
    back = pickle.loads(cloudpickle.dumps(spec))
    assert set(back.tasks) == {"bump"}
    state = back.build_state()
    assert back.invoke("bump", (4,), {}, state) == 5
    assert back.resolve(back.tasks["bump"]) == "bump"


# --------------------------------------------------------------------------- a call's shape, in the caller

@task
def get(bucket: str, key: str, riak: Any) -> Any:
    return bucket, key, riak


@task
def put(bucket: str, key: str, obj: Any, riak: Any, *, content_type: str = "text/plain") -> Any:
    return obj


def riak_spec() -> WorkerSpec:
    return make_spec(module("riak_like", init=make_state, get=get, put=put, record=record), [])


@pytest.mark.parametrize("args, kwargs, names", [
    (("bucket",), {}, "'key'"),                                    # Python alone would blame 'riak'
    ((), {}, "'bucket'"),
    (("b", "k", "extra"), {}, "takes 2 positional argument(s) before the worker's state but 3 were given"),
    (("b", "k"), {"colour": 1}, "'colour'"),
])
def test_a_call_that_does_not_fit_names_the_users_parameters(args: tuple[Any, ...], kwargs: dict[str, Any],
                                                              names: str) -> None:
    spec = riak_spec()
    with pytest.raises(TypeError) as info:
        spec.check_args("get", args, kwargs)
    message = str(info.value)
    assert message.startswith("get() ") and names in message, message
    assert "'riak', receives the worker's state" in message


def test_calls_that_fit_pass_and_the_verdict_is_kept_per_shape() -> None:
    spec = riak_spec()
    spec.check_args("get", ("b", "k"), {})
    spec.check_args("put", ("b", "k", "v"), {"content_type": "x"})
    spec.check_args("record", (1, 2, 3), {"any": 1})   # *args: no parameter is surely the state's
    assert len(spec._shapes) == 3
    spec.check_args("get", ("other", "values"), {})      # same shape: no new verdict
    assert len(spec._shapes) == 3


def test_only_module_workers_with_state_are_checked() -> None:
    assert riak_spec().checks_args
    assert not make_spec(module("stateless", get=get), []).checks_args   # no state: Python's words are right
    assert not make_spec(Recorder, []).checks_args                        # the state is self, first
