"""Workers and their tasks: ``@honeydew.task``, and how a user's worker becomes a :class:`WorkerSpec`.

A worker is one of:

* a module (or any namespace) with an optional ``init(*args)`` and functions marked ``@task``:
  the state ``init`` returns is appended after a task's positional arguments;
* a class: ``Cls(*args)`` is built once per worker process and is the state; its methods marked
  ``@task`` are the tasks (``self`` is the state);
* nothing (``Pool(num_workers=8)``): no state, any callable can be sent.

The caller resolves a task before anything is sent: a name must be registered (else
:class:`~honeydew.errors.UnknownTask`), a registered function travels by name, any other callable
is pickled (by reference when importable, by value otherwise, thanks to cloudpickle).
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar, overload

from .errors import UnknownTask

F = TypeVar("F", bound=Callable[..., Any])

_MARK = "__honeydew_task__"


class TaskOptions(NamedTuple):
    """A task's own defaults (``@honeydew.task(job_timeout=..., failure_mode=..., priority=...)``):
    a job's ``pool.options(...)`` override them, and they override the pool's.  None: not set."""

    job_timeout: float | None = None
    failure_mode: Any = None
    priority: int | None = None


_EXAMPLE = "@honeydew.task(job_timeout=60, failure_mode=honeydew.Retry(times=3), priority=5)"


@overload
def task(fn: F, /) -> F: ...
@overload
def task(*, job_timeout: float | None = None, failure_mode: Any = None,
         priority: int | None = None) -> Callable[[F], F]: ...


_NO_FUNCTION: Any = object()


def task(fn: Any = _NO_FUNCTION, /, *, job_timeout: float | None = None, failure_mode: Any = None,
         priority: int | None = None) -> Any:
    """Register ``fn`` as a task of the module or class that defines it: ``@honeydew.task``, or
    with the task's own defaults, ``@honeydew.task(job_timeout=60, failure_mode=..., priority=5)``
    (a job's ``pool.options(...)`` override them; they override the pool's)."""
    if fn is _NO_FUNCTION:
        options = _check_options(job_timeout, failure_mode, priority)
        return lambda f: _mark(f, options)
    if job_timeout is not None or failure_mode is not None or priority is not None:
        raise TypeError(f"give a task's options as keywords of the decorator: {_EXAMPLE}")
    return _mark(fn, True)


def _check_options(job_timeout: Any, failure_mode: Any, priority: Any) -> TaskOptions:
    from .config import check_instance, check_secs
    from .failure_modes import FailureMode
    check_secs("job_timeout", job_timeout, allow_none=True, positive=True)
    if failure_mode is not None:
        check_instance("failure_mode", failure_mode, FailureMode, "honeydew.Retry(times=3)")
    if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int)):
        raise TypeError(f"priority must be an int (higher runs first), got {priority!r}; e.g. {_EXAMPLE}")
    return TaskOptions(None if job_timeout is None else float(job_timeout), failure_mode, priority)


def _mark(fn: F, options: TaskOptions | bool) -> F:
    if not callable(fn):
        raise TypeError(f"@honeydew.task decorates a function, got {fn!r}")
    try:
        setattr(fn, _MARK, options)
    except AttributeError:  # a builtin or a bound method
        raise TypeError(f"@honeydew.task cannot mark {fn!r}; decorate a plain function or method") from None
    return fn


class WorkerSpec:
    """Everything a worker process needs to build its state and run tasks.  Picklable."""

    def __init__(self, kind: str, name: str, init: Callable[..., Any] | None, args: tuple[Any, ...],
                 tasks: dict[str, Callable[..., Any]], hooks: dict[str, Callable[..., Any]] | None = None) -> None:
        self.kind = kind  # "module", "class", "none", or "executor" (init runs, its result is not passed)
        self.name = name
        self.init = init
        self.args = args
        self.tasks = tasks
        #: ``before_job``/``after_job`` of the worker module or class (a class's get ``self`` first)
        self.hooks = hooks or {}
        #: registered tasks with options of their own: name -> TaskOptions (empty: the fast path)
        self.options = {name: o for name, fn in tasks.items() if (o := task_options(fn)) is not None}
        #: the failure modes tasks have of their own, by task name (the queue process's table; a
        #: job's own, ``pool.options(failure_mode=...)``, travels with the job instead)
        self.failure_modes = {name: o.failure_mode for name, o in self.options.items() if o.failure_mode is not None}
        self.before_job = self.hooks.get("before_job")
        self.after_job = self.hooks.get("after_job")
        self.by_function = {fn: n for n, fn in tasks.items()}
        #: the state is appended after a task's positional arguments, so a missing argument would be
        #: reported by Python under the state's parameter name: the caller checks the call's shape
        self.checks_args = kind == "module" and init is not None
        self._shapes: dict[tuple[Any, ...], str] = {}  # (task, positional count, keyword names) -> error
        #: does a task get the state? (not without init, and not from an executor's initializer)
        self.passes_state = init is not None and kind != "executor"

    def __getstate__(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "init": self.init, "args": self.args, "tasks": self.tasks,
                "hooks": self.hooks}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    @property
    def has_state(self) -> bool:
        return self.passes_state

    # ---------------------------------------------------------------- caller side

    def resolve(self, fn: str | Callable[..., Any]) -> str | Callable[..., Any]:
        """What to send for ``fn``: a registered task's name, or the callable itself."""
        if isinstance(fn, str):
            if fn not in self.tasks:
                known = ", ".join(sorted(self.tasks)) or "none"
                raise UnknownTask(f"{fn!r} is not a task of worker {self.name} (its tasks: {known}); "
                                  f"mark a function with @honeydew.task to make it one")
            return fn
        if not callable(fn):
            raise TypeError(f"a task is a registered task's name or a callable, got {fn!r}")
        try:
            name = self.by_function.get(fn)
        except TypeError:  # unhashable callable
            name = None
        return name if name is not None else fn

    def check_args(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Raise ``TypeError`` naming the user's own parameters when a call of task ``name`` (of a
        module worker, whose state comes last) does not fit its signature.  Whether it fits depends
        only on how many positional arguments there are and which keywords, so the verdict is kept
        per shape: a call costs a dictionary lookup."""
        key = (name, len(args), tuple(kwargs) if kwargs else ())
        error = self._shapes.get(key)
        if error is None:
            if len(self._shapes) >= 1024:
                self._shapes.clear()
            error = self._shapes[key] = _shape_error(name, self.tasks[name], args, kwargs)
        if error:
            raise TypeError(error)

    # ---------------------------------------------------------------- worker side

    def build_state(self) -> Any:
        if self.init is None:
            return None
        return self.init(*self.args)

    def function(self, ref: str | Callable[..., Any]) -> tuple[Callable[..., Any], bool]:
        """(the callable to run, whether the state goes first (a class task) or last)."""
        if isinstance(ref, str):
            fn = self.tasks.get(ref)
            if fn is None:
                raise UnknownTask(f"{ref!r} is not a task of worker {self.name}")
            return fn, self.kind == "class"
        return ref, False

    def hook(self, hook: Callable[..., Any], state: Any, *args: Any) -> None:
        """Run a ``before_job``/``after_job`` hook (a class's gets the worker's instance first)."""
        if self.kind == "class":
            hook(state, *args)
        else:
            hook(*args)

    def invoke(self, ref: str | Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], state: Any) -> Any:
        fn, state_first = self.function(ref)
        if not self.passes_state:
            return fn(*args, **kwargs)
        if state_first:
            return fn(state, *args, **kwargs)
        return fn(*args, state, **kwargs)


_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def _shape_error(name: str, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """'' if ``fn(*args, state, **kwargs)`` binds, else the error in terms of the user's arguments."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return ""
    try:
        sig.bind(*args, None, **kwargs)
        return ""
    except TypeError:
        pass
    params = list(sig.parameters.values())
    positional = [p for p in params if p.kind in _POSITIONAL]
    if not positional or any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
        return ""  # no parameter is the state's for sure: let Python say it
    state = positional[-1]
    if len(args) >= len(positional):
        why = (f"takes {len(positional) - 1} positional argument(s) before the worker's state but "
               f"{len(args)} were given")
    else:
        try:
            sig.replace(parameters=[p for p in params if p is not state]).bind(*args, **kwargs)
            why = f"cannot take these arguments: {state.name!r} is given twice"
        except TypeError as e:
            why = str(e)
    return (f"{name}() {why} (its last positional parameter, {state.name!r}, receives the worker's state, "
            f"after the arguments of the call)")


