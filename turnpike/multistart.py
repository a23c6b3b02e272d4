"""Many starts of one solve: the best local optimum of a non-convex problem, on a process pool or a Dask cluster.

Learning problems are non-convex: from different random controls the same solve certifies different local
optima. :func:`multistart` runs the cheap first-order phase of a solve (:func:`~turnpike.solve.first_order`:
L-BFGS-B on the reduced objective) from ``starts`` seeded random starts, then certifies the ``certify`` best of
them with :func:`~turnpike.solve` (the Newton phase and the NLP solver, warm-started from their controls), and
returns the best certified solution.

The starts run where a sweep's solves run (:func:`~turnpike.sweeps.executors.executor`): in this process, on
local worker processes, or on a Dask cluster. The problem is sent to the workers pickled (CasADi functions
serialise) and built into an NLP once per worker.

A start's numbers do not depend on where it ran when the arithmetic is the same: the compiled loops sum in an
order that does not depend on their threads, and local pool workers run BLAS on one thread (give Dask workers
``OPENBLAS_NUM_THREADS=1`` in their environment for the same). In this process BLAS
runs on as many threads as it was started with (``OPENBLAS_NUM_THREADS``, ``OMP_NUM_THREADS``), and
L-BFGS-B's matrix-vector products round differently with more than one; over thousands of steps that can
take a start to another local minimum. Start Python with ``OPENBLAS_NUM_THREADS=1`` for the workers' numbers.
"""

from __future__ import annotations

import hashlib
import pickle
import sys
import threading
import time
from contextlib import closing
from dataclasses import dataclass, replace

import numpy as np

from .errors import InputError, SolverError, check_positive
from .problem import Problem
from .solution import Solution
from .solve import FirstOrder, first_order, grid_steps, solve

__all__ = ["FIRST_ORDER_DECREASE", "SOLVE_OPTIONS", "multistart"]

#: The first-order phase of each start stops when an L-BFGS-B step decreases J by less than this, relative (a
#: solve's presolve goes on to 1e-9; the certification continues from there). Two circles, N = 40, 100 RK4
#: steps, T = 10, seeds 0-7: at 1e-7 the same ranking of the starts as at 1e-9, costs within 1e-4 of theirs, 55%
#: of the iterations (at 1e-5 the best two were 0.008 apart instead of 0.005: too close to rank safely).
FIRST_ORDER_DECREASE = 1e-7

#: The keywords of :func:`~turnpike.solve` that :func:`multistart` passes on to every start.
SOLVE_OPTIONS = ("method", "solver", "options", "guess_scale", "presolve", "derivatives", "formulation",
                 "time_limit")


@dataclass(frozen=True, eq=False)
class _Start:
    """One job: the first-order phase from ``seed`` (``guess`` None), or the certification of ``guess``."""

    problem: Problem
    key: str  # the pickled problem's digest: a worker builds each problem once
    T: float
    steps: int
    seed: int
    settings: dict
    guess: np.ndarray | None = None

    @property
    def label(self) -> str:
        return f"start {self.seed} ({'certify' if self.guess is not None else 'first order'})"


_local = threading.local()


def _problem(job: _Start) -> Problem:
    """The job's problem: the object of the previous job of this thread if it was the same problem (its built
    NLPs are cached on it: a worker builds once), else this job's (and only that one is kept)."""
    if getattr(_local, "problem", (None,))[0] != job.key:
        _local.problem = (job.key, job.problem)
    return _local.problem[1]


def _run(job: _Start):
    """Run one job in this process: a :class:`~turnpike.solve.FirstOrder` or a :class:`~turnpike.Solution`, or
    the exception's text (a row of the table, not the end of the multistart)."""
    problem = _problem(job)
    try:
        if job.guess is None:
            return first_order(problem, job.T, job.steps, seed=job.seed, rel_decrease=FIRST_ORDER_DECREASE,
                               **job.settings)
        return solve(problem, job.T, job.steps, seed=job.seed, initial_guess=job.guess, **job.settings)
    except Exception as exc:
        return f"exception: {type(exc).__name__}: {exc}"


