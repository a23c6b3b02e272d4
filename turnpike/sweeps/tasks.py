"""The grid of a sweep as independent tasks, and the function a worker runs for one task.

A task is one solve: the static problem of a parameter point, or the finite-horizon problem of a
parameter point on one horizon from one seed. CasADi objects are not sent to workers: a task
carries a *factory* (a catalogue name or a module-level callable, both picklable) and its keyword
parameters, and the worker builds the problem itself (once per worker thread and parameter point).

A task's identity is everything that determines its result (factory, parameters, horizon, steps,
seed, integrator, solver and its options); its :attr:`Task.key` is a hash of it and names its
checkpoint file, so a finished task is recognised by any later run of the same sweep, whatever its
grid order, and never confused with a task of other settings.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from .. import catalogue
from ..errors import InputError
from ..multistart import multistart
from ..problem import Problem
from ..solve import solve, solve_static

__all__ = ["Task", "SolveError", "WorkerLost", "factory_name", "check_factory", "build_problem", "run_task"]


@dataclass(frozen=True)
class Task:
    """One solve of a sweep.

    ``kind`` is ``"static"`` (the static problem of parameter point ``point``) or ``"horizon"``
    (the problem on ``[0, T]`` with ``steps`` intervals from the controls of ``seed``).
    """

    factory: str | Callable[..., Problem]
    params: dict
    point: int
    kind: str
    T: float | None = None
    steps: int | None = None
    seed: int | None = None
    method: str = "rk4"
    solver: str = "ipopt"
    options: dict = field(default_factory=dict)
    static_starts: int = 1
    starts: int = 1  # a horizon solve: the best of this many seeded starts from ``seed``

    def identity(self) -> dict:
        """What determines the result: the factory's name, the parameters and the solve settings."""
        ident = {"factory": factory_name(self.factory), "params": self.params, "kind": self.kind}
        if self.kind == "static" and self.static_starts != 1:
            ident["starts"] = self.static_starts
        if self.kind == "horizon":
            ident.update(T=self.T, steps=self.steps, seed=self.seed, method=self.method, solver=self.solver,
                         options=self.options)
            if self.starts != 1:
                ident["starts"] = self.starts
        return ident

    @property
    def key(self) -> str:
        """16 hex digits of the SHA-256 of :meth:`identity` as canonical JSON."""
        text = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        """A short readable name: ``point 0 static``, ``point 1 T=10 seed=2``."""
        if self.kind == "static":
            return f"point {self.point} static"
        return f"point {self.point} T={self.T:g} seed={self.seed}"

    @property
    def filename(self) -> str:
        """The checkpoint file's name: ``static-<key>.npz`` or ``T10-seed2-<key>.npz``."""
        stem = "static" if self.kind == "static" else f"T{self.T:g}-seed{self.seed}"
        return f"{stem}-{self.key}.npz"


@dataclass(frozen=True)
class SolveError:
    """A solve that raised instead of returning a solution; ``status`` names the exception.

    It is a finished result: it is checkpointed and not repeated by the next run.
    """

    status: str


@dataclass(frozen=True)
class WorkerLost:
    """A solve whose worker process died (killed, out of memory, crashed) before it returned.

    It is not a result: it is reported in the table of this run but not checkpointed, so the next
    run of the sweep tries it again.
    """

    status: str


def factory_name(factory) -> str:
    """The catalogue name, or ``module:qualname`` of a callable factory."""
    if isinstance(factory, str):
        return factory
    return f"{factory.__module__}:{factory.__qualname__}"


def check_factory(factory) -> str | Callable[..., Problem]:
    """``factory`` if it is a string (a catalogue name, checked when the problem is built) or a callable
    that pickles by reference (defined at module level)."""
    if isinstance(factory, str):
        return factory
    if not callable(factory):
        raise InputError(f"factory must be a catalogue name or a callable returning a Problem, got {factory!r}")
    try:
        pickle.dumps(factory)
    except (pickle.PicklingError, AttributeError, TypeError) as exc:
        raise InputError(
            f"factory={factory!r} cannot be sent to a worker process: give a catalogue name or a callable "
            "defined at module level (not a lambda, a local function or a bound method of a local object)"
        ) from exc
    return factory


def build_problem(factory, params: dict) -> Problem:
    """``catalogue.load(factory, **params)`` for a name, ``factory(**params)`` for a callable."""
    if isinstance(factory, str):
        return catalogue.load(factory, **params)
    problem = factory(**params)
    if not isinstance(problem, Problem):
        raise InputError(f"factory {factory_name(factory)} returned {type(problem).__name__}, not a turnpike.Problem")
    return problem


_local = threading.local()


def _cached_problem(task: Task) -> Problem:
    """The task's problem, built once per worker thread and parameter point.

    Reusing the object reuses the NLP solver cached on it (:mod:`turnpike.solvers`, the last one built) across
    the horizons and seeds of a point that share a number of steps. Per thread, because one CasADi function must
    not be called from two threads at once (a Dask worker may run several threads).
    """
    cache = _local.__dict__.setdefault("problems", {})
    key = json.dumps([factory_name(task.factory), task.params], sort_keys=True)
    if key not in cache:
        cache[key] = build_problem(task.factory, task.params)
    return cache[key]


def run_task(task: Task):
    """Solve one task in the current process: a :class:`~turnpike.StaticSolution`, a
    :class:`~turnpike.Solution` (converged or not), or a :class:`SolveError` if the solve raised."""
    try:
        problem = _cached_problem(task)
        if task.kind == "static":
            return solve_static(problem, starts=task.static_starts)
        if task.starts > 1:
            return multistart(problem, task.T, task.steps, starts=task.starts, seed=task.seed, workers=1,
                              method=task.method, solver=task.solver, options=task.options or None)
        return solve(problem, task.T, task.steps, method=task.method, solver=task.solver,
                     options=task.options or None, seed=task.seed)
    except Exception as exc:  # a failed solve is a row of the table, not the end of the sweep
        return SolveError(f"exception: {type(exc).__name__}: {exc}")