HOOKS = ("before_job", "after_job")


def _hooks(worker: Any, vars_of: dict[str, Any] | None) -> dict[str, Callable[..., Any]]:
    """The worker's ``before_job(job)``/``after_job(job, error)``; ``TypeError`` if one is not callable."""
    out = {}
    for name in HOOKS:
        hook = vars_of.get(name) if vars_of is not None else getattr(worker, name, None)
        if hook is None:
            continue
        if not callable(hook):
            raise TypeError(f"{getattr(worker, '__name__', worker)!r}.{name} must be a function: "
                            f"def before_job(job) / def after_job(job, error)")
        out[name] = hook
    return out


def _marked(ns: dict[str, Any]) -> dict[str, Callable[..., Any]]:
    return {name: obj for name, obj in ns.items() if callable(obj) and _is_task(obj)}


def _is_task(obj: Any) -> bool:
    mark = getattr(obj, _MARK, None)
    return mark is True or isinstance(mark, TaskOptions)


def task_options(fn: Any) -> TaskOptions | None:
    """The options ``@honeydew.task(...)`` gave ``fn`` (None: none given)."""
    options = getattr(fn, _MARK, None)
    return options if isinstance(options, TaskOptions) else None


def make_spec(worker: Any, args: Any, runs_init: bool = True) -> WorkerSpec:
    """Validate the user's worker and init arguments; raise ``TypeError`` showing a correct call.
    Without ``runs_init`` (an enqueue-only pool, which takes the worker for its task names) the
    arguments are not checked against ``init``: a producer need not know a worker node's."""
    example = "honeydew.Pool(riak_worker, ['127.0.0.1', 8087], num_workers=5)"
    if args is None:
        args = ()
    if isinstance(args, (str, bytes)) or not isinstance(args, (list, tuple)):
        raise TypeError(f"the worker's init arguments must be a list or tuple, got {args!r}; e.g. {example}")
    args = tuple(args)
    if worker is None:
        if args:
            raise TypeError(f"init arguments {args!r} were given but no worker; e.g. {example}")
        return WorkerSpec("none", "(none)", None, (), {})
    if isinstance(worker, type):
        names: set[str] = set()
        for klass in worker.__mro__:
            names.update(_marked(dict(vars(klass))))
        # a subclass may override a task without repeating the decorator: run the override
        tasks = {name: getattr(worker, name) for name in names}
        try:
            if runs_init:
                inspect.signature(worker).bind(*args)
        except TypeError as e:
            raise TypeError(f"{worker.__qualname__}(*args) does not take the arguments {args!r}: {e}; "
                            f"e.g. {example}") from None
        except ValueError:  # no signature available (a builtin base class)
            pass
        return WorkerSpec("class", worker.__qualname__, worker, args, tasks, _hooks(worker, vars_of=None))
    if isinstance(worker, types.ModuleType) or hasattr(worker, "__dict__") and not callable(worker):
        ns = dict(vars(worker))
        init = ns.get("init")
        if init is not None and not callable(init):
            raise TypeError(f"{worker!r}.init must be a function: def init(*args) -> state; e.g. {example}")
        tasks = _marked(ns)
        if init is None and args and runs_init:
            raise TypeError(f"init arguments {args!r} were given but {getattr(worker, '__name__', worker)!r} "
                            f"defines no init(*args); define one, or pass no arguments: "
                            f"honeydew.Pool({getattr(worker, '__name__', 'worker')}, num_workers=5)")
        if init is not None and runs_init:
            try:
                inspect.signature(init).bind(*args)
            except TypeError as e:
                raise TypeError(f"{worker.__name__}.init does not take the arguments {args!r}: {e}; "
                                f"the list holds init's arguments in order: e.g. {example}") from None
        return WorkerSpec("module", getattr(worker, "__name__", repr(worker)), init, args, tasks,
                          _hooks(worker, vars_of=ns))
    raise TypeError(f"a worker is a module or a class with @honeydew.task functions (or None), got {worker!r}; "
                    f"e.g. {example}")