def multistart(
    problem: Problem,
    T: float,
    steps: int | None = None,
    *,
    dt: float | None = None,
    starts: int = 8,
    certify: int = 1,
    seed: int = 0,
    workers: int | None = None,
    scheduler=None,
    progress: bool = False,
    **solve_options,
) -> Solution:
    """The best certified local optimum of ``problem`` on ``[0, T]`` from ``starts`` seeded random starts.

    Each start ``seed, seed + 1, …`` runs :func:`~turnpike.solve.first_order` (the first-order phases of
    :func:`~turnpike.solve` from its random controls); the ``certify`` starts of lowest cost there are then
    solved to a certificate by :func:`~turnpike.solve` from those controls. Of the certified solutions the
    lowest cost is returned; if none converged, the certification of lowest cost, with ``success`` False.
    Starts whose first-order phase gives no finite cost are not certified. Without a first-order phase
    (``presolve="none"``, or an L1 bound, which is not a box) every start is certified.

    Arguments:
        problem, T, steps, dt: as for :func:`~turnpike.solve`.
        starts: the number of starts (>= 1). ``starts=1`` is ``solve(problem, T, steps, seed=seed, ...)``.
        certify: how many of the best starts are certified (1 to ``starts``; ``starts`` certifies all).
        seed: the first start's seed.
        workers: local processes (None: one per usable core; 1: this process); or give ``scheduler``.
        scheduler: a Dask scheduler's address (``tcp://host:port``) or a ``distributed.Client``.
        progress: a line per finished job on stderr.
        solve_options: :data:`SOLVE_OPTIONS` of :func:`~turnpike.solve`, for every start.

    Returns:
        The :class:`~turnpike.Solution` of the best start, with ``stats["starts"]``: per start its ``seed``,
        ``first_order_cost``, ``first_order_seconds``, ``certified`` (True, False, or None if not tried),
        ``cost`` (of the certification), ``status``, ``seconds`` (of the certification); and
        ``stats["multistart"]``: the counts, the ``best_seed``, where the starts ran and the wall ``seconds``.

    Raises:
        InputError: bad arguments (named in the message), e.g. a solve option not in :data:`SOLVE_OPTIONS`.
        SolverError: no start gave a solution (every one raised or had no finite cost); the message lists them.
    """
    from .sweeps.executors import end_rerun_script, executor, local_workers

    end_rerun_script()
    begun = time.perf_counter()
    starts = check_positive("starts", starts, integer=True)
    certify = check_positive("certify", certify, integer=True)
    if certify > starts:
        raise InputError(f"certify must be between 1 and starts = {starts}, got {certify!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be an integer >= 0, got {seed!r}")
    unknown = sorted(set(solve_options) - set(SOLVE_OPTIONS))
    if unknown:
        raise InputError(f"multistart passes only {', '.join(SOLVE_OPTIONS)} on to the solves, got "
                         f"{', '.join(unknown)}")
    if not isinstance(problem, Problem):
        raise InputError(f"problem must be a turnpike.Problem, got {type(problem).__name__}")
    T = check_positive("T", T)
    steps = grid_steps(T, steps, dt)
    if starts == 1:
        return solve(problem, T, steps, seed=int(seed), **solve_options)
    workers = local_workers(workers, scheduler)
    where = "this process" if workers == 1 else f"{workers} local processes" if scheduler is None else "Dask"
    key = hashlib.sha256(pickle.dumps(problem)).hexdigest()
    jobs = [_Start(problem, key, T, steps, int(seed) + i, solve_options) for i in range(starts)]
    with executor(workers, scheduler, _run) as run:
        first = {job.seed: result for job, result in _each(run, jobs, progress)}
        rows = {seed: _first_order_row(seed, result) for seed, result in first.items()}
        finite = sorted((r["first_order_cost"], r["seed"]) for r in rows.values() if np.isfinite(r["first_order_cost"]))
        # Ranked by the first-order phase where it runs (a start whose descent failed has no finite cost and
        # is left out); without it, every start with a finite cost is certified.
        ranked = solve_options.get("presolve", "auto") != "none" and problem.l1_bound is None
        chosen = {seed for _, seed in (finite[:certify] if ranked else finite)}
        # The certification goes on from the ranked controls (Adam would leave their basin, and has run).
        settings = {**solve_options, "presolve": "auto"} if solve_options.get("presolve") == "adam" else solve_options
        again = [replace(job, guess=first[job.seed].u, settings=settings) for job in jobs if job.seed in chosen]
        certified = {job.seed: result for job, result in _each(run, again, progress)}
    solutions = {}
    for seed, result in certified.items():
        if isinstance(result, Solution):
            rows[seed].update(certified=result.success, cost=result.cost, status=result.status,
                              seconds=result.stats["total_seconds"])
            solutions[seed] = result
        else:
            rows[seed].update(certified=False, status=_word(result))
    table = [rows[seed] for seed in sorted(rows)]
    if not solutions:
        raise SolverError(f"no start of {starts} gave a solution: " + "; ".join(
            f"seed {r['seed']}: {r['status']}" for r in table))
    best = min(solutions, key=lambda k: (not solutions[k].success, np.nan_to_num(solutions[k].cost, nan=np.inf), k))
    summary = {"starts": starts, "certify": certify, "certified": sum(r["certified"] is True for r in table),
               "best_seed": best, "where": where, "seconds": time.perf_counter() - begun}
    return replace(solutions[best], stats={**solutions[best].stats, "starts": table, "multistart": summary})


def _each(run, jobs: list[_Start], progress: bool):
    """``(job, result)`` as the jobs finish, with a progress line each."""
    done = 0
    with closing(run(jobs)) as results:
        for job, result in results:
            done += 1
            if progress:
                sys.stderr.write(f"[{done}/{len(jobs)}] {job.label}: {_word(result)}\n")
            yield job, result


def _word(result) -> str:
    if isinstance(result, FirstOrder):
        return f"cost {result.cost:.6g} ({result.seconds:.1f} s)"
    if isinstance(result, Solution):
        return result.message
    return getattr(result, "status", str(result))  # a worker lost with its process, or an exception's text


def _first_order_row(seed: int, result) -> dict:
    """The table row of one start after its first-order phase."""
    if isinstance(result, FirstOrder):
        return {"seed": seed, "first_order_cost": result.cost, "first_order_seconds": result.seconds,
                "certified": None, "cost": None, "status": "not certified", "seconds": None}
    return {"seed": seed, "first_order_cost": np.nan, "first_order_seconds": None, "certified": None, "cost": None,
            "status": _word(result), "seconds": None}
