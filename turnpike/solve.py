"""The front doors: :func:`solve` (finite horizon) and :func:`solve_static`."""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace

import numpy as np

from . import presolve as _presolve_settings
from .checks import step_check
from .errors import InputError, SolverError, check_choice, check_finite, check_nonnegative, check_positive
from .krylov import newton_cg, smallest_eigenvalues
from .machine import memory_budget
from .presolve import (
    PRESOLVES,
    ROUND_OFF_STOP,
    minibatch_descent,
    newton_refinement,
    projected_gradient,
    reduced_space_descent,
    unconstrained,
)
from .problem import Problem
from .reduced import ReducedSpace, second_order_mode
from .solution import Solution, StaticSolution
from .solvers import DERIVATIVES, built_solver, ipopt_options, run, solver_options
from .static import StaticNLP
from .stopping import Interrupted, Stop
from .transcription import INTEGRATORS, MultipleShooting, build_bytes

__all__ = ["FORMULATIONS", "FirstOrder", "first_order", "solve", "solve_static", "grid_steps"]

FORMULATIONS = ("auto", "multiple-shooting", "reduced")


def _check_problem(problem) -> Problem:
    if not isinstance(problem, Problem):
        raise InputError(f"problem must be a turnpike.Problem, got {type(problem).__name__}")
    return problem


def grid_steps(T: float, steps: int | None = None, dt: float | None = None) -> int:
    """The number of intervals for horizon ``T`` from exactly one of ``steps`` or ``dt``.

    ``dt`` must divide ``T`` (to 1e-9 relative): the grid is never silently stretched.
    """
    T = check_positive("T", T)
    if (steps is None) == (dt is None):
        raise InputError(f"give exactly one of steps or dt, got steps={steps!r}, dt={dt!r}")
    if steps is not None:
        return check_positive("steps", steps, integer=True)
    dt = check_positive("dt", dt)
    n = round(T / dt)
    if n < 1 or abs(n * dt - T) > 1e-9 * T:
        raise InputError(f"dt={dt!r} must divide T={T!r} into a whole number of steps")
    return n


def _random_controls(problem: Problem, n: int, seed, scale: float) -> np.ndarray:
    """Seeded ``scale * N(0, 1)`` controls (n, nu), moved inside the bounds and the L1 ball; a constant control
    takes its first interval's draw on every interval (independent draws would start it at their mean, of
    spread ``scale/√n``)."""
    rng = np.random.default_rng(seed)
    u = scale * rng.standard_normal((n, problem.nu))
    constant = list(problem.constant_controls)
    u[:, constant] = u[0, constant]
    u = np.clip(u, problem.control_lower, problem.control_upper)
    if problem.l1_bound is not None:
        norms = np.abs(u).sum(axis=1, keepdims=True)
        u *= np.minimum(1.0, 0.9 * problem.l1_bound / np.maximum(norms, 1e-300))
    return u


def _resample_controls(u: np.ndarray, steps: int) -> np.ndarray:
    """Piecewise-constant controls on a new grid of the same normalised time ``t/T``."""
    old = u.shape[0]
    idx = np.minimum(((np.arange(steps) + 0.5) * old / steps).astype(int), old - 1)
    return u[idx]


def _initial_guess(ms: MultipleShooting, T, initial_guess, seed, guess_scale):
    """``(x, u)`` to start from; ``x`` is None where it is to be simulated from ``u``."""
    P, steps = ms.problem, ms.steps
    if initial_guess is None:
        return None, _random_controls(P, steps, seed, guess_scale)
    if isinstance(initial_guess, Solution):
        if initial_guess.x[0].size != P.nx * P.n_samples or initial_guess.u.shape[1] != P.nu:
            raise InputError(
                "initial_guess is a Solution of a problem with other dimensions: "
                f"x {initial_guess.x.shape[1:]} and u {initial_guess.u.shape[1:]}, "
                f"expected {P.state_shape} and {P.control_shape}"
            )
        u = _resample_controls(np.asarray(initial_guess.u), steps)
        if initial_guess.steps == steps:
            return np.asarray(initial_guess.x), u
        s_old = np.linspace(0.0, 1.0, initial_guess.steps + 1)
        s_new = np.linspace(0.0, 1.0, steps + 1)
        flat = np.asarray(initial_guess.x).reshape(initial_guess.steps + 1, -1)
        return np.stack([np.interp(s_new, s_old, col) for col in flat.T], axis=1), u
    return None, check_finite("initial_guess", initial_guess, shape=(steps, P.nu))


_GROWTH = 1e3


def _states_for(ms: MultipleShooting, u: np.ndarray, T: float) -> np.ndarray:
    """States for an initial guess: the simulation of ``u`` from x0, or x0 at every grid point if
    that simulation grows past ``1e3 (1 + |x0|_∞)`` (an unstable system over a long horizon)."""
    x = ms.simulate(u, T)
    x0 = ms.problem.x0_samples
    if not np.all(np.abs(x) <= _GROWTH * (1 + np.abs(x0).max())):
        x = np.broadcast_to(x0, x.shape)
    return x


def _formulation(problem: Problem, formulation: str, solver: str, steps: int, method: str) -> tuple[str, str]:
    """The formulation to use and why. ``"auto"`` stands for ``"reduced"`` for an ensemble solved by IPOPT
    with at least as many samples as control variables per stage (N >= n_v), or whose reduced Hessian is
    too large to form (:func:`~turnpike.reduced.second_order_mode` is ``"hessian-vector"``), or whose
    multiple-shooting build is estimated (:func:`~turnpike.transcription.build_bytes`) over the memory
    budget (:func:`~turnpike.machine.memory_budget`); else multiple shooting. Multiple shooting past the
    budget, asked for or the only choice (FATROP), is refused.

    Per Newton iteration the reduced NLP factorises a dense ``steps·n_v`` Hessian, ``O((steps n_v)³)``
    flops, while the sparse factorisation of the multiple-shooting KKT system fills in a dense block
    per sample, ``O(N steps³ n_v²)``: their ratio is about ``N / n_v``. Measured by
    ``benchmarks/bench_formulations.py``: two circles (N = 40, n_v = 10) reduced 5x faster; N = 8
    samples in R^7 with the outer field (n_v = 56), 100 steps, multiple shooting 2.7x faster (and the
    dense reduced Hessian of 200 steps takes 1 GB). Where the reduced Hessian is not formed (Hessian-vector
    products, a limited-memory IPOPT) that comparison no longer applies, and multiple shooting, whose
    KKT system holds ``N·nx·n_v`` Jacobian entries per stage, is the one that does not scale: the
    width-50 bottleneck on 300 samples took 11 GB in the symbolic Jacobian of its multiple-shooting NLP.
    """
    check_choice("formulation", formulation, FORMULATIONS)
    if problem.constant_controls:  # one value for all intervals: only the reduced NLP has it
        if formulation == "multiple-shooting" or solver != "ipopt":
            raise InputError(f"constant_controls {list(problem.constant_controls)} are solved by the reduced "
                             f"formulation with IPOPT only, got formulation={formulation!r}, solver={solver!r}")
        return "reduced", "asked for" if formulation == "reduced" else "the problem has constant controls"
    if formulation == "reduced":
        if solver != "ipopt":
            raise InputError(f"formulation='reduced' is solved with IPOPT only, got solver={solver!r}")
        return formulation, "asked for"
    N, n_v = problem.n_samples, problem.nu * (2 if problem.split_control else 1)
    if formulation == "auto" and solver == "ipopt" and N > 1:
        if N >= n_v:
            return "reduced", f"N = {N} samples >= n_v = {n_v} control variables per stage"
        if second_order_mode(problem, steps) == "hessian-vector":
            return "reduced", "the reduced Hessian is too large to form: Hessian-vector products"
    estimate, budget = build_bytes(problem, method), memory_budget()
    if estimate <= budget:
        return "multiple-shooting", "asked for" if formulation != "auto" else (
            "an ordinary control problem" if N == 1 else f"N = {N} samples < n_v = {n_v}" if solver == "ipopt"
            else f"solver={solver!r}")
    over = (f"multiple shooting's build is estimated at {estimate / 2**30:.3g} GB, over the memory budget of "
            f"{budget / 2**30:.3g} GB")
    if formulation == "auto" and solver == "ipopt" and N > 1:
        return "reduced", over
    raise InputError(f"{over} (N = {N} samples, {problem.nx + n_v} stage variables each); "
                     + ("use formulation='reduced' with solver='ipopt'" if N > 1 else "simplify the dynamics")
                     + ", or set TURNPIKE_MEMORY_GB to allow more")


def _check_seed(seed) -> None:
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise InputError(f"seed must be None or an integer >= 0, got {seed!r}")


#: Doubles a solve keeps per unit of its NLP's size (variables plus Jacobian and Hessian nonzeros): IPOPT's
#: vectors, the sparse matrices and MUMPS's factor. Measured peak resident sets of multiple shooting: the
#: pendulum 4.7 KB per step (0.57 GB at 10⁵ steps, 1.99 GB at 4·10⁵), 18 units per step: 33 doubles per
#: unit; an outer-field ensemble (N = 6, d = 2) 45 KB per step, 258 units: 22 doubles per unit.
_DOUBLES_PER_UNIT = 35


def solve_bytes(problem: Problem, steps: int, formulation: str, second_order: str | None = None) -> float:
    """The estimated peak memory (bytes) of the arrays of a solve with ``steps`` intervals (the build aside,
    see :func:`~turnpike.transcription.build_bytes`). Multiple shooting: ``8 · 35 · steps · (variables, Jacobian
    and Hessian nonzeros of a stage)``, the layout of :mod:`turnpike.transcription` (``u`` in the dynamics, its L1
    split tied to it); reduced: ``8 · 35 · steps · (N nx + n_v)`` plus three copies of the dense reduced Hessian
    ``(steps n_v)²`` in its dense mode."""
    n_state, nu, split = problem.n_samples * problem.nx, problem.nu, problem.split_control
    n_v = nu * (2 if split else 1)
    if formulation == "multiple-shooting":
        jacobian = n_state * (problem.nx + nu + 1) + 5 * nu * split  # gaps; ties and the L1 row
        hessian = n_state * (problem.nx + nu) + nu * nu
        return 8.0 * _DOUBLES_PER_UNIT * steps * (n_state + nu * (3 if split else 1) + jacobian + hessian)
    dense = 3 * (steps * n_v) ** 2 if second_order == "dense" else 0
    return 8.0 * (_DOUBLES_PER_UNIT * steps * (n_state + n_v) + dense)


def _check_memory(problem: Problem, steps: int, formulation: str, second_order: str | None) -> None:
    """An :class:`InputError` when the solve's arrays are estimated over the memory budget."""
    need, budget = solve_bytes(problem, steps, formulation, second_order), memory_budget()
    if need > budget:
        raise InputError(f"steps={steps} needs an estimated {need / 2**30:.3g} GB for the {formulation} NLP, over "
                         f"the memory budget of {budget / 2**30:.3g} GB: use fewer steps (or set TURNPIKE_MEMORY_GB)")


def _limited_memory(options: dict) -> dict:
    """IPOPT's options with a limited-memory Hessian, unless they choose the Hessian themselves."""
    if "ipopt.hessian_approximation" in ipopt_options(options):
        return options
    return {**options, "ipopt.hessian_approximation": "limited-memory"}


def solve(
    problem: Problem,
    T: float,
    steps: int | None = None,
    *,
    dt: float | None = None,
    method: str = "rk4",
    solver: str = "ipopt",
    options: dict | None = None,
    initial_guess=None,
    seed: int | None = 0,
    guess_scale: float = 0.1,
    presolve: str = "auto",
    derivatives: str = "auto",
    formulation: str = "auto",
    verbose: bool = False,
    callback=None,
    time_limit: float | None = None,
    progress: bool = False,
) -> Solution:
    """Solve ``problem`` on ``[0, T]`` by direct multiple shooting.

    The control is piecewise constant on ``steps`` intervals of length ``h = T/steps``, each
    advanced by one step of ``method`` (see :mod:`turnpike.transcription`); the NLP is solved by
    ``solver`` to its tolerance (IPOPT default ``tol = 1e-8``, scaled KKT error).

    Arguments:
        problem: the :class:`Problem`.
        T: horizon, > 0.
        steps: number of intervals (>= 1); or give ``dt`` (which must divide T).
        method: ``"rk4"`` (default), ``"midpoint"`` or ``"euler"`` (a ResNet for a neural ODE).
        solver: ``"ipopt"`` (default) or ``"fatrop"``.
        options: passed to ``casadi.nlpsol`` over the defaults, e.g. ``{"ipopt.tol": 1e-10}``.
        initial_guess: None (seeded random controls ``guess_scale * N(0, 1)``, clipped to the
            bounds, and the states they produce, or x0 throughout if those grow by 1e3: u = 0 is a
            critical point of many learning problems), a :class:`Solution` (warm start, resampled in
            ``t/T`` if the grid differs), or an array of controls (steps, nu).
        seed: seed of the random initial controls.
        presolve: ``"lbfgs"`` improves the initial controls by a few hundred cheap L-BFGS-B steps
            on the reduced (single-shooting) objective before the NLP solver certifies the
            optimum (see :mod:`turnpike.presolve`); ``"none"`` skips it; ``"auto"`` (default) uses
            it for ensembles (N > 1) in the reduced formulation, and in multiple shooting when
            started from the random guess (a warm start's states are kept there): several times
            faster than the NLP solver alone, and it stops after a few steps from a start that is
            already optimal. Under ``"auto"``, a reduced NLP without constraints (no control
            bounds, no L1 term) then takes Newton steps with the exact Hessian and LAPACK until
            ``‖∇J‖∞ <= 1e-10``, so that IPOPT usually certifies at its first KKT check (in the
            Hessian-vector mode of wide networks: trust-region Newton-CG, once L-BFGS-B has settled:
            :data:`~turnpike.presolve.HANDOVER_WINDOW`). ``"adam"`` first runs
            epochs of minibatch Adam (:func:`~turnpike.presolve.minibatch_descent`: 30 epochs,
            batches of 150, step 1e-2, samples drawn with ``seed``), then what ``"auto"`` does.
            Measured (``benchmarks/bench_adam.py``, ``docs/second_order.md``): with ReLU on the
            width-50 chessboard it reaches lower costs at every time; with softplus there, and on
            the two-circles tanh workloads, it settles in worse regions than L-BFGS-B alone, so
            ``"auto"`` does not use it. ``stats["presolve"]`` reports what each phase did (``"adam"``,
            ``"lbfgs"``, ``"newton"``), the phases in ``"method"`` and their total ``"seconds"``. With an L1
            bound (``|u(t)|_1 <= M``, not a box) the L-BFGS-B phase runs on the augmented Lagrangian of the L1
            balls and ends with a projected gradient on them
            (:func:`~turnpike.presolve.augmented_lagrangian_descent`), and IPOPT starts on the face it found
            (:data:`WARM_FACE_OPTIONS`, unless ``options`` set any of them). With an L1 term, IPOPT first
            solves with the components the presolve left at 0 fixed there, and keeps that solution if none of
            them would leave 0 in the problem as posed (:func:`solve_on_face`); else it solves the whole
            problem and re-solves with its small components fixed at 0, kept if no less stationary
            (:func:`exact_zeros`). ``stats["zeros"]`` says whether the zeros of u are exact and how they
            were decided.
        derivatives: ``"auto"`` (default) gives IPOPT the gradient, Jacobian and Lagrangian
            Hessian assembled from stage-wise derivatives (:mod:`turnpike.derivatives`; the same
            numbers, faster), unless ``options`` bring their own ``grad_f``/``jac_g``/``hess_lag``;
            ``"casadi"`` uses CasADi's automatic differentiation of the whole NLP; ``"stage-wise"``
            insists (an error with FATROP). ``stats["derivatives"]`` says which were used.
        formulation: ``"multiple-shooting"`` (:mod:`turnpike.transcription`: states and controls
            are variables, the gaps are constraints) or ``"reduced"`` (:mod:`turnpike.reduced`:
            the controls alone, states by forward simulation, exact Hessian condensed sample by
            sample; IPOPT only). ``"auto"`` (default) takes ``"reduced"`` for ensembles
            with at least as many samples as control variables per stage (N >= nu, 2 nu with the
            L1 split) with IPOPT, where the multiple-shooting KKT system is large and fills in, and
            ``"multiple-shooting"`` otherwise (see :func:`_formulation`). ``stats["formulation"]``
            says which was used.
        verbose: print the solver's iteration log, and the presolve's progress (every 100th L-BFGS
            iteration, every Newton step).
        callback: called after every iteration of every phase as ``callback(phase, iteration, cost, u)``:
            ``phase`` is ``"adam"`` (once per epoch, with the epoch's mean batch cost: an estimate
            of J), ``"lbfgs"``, ``"newton"``, ``"newton-cg"`` or ``"ipopt"`` (from its iteration 0, the
            start; the cost is the NLP objective, which for multiple shooting is not J where the gaps are
            open), ``u`` a copy of the controls (steps, nu). A True return stops the solve at that
            iterate: ``success`` False, status ``"stopped: stopped by the callback"``. Its own time counts
            in the solve's.
        time_limit: seconds (> 0) for the whole call, counted from its start (the build included). Every
            phase stops at its current iterate once they are spent (Newton-CG after its next product, with
            the step so far tried,
            IPOPT at the end of its iteration): ``success`` False, status ``"stopped: time limit of S
            s"``. The build and the second-order report after IPOPT (at most 300 Hessian-vector
            products) are not cut short. A presolve that ends where ``‖∇J‖∞ <= tol`` on an unconstrained
            problem is still handed to IPOPT, whose first convergence test (no step) certifies it.
            FATROP cannot be stopped: it runs to its own end.
        progress: write the build time, then one status line (phase, iteration, cost, seconds so far)
            redrawn at most twice a second, on stderr (the CLI turns it on when stderr is a terminal).

    Signals: SIGINT (Ctrl-C) and SIGTERM stop the solve at the end of the current iteration of its
    phase (at once during a build, or on a second signal) and raise :class:`~turnpike.stopping.Interrupted`,
    a ``KeyboardInterrupt`` whose ``solution`` is the last iterate as a non-converged Solution (see
    :mod:`turnpike.stopping`).

    Returns:
        A :class:`Solution`. ``success`` is False (never an exception) when the solver did not
        converge; its arrays are then the last iterate, not an optimum. ``stats`` has
        ``build_seconds`` (0 when a built solver was reused), ``solve_seconds`` (the NLP solver),
        ``presolve["seconds"]`` and ``total_seconds`` (wall time of this call, all included); for
        the reduced formulation ``gradient`` says how ∇J is evaluated.

    Raises:
        InputError: bad arguments (named in the message).
        SolverError: the solver could not be built or stopped with an evaluation error.
        Interrupted: SIGINT or SIGTERM.
    """
    start = time.perf_counter()
    P, T, steps, guess_scale = _arguments(problem, T, steps, dt, method, presolve, derivatives, guess_scale, seed)
    limit = np.inf if time_limit is None else check_positive("time_limit", time_limit)
    if callback is not None and not callable(callback):
        raise InputError(f"callback must be callable as callback(phase, iteration, cost, u), got {callback!r}")
    formulation, why = _formulation(P, formulation, solver, steps, method)
    # A warm start of multiple shooting brings states worth keeping; the reduced NLP has controls only.
    cold = initial_guess is None or formulation == "reduced"
    opts = _l1_options(solver_options(solver, options, verbose=verbose), P, solver, formulation,
                       _starts_on_faces(P, presolve, cold, initial_guess), options)
    second_order = second_order_mode(P, steps) if formulation == "reduced" else None
    _check_memory(P, steps, formulation, second_order)
    stop = Stop(limit, start=start)
    with stop.signals():
        built, fresh = _built(P, steps, method, solver, opts, formulation, second_order, derivatives)
        nlp = built.nlp
        x_guess, u_guess = _initial_guess(nlp, T, initial_guess, seed, guess_scale)
        if progress and fresh:
            sys.stderr.write(f"built the {formulation} NLP in {built.build_seconds:.1f} s\n")
        report = _Progress(nlp, callback, verbose, stop, progress)
        with stop.iterating():
            stats, x_guess, u_guess = _presolve(nlp, T, presolve, cold, second_order, x_guess, u_guess, seed,
                                                verbose, report, stop)
            if x_guess is None and formulation == "multiple-shooting":
                x_guess = _states_for(nlp, u_guess, T)
            w0, tol = nlp.pack(x_guess, u_guess), opts.get("ipopt.tol", 1e-8)
            # the face the presolve ended on (its exact zeros), solved on first where there is one
            face = (u_guess == 0) if "presolve" in stats and P.split_control and solver == "ipopt" else None
            try:
                with _signal_errors(stop):
                    res = attempt = None
                    if face is not None and face.any():
                        attempt, stats["zeros"] = solve_on_face(built, nlp, w0, T, face, tol, report.iteration)
                        if stats["zeros"]["exact"] or attempt.status == "User_Requested_Stop":
                            res = attempt
                    if res is None:
                        report.certify_start = _certifiable(nlp, w0, T, tol, solver, stop)
                        res = run(built, w0=w0, p=nlp.parameters(T), bounds=nlp.bounds(),
                                  each_iteration=report.iteration)
                    if attempt is not None and res is not attempt:  # the refused face's solve counts too
                        res = replace(res, iterations=attempt.iterations + res.iterations,
                                      solve_seconds=attempt.solve_seconds + res.solve_seconds)
            finally:
                report.done()
        if P.split_control and res.success and solver == "ipopt" and not stats.get("zeros", {}).get("exact"):
            candidates = np.abs(nlp.controls(res.w)) <= (
                zero_threshold(tol, T / steps, P.l1) if P.l1 > 0 else 0.0)
            with stop.iterating(), _signal_errors(stop):
                first, (res, zeros) = res, exact_zeros(built, nlp, res, T, candidates, stop)
            stats["zeros"] = {**zeros, "candidates": "|u_kj| <= zero_threshold(tol, h, l1)",
                              **({"face": stats["zeros"]["rule"]} if "zeros" in stats else {})}
            if res is not first:
                res = replace(res, iterations=first.iterations + res.iterations,
                              solve_seconds=first.solve_seconds + res.solve_seconds)
        x, u, adjoint = nlp.arrays(res.w, res.lam_g, T)
        if second_order:
            stats["second_order"] = _second_order_report(nlp, res, T, second_order, stats.get("presolve", {}))
    shape = P.state_shape
    sol = Solution(
        success=res.success,
        status=f"stopped: {stop.reason}" if res.status == "User_Requested_Stop" and stop.reason else res.status,
        cost=res.cost,
        cost_terms=nlp.cost_terms(res.w, T),
        stats={
            "iterations": res.iterations,
            "build_seconds": built.build_seconds if fresh else 0.0,
            "solve_seconds": res.solve_seconds,
            "total_seconds": time.perf_counter() - start,
            "solver": solver,
            "method": method,
            "formulation": formulation,
            "formulation_reason": why,
            "reused_solver": not fresh,
            "derivatives": built.derivatives,
            "compiled": getattr(nlp, "compiled", False),
            **({"gradient": nlp.gradient_method} if hasattr(nlp, "gradient_method") else {}),
            **stats,
        },
        problem=P.name,
        T=T,
        steps=steps,
        t=np.linspace(0.0, T, steps + 1),
        x=x.reshape(steps + 1, *shape),
        u=u,
        adjoint=adjoint.reshape(steps, *shape),
    )
    if stop.interrupted:  # not re-simulated at h/2 and h/4 (seconds at thousands of steps): it is not an answer
        raise Interrupted(f"solve interrupted by {stop.signal.name}: its last iterate (not an optimum) is the "
                          "exception's .solution", stop.signal, replace(sol, stats={**sol.stats, "warnings": []}))
    if np.all(np.isfinite(sol.x)) and np.all(np.isfinite(sol.u)):
        check, found = step_check(P, sol, method)
        sol = replace(sol, stats={**sol.stats, "step_check": check, "warnings": found})
    else:
        sol = replace(sol, stats={**sol.stats, "warnings": ["the states or controls are not finite"]})
    return sol


def zero_threshold(tol: float, h: float, weight: float, margin: float = 1e-3) -> float:
    """``tol / (h λ1 δ)``: the size an interior-point solver with tolerance ``tol`` leaves on an inactive L1
    component on an interval of length ``h``.

    A component whose switching value is at least ``δ = margin`` (relative) below the price ``λ1 = weight``
    comes back below this threshold; larger values are taken as active. Components within ``δ`` of
    switching on are genuinely ambiguous at this tolerance.
    """
    tol, h, weight, margin = (check_positive(n, v) for n, v in
                              (("tol", tol), ("h", h), ("weight", weight), ("margin", margin)))
    return tol / (h * weight * margin)


@contextmanager
def _signal_errors(stop: Stop):
    """Within: a :class:`SolverError` that a second signal raised inside one of IPOPT's function calls is raised as
    :class:`~turnpike.stopping.Interrupted`."""
    try:
        yield
    except SolverError as exc:
        if stop.interrupted:
            raise Interrupted(f"solve interrupted by {stop.signal.name}", stop.signal) from exc
        raise


def solve_on_face(built, nlp, w0: np.ndarray, T: float, zero: np.ndarray, tol: float, each_iteration=None):
    """The NLP solved from ``w0`` with the L1 controls marked in ``zero`` (steps, nu) fixed at exactly 0, and
    whether that is a first-order point of the problem as posed; ``(result, report)``, the report for
    ``sol.stats["zeros"]``.

    :func:`solve` calls it with the zeros the presolve ended on (L-BFGS-B with ``u± >= 0`` kept exactly, and the
    projections onto the L1 balls, end on faces: which stages saturate, which controls are 0). IPOPT then solves
    the smaller problem on that face (the fixed variables are removed). Its solution ``V`` is a first-order point of
    the problem as posed when the fixed components also satisfy their conditions there, i.e. when none of them
    would leave 0: the projected gradient ``Π(V - ∇J) - V`` (:func:`~turnpike.presolve.projected_gradient`, over
    the L1 balls and the boxes) is at most ``tol`` (IPOPT's tolerance, here unscaled) on every fixed component.
    On them it is ``max(0, |∂J/∂u_kj| - λ1 h - μ_k)`` up to the ball's multiplier μ_k: the amount by which the
    L1 price fails to hold the component at 0. Then ``report["exact"]`` is True and the result is the solution;
    else :func:`solve` solves the whole problem (and makes the zeros of that solution exact by
    :func:`exact_zeros`).

    Measured on the two-circles problem with cost (C) (N = 100, 100 steps, ``benchmarks/bench_neural_ode.py``,
    seed 0): the solve on the face took 2 iterations and 0.14 s, where the whole problem (2000 split controls, a
    dense reduced Hessian) took 2 iterations and 1.3 s and its re-solve with the same zeros fixed 0.14 s more; the
    two solutions agree to 2e-9 in u, and J to 1e-11.

    Report: ``exact``, ``zeros`` (components of u exactly 0), ``largest_change`` (0: the presolve's zeros are
    exact already), ``projected_gradient`` of the solution (over all components) and ``fixed_projected_gradient``
    (over the fixed ones), ``solver_projected_gradient`` (None: no solution of the whole problem), ``iterations``
    and ``seconds`` of the solve, and ``rule``.
    """
    P = nlp.problem
    p = nlp.parameters(T)
    res = run(built, w0=w0, p=p, bounds=nlp.bounds(zero=zero), each_iteration=each_iteration)
    report = {"exact": False, "zeros": int(np.sum(nlp.controls(res.w) == 0)), "largest_change": 0.0,
              "projected_gradient": None, "fixed_projected_gradient": None, "solver_projected_gradient": None,
              "iterations": res.iterations, "seconds": res.solve_seconds, "candidates": "the presolve's exact zeros"}
    if not res.success:
        return res, {**report, "rule": f"the solve with the presolve's zeros fixed at 0 ended {res.status}"}
    V = nlp.control_variables(nlp.controls(res.w))
    gradient = np.asarray(nlp.reduced_objective()(V.T, p)[1]).T
    bound, upper = np.inf if P.l1_bound is None else P.l1_bound, nlp.control_bounds()[1]
    fixed = nlp.control_variables(zero.astype(float)) != 0  # u⁺_kj and u⁻_kj of the zeros
    fixed |= nlp.control_variables(-zero.astype(float)) != 0
    on_fixed = projected_gradient(V, gradient, bound, upper, where=fixed)
    report.update(projected_gradient=projected_gradient(V, gradient, bound, upper), fixed_projected_gradient=on_fixed)
    if on_fixed > tol:
        return res, {**report, "rule": f"refused: with the presolve's zeros fixed at 0 their projected gradient is "
                                       f"{on_fixed:.2e} > tol = {tol:g}"}
    return res, {**report, "exact": True, "rule": f"solved with the presolve's zeros fixed at 0; their projected "
                                                  f"gradient in the problem as posed is {on_fixed:.1e} <= tol"}


def exact_zeros(built, nlp, res, T: float, candidates: np.ndarray, stop: Stop | None = None):
    """The NLP solution ``res`` re-solved with the L1 controls marked in ``candidates`` (steps, nu) fixed at exactly
    0, if that is a first-order point of the problem as posed; ``(result, report)``, the report for
    ``sol.stats["zeros"]``.

    An interior-point solver returns an inactive L1 component ``u_kj = u⁺ - u⁻`` at the size of its tolerance
    (about :func:`zero_threshold`), never 0. :func:`solve` takes as candidates those below :func:`zero_threshold`
    at the solver's tolerance (where no presolve ran, or the face it ended on was refused by
    :func:`solve_on_face`). Setting them to
    0 alone moves the other components' gradients by the Hessian times the removed values (measured: 2e-5 on
    the two-circles problem, N = 100, where the removed values were below 5e-6), so the solver runs again from
    there with every candidate's variables fixed at 0 (``u⁺_kj = u⁻_kj = 0``, and ``u_kj`` in multiple shooting), to its
    tolerance.
    The result is kept if it converged and its projected gradient ``‖Π(V - ∇J) - V‖∞`` over the constraints of
    V in the problem as posed (:func:`~turnpike.presolve.projected_gradient`: the L1 balls, or ``V >= 0``
    without a bound) is at most that of the first solution: the zeros are then optimal for the problem as posed,
    not only for the one with them fixed (a candidate that should be active has a negative reduced gradient,
    which this measure sees). Else the first solution is kept and the report says why; so it is when ``stop``
    (:class:`~turnpike.stopping.Stop`: the solve's time limit, a signal) ends the second solve or is already due.

    Report: ``exact`` (the zeros are exact), ``zeros`` (components of u exactly 0), ``largest_change`` (the
    largest |u_kj| set to 0), ``projected_gradient`` of the point kept and ``solver_projected_gradient`` of the
    first, ``iterations`` and ``seconds`` of the second solve, and ``rule``.
    """
    P = nlp.problem
    u = nlp.controls(res.w)
    candidates = np.asarray(candidates, dtype=bool)
    fg, p = nlp.reduced_objective(), nlp.parameters(T)
    upper = nlp.control_bounds()[1]
    bound = np.inf if P.l1_bound is None else P.l1_bound

    def stationarity(controls):
        V = nlp.control_variables(controls)
        return projected_gradient(V, np.asarray(fg(V.T, p)[1]).T, bound, upper)

    before = stationarity(u)
    report = {"exact": False, "zeros": int(np.sum(u == 0)), "largest_change": 0.0, "projected_gradient": before,
              "solver_projected_gradient": before, "iterations": 0, "seconds": 0.0}
    if not np.any(candidates & (u != 0)):
        return res, {**report, "rule": "no candidate: the solver's controls, inactive ones at its tolerance's size"}
    if stop is not None and stop() is not None:
        return res, {**report, "rule": f"the solver's controls: no second solve ({stop.reason})"}
    snapped = np.where(candidates, 0.0, u)
    x = nlp.simulate(snapped, T)
    again = run(built, w0=nlp.pack(x, snapped), p=p, bounds=nlp.bounds(zero=candidates),
                each_iteration=None if stop is None else lambda w, f: stop() is not None)
    report.update(iterations=again.iterations, seconds=again.solve_seconds,
                  largest_change=float(np.abs(u[candidates]).max()))
    if not again.success:
        why = f"stopped: {stop.reason}" if again.status == "User_Requested_Stop" and stop and stop.reason else \
            again.status
        return res, {**report, "rule": f"the solver's controls: the solve with the candidates fixed at 0 ended {why}"}
    u_again = nlp.controls(again.w)
    after = stationarity(u_again)
    if after > before:
        return res, {**report, "rule": f"the solver's controls: with the candidates fixed at 0 the projected "
                                       f"gradient rose from {before:.2e} to {after:.2e}"}
    return again, {**report, "exact": True, "zeros": int(np.sum(u_again == 0)), "projected_gradient": after,
                   "rule": "re-solved with the candidates fixed at 0; no less stationary than the first solution"}


@dataclass(frozen=True)
class FirstOrder:
    """The cheap phase of a solve from one seeded start (:func:`first_order`): controls ``u`` (steps, nu),
    the objective ``cost`` there (NaN if not finite), the wall ``seconds``, and which phases ran."""

    seed: int | None
    u: np.ndarray
    cost: float
    seconds: float
    phases: str


def first_order(
    problem: Problem,
    T: float,
    steps: int | None = None,
    *,
    dt: float | None = None,
    method: str = "rk4",
    solver: str = "ipopt",
    options: dict | None = None,
    seed: int | None = 0,
    guess_scale: float = 0.1,
    presolve: str = "auto",
    derivatives: str = "auto",
    formulation: str = "auto",
    time_limit: float | None = None,
    rel_decrease: float = 1e-9,
) -> FirstOrder:
    """The first-order phases of :func:`solve` from its seeded random start, without certification: minibatch
    Adam (with ``presolve="adam"``), then L-BFGS-B on the reduced objective (none with ``presolve="none"``; with an
    L1 bound, :func:`~turnpike.presolve.augmented_lagrangian_descent` with its own stopping rule, which may end by
    Newton on the face it found); no Newton step on an unconstrained problem, no NLP solver. L-BFGS-B stops when a
    step decreases J by less than ``rel_decrease`` relative (:func:`solve`'s presolve: 1e-9); in the Hessian-vector
    mode, as there, when J settles (:data:`~turnpike.presolve.HANDOVER_WINDOW`). The other arguments are
    :func:`solve`'s; the NLP is built (and cached on the problem) as :func:`solve` builds it, so that certifying
    the returned controls in the same process (``solve(..., initial_guess=result.u)``) reuses it.

    A few hundred gradients against the certificate's Hessians: the cheap part of a solve, which
    :func:`~turnpike.multistart.multistart` runs from every start to choose the ones it certifies.
    """
    start = time.perf_counter()
    P, T, steps, guess_scale = _arguments(problem, T, steps, dt, method, presolve, derivatives, guess_scale, seed)
    stop = Stop(np.inf if time_limit is None else check_positive("time_limit", time_limit), start=start)
    formulation, _ = _formulation(P, formulation, solver, steps, method)
    second_order = second_order_mode(P, steps) if formulation == "reduced" else None
    _check_memory(P, steps, formulation, second_order)
    # the options of solve(..., initial_guess=result.u): its controls are on faces after a descent
    opts = _l1_options(solver_options(solver, options), P, solver, formulation, presolve != "none", options)
    built, _ = _built(P, steps, method, solver, opts, formulation, second_order, derivatives)
    nlp, phases = built.nlp, []
    u = _initial_guess(nlp, T, None, seed, guess_scale)[1]
    if presolve == "adam":
        adam = minibatch_descent(nlp, u, T, seed=seed, stop=stop)
        if np.isfinite(adam.cost):
            u = adam.u
            phases.append("Adam")
    if presolve != "none":
        pre = reduced_space_descent(nlp, u, T, **_descent_stops(second_order, rel_decrease), stop=stop)
        if np.isfinite(pre.cost):
            u = pre.u
            phases.append("augmented Lagrangian L-BFGS-B, projected gradient" if P.l1_bound is not None
                          else "L-BFGS-B")
    J = float(nlp.reduced_objective()(nlp.control_variables(u).T, nlp.parameters(T))[0])
    return FirstOrder(seed, u, J if np.isfinite(J) else np.nan, time.perf_counter() - start,
                      ", then ".join(phases) or "none (the random start)")


def _arguments(problem, T, steps, dt, method, presolve, derivatives, guess_scale, seed):
    """The checked arguments that :func:`solve` and :func:`first_order` share: ``(problem, T, steps, guess_scale)``."""
    P = _check_problem(problem)
    T = check_positive("T", T)
    steps = grid_steps(T, steps, dt)
    check_choice("method", method, INTEGRATORS)
    check_choice("presolve", presolve, PRESOLVES)
    check_choice("derivatives", derivatives, DERIVATIVES)
    _check_seed(seed)
    return P, T, steps, check_nonnegative("guess_scale", guess_scale)


def _built(P, steps, method, solver, opts, formulation, second_order, derivatives):
    """The NLP of ``formulation`` and its solver, cached on the problem (:func:`~turnpike.solvers.built_solver`),
    and whether it was built now; in the Hessian-vector mode IPOPT runs with a limited-memory Hessian."""
    if second_order == "hessian-vector":
        opts = _limited_memory(opts)
    transcription = ReducedSpace if formulation == "reduced" else MultipleShooting
    return built_solver(P, (formulation, steps, method), lambda: transcription(P, steps, method), solver, opts,
                        derivatives=derivatives)


#: IPOPT's start after the descent of an L1-bounded problem (:func:`~turnpike.presolve.augmented_lagrangian_descent`):
#: most split controls are exactly at their bound 0 there, and IPOPT's defaults would push them 1e-2 into the
#: interior and restart the barrier at μ = 0.1, undoing the face the descent found (two circles, N = 100, cost (C),
#: after the projected gradient: 7 iterations with μ = 1e-6 and pushes of 1e-8, 182 with the defaults from a point
#: short of the face). Starting the barrier at μ = 1e-9 with pushes of 1e-10 keeps IPOPT on the face: 4 iterations
#: (2 and 2 for the solve and the exact-zeros solve) against 10 (6 and 4) from the same point, whether the descent
#: ended by the projected gradient (‖·‖ <= 1e-6) or by Newton on the face (same workload, N = 100 and 1000, seed 0).
WARM_FACE_OPTIONS = {"ipopt.bound_push": 1e-10, "ipopt.bound_frac": 1e-10, "ipopt.mu_init": 1e-9}


#: IPOPT's options for the L1 split in multiple shooting: bounds not relaxed. There ``u⁺, u⁻`` enter only linearly
#: (the ties ``u - u⁺ + u⁻ = 0``, the L1 row and cost, :mod:`turnpike.transcription`), and under IPOPT's default
#: relaxation of the bounds by 1e-8 the part of each component that should be 0 ends at -1e-8: ``|u⁺ - u⁻|_1``
#: then exceeds M by up to ``2e-8 nu`` (1.1e-6 on the sparse example's instance, T = 5, with 91 iterations;
#: unrelaxed: within M, 88 iterations, the same J).
EXACT_SPLIT_OPTIONS = {"ipopt.bound_relax_factor": 0.0}


def _l1_options(opts: dict, P, solver: str, formulation: str, on_faces: bool, options: dict | None) -> dict:
    """``opts`` with IPOPT's options for the L1 split: :data:`EXACT_SPLIT_OPTIONS` in multiple shooting, and
    :data:`WARM_FACE_OPTIONS` where IPOPT starts on faces of the L1 balls (an L1 bound, ``on_faces``: see
    :func:`_starts_on_faces`); neither group where the user set any of its options (flat or nested)."""
    if solver != "ipopt" or not P.split_control:
        return opts
    chosen = ipopt_options(options).keys()
    groups = [EXACT_SPLIT_OPTIONS] * (formulation == "multiple-shooting") + [WARM_FACE_OPTIONS] * (
        P.l1_bound is not None and on_faces)
    return {**opts, **{k: v for group in groups if not chosen & group.keys() for k, v in group.items()}}


def _starts_on_faces(P, presolve: str, cold: bool, initial_guess) -> bool:
    """Whether IPOPT starts on faces of the L1 balls: after the projected descent (a presolve as :func:`_presolve`
    decides it), or from a guess with controls exactly 0 (the end point of such a descent, e.g. of
    :func:`first_order`). Not from another guess, which a small μ would pin near its bounds: from the solution of
    cost (B) on the inner two-circles instance of ``examples/neural_ode_sparse.py --inner`` (multiple shooting,
    N = 40, 200 steps), IPOPT with μ = 1e-9 had not finished after 780 s; with its defaults it took 752 iterations
    (1026 s, on a loaded machine)."""
    if presolve in ("lbfgs", "adam") or (presolve == "auto" and cold and P.n_samples > 1):
        return True
    u = initial_guess.u if isinstance(initial_guess, Solution) else initial_guess
    return u is not None and bool(np.any(np.asarray(u) == 0))


def _presolve(nlp, T, presolve, cold, second_order, x_guess, u_guess, seed, verbose, report, stop):
    """The presolve's phases (see :func:`solve`): ``(stats, x_guess, u_guess)`` for the NLP solver."""
    stats, P = {}, nlp.problem
    if presolve in ("lbfgs", "adam") or (presolve == "auto" and cold and P.n_samples > 1):
        start = time.perf_counter()
        # The descents need J and ∇J thousands of times: the reduced transcription evaluates them by its compiled
        # adjoint, 16x faster than multiple shooting's CasADi function (N = 8 samples in R^7, outer field, cost
        # (C), 50 steps: 1.0 against 16.1 ms), so a multiple-shooting solve descends on one too.
        descent = nlp if isinstance(nlp, ReducedSpace) else ReducedSpace(P, nlp.steps, nlp.method)
        phases, stats["presolve"] = [], {"seconds": time.perf_counter() - start}
        # Newton-CG's Hessian-vector product compiles during the descents.
        newton_cg_follows = presolve in ("auto", "adam") and unconstrained(nlp) and second_order == "hessian-vector"
        with nlp.hessian_vector_compiling(stop) if newton_cg_follows else nullcontext():
            if presolve == "adam":
                adam = minibatch_descent(descent, u_guess, T, seed=seed, callback=report.descent("adam", 1),
                                         stop=stop)
                stats["presolve"].update(adam=adam.summary(), seconds=stats["presolve"]["seconds"] + adam.seconds)
                if np.isfinite(adam.cost):
                    u_guess, x_guess = adam.u, None
                    phases.append("Adam")
            pre = reduced_space_descent(descent, u_guess, T, **_descent_stops(second_order, 1e-9),
                                        callback=report.descent("lbfgs", 100), stop=stop)
        u_guess, x_guess = pre.u, None
        phases.append("augmented Lagrangian L-BFGS-B, projected gradient" if P.l1_bound is not None else "L-BFGS-B")
        stats["presolve"].update(cost=pre.cost, seconds=stats["presolve"]["seconds"] + pre.seconds,
                                 lbfgs=pre.summary())
        if presolve in ("auto", "adam") and unconstrained(nlp) and np.isfinite(pre.cost):
            if second_order == "dense":
                newton = newton_refinement(nlp, u_guess, T, verbose=verbose,
                                           callback=report.phase("newton"), stop=stop)
                u_guess = newton.u
                phases.append("Newton")
            else:
                newton = _newton_cg(nlp, u_guess, T, verbose, report.phase("newton-cg"), stop=stop)
                u_guess = newton.x.reshape(u_guess.shape)
                phases.append("Newton-CG")
            summary = newton.summary()
            if second_order != "dense":
                summary["preconditioner"] = nlp.gauss_newton_method
            stats["presolve"].update(cost=newton.cost, seconds=stats["presolve"]["seconds"] + newton.seconds,
                                     newton=summary)
        stats["presolve"]["method"] = ", then ".join(phases) + " (reduced space)"
    return stats, x_guess, u_guess


def _descent_stops(second_order: str | None, rel_decrease: float) -> dict:
    """When the presolve's L-BFGS-B stops: after a step that decreases J by less than ``rel_decrease`` relative,
    or at most 3000 iterations, where a dense Newton phase follows; without a dense Hessian, where a Hessian-vector
    product costs several gradients and Newton-CG many products per step, once J settles over a window of
    iterations (:data:`~turnpike.presolve.HANDOVER_WINDOW`) or stalls at round-off."""
    if second_order != "hessian-vector":
        return {"rel_decrease": rel_decrease}
    settings = _presolve_settings  # read at call time: benchmarks/bench_endgame.py compares other settings
    return {"rel_decrease": 0.0, "max_iter": settings.HANDOVER_ITERATIONS, "window": settings.HANDOVER_WINDOW,
            "window_decrease": settings.HANDOVER_DECREASE}


def _certifiable(nlp, w0, T: float, tol: float, solver: str, stop: Stop) -> bool:
    """Whether IPOPT may check the start ``w0`` although the time limit (or the callback) asked the solve to stop
    during the presolve: IPOPT asks its iteration callback before its convergence test, so a stop request at
    iteration 0 would end the solve "User_Requested_Stop" even at a point it accepts. That check costs no step
    where ``‖∇J(w0)‖∞ <= tol`` on an unconstrained problem (IPOPT's scaled dual infeasibility is at most the
    unscaled one there, and nothing else enters its error), so it is allowed then, and not after a signal."""
    if stop() is None or stop.interrupted or solver != "ipopt" or not unconstrained(nlp):
        return False
    return float(np.max(np.abs(nlp._value_and_gradient(w0, nlp.parameters(T))[1]))) <= tol


class _Progress:
    """The progress of every phase, to the user's ``callback(phase, iteration, cost, u)`` (a True return asks
    ``stop`` to stop); with ``verbose``, printed (every 100th L-BFGS iteration; the Newton phases and IPOPT
    print their own lines); with ``progress``, one status line on stderr redrawn at most twice a second
    (phase, iteration, cost, seconds since the start)."""

    def __init__(self, transcription, callback, verbose: bool, stop: Stop, progress: bool = False):
        self.transcription, self.callback, self.verbose, self.stop = transcription, callback, verbose, stop
        self.progress, self.shown = progress, 0.0
        self.wanted = callback is not None or verbose or progress
        self.iterations = {}
        self.certify_start = False  # IPOPT's iteration 0 goes on to its convergence test even after a stop request

    def _tell(self, *args) -> None:
        if self.callback(*args):
            self.stop.request("stopped by the callback")

    def show(self, phase: str, k: int, J: float) -> None:
        """The status line, if ``progress`` and half a second has passed since the last one."""
        now = time.perf_counter()
        if self.progress and now - self.shown >= 0.5:
            self.shown = now
            sys.stderr.write(f"\r{phase} iteration {k}: J = {J:.8g} ({now - self.stop.start:.0f} s)\033[K")
            sys.stderr.flush()

    def done(self) -> None:
        if self.progress and self.shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()

    def iteration(self, w, f) -> bool:
        """IPOPT's iterate (the NLP variables w, the objective f): to the callback; True to stop."""
        k = self.iterations["ipopt"] = self.iterations.get("ipopt", -1) + 1  # IPOPT counts from 0
        self.show("IPOPT", k, float(f))
        if self.callback is not None:
            self._tell("ipopt", k, float(f), self.transcription.controls(w))
        return self.stop() is not None and not (k == 0 and self.certify_start)

    def descent(self, name: str, every: int):
        """The callback of a descent phase (its iterates as scipy's OptimizeResult: ``x``, ``fun``), or None
        when nothing is wanted; with ``verbose`` every ``every``-th iterate is printed."""
        if not self.wanted:
            return None

        def report(intermediate_result):  # scipy passes its OptimizeResult to a parameter of this name
            k = self.iterations[name] = self.iterations.get(name, 0) + 1
            J = float(intermediate_result.fun)
            if self.verbose and k % every == 0:
                print(f"{name} {k:6d}  J {J:.10e}", flush=True)
            self.show(name, k, J)
            if self.callback is not None:
                V = np.array(intermediate_result.x).reshape(self.transcription.steps, -1)
                self._tell(name, k, J, self.transcription.stage_controls(V))

        return report

    def phase(self, name: str):
        """The callback of a Newton phase (``(u, J, ‖∇J‖∞)``), or None without a user callback or progress."""
        if self.callback is None and not self.progress:
            return None

        def report(u, J, _gradient_norm):
            k = self.iterations[name] = self.iterations.get(name, 0) + 1
            self.show(name, k, float(J))
            if self.callback is None:
                return
            steps = self.transcription.steps
            self._tell(name, k, float(J), self.transcription.stage_controls(np.array(u).reshape(steps, -1)))

        return report


def _newton_cg(rs: ReducedSpace, u: np.ndarray, T: float, verbose: bool, callback=None, stop=None,
               precondition: bool = True):
    """Trust-region Newton-CG (:func:`~turnpike.krylov.newton_cg`) on the reduced objective from ``u``,
    preconditioned by the Gauss–Newton blocks of the reduced Hessian (:meth:`ReducedSpace.gauss_newton`, rebuilt
    every 10 accepted steps) where they are to be had and ``precondition``."""
    p, shape = rs.parameters(T), u.shape

    def hessian_vector(v, d):
        return rs.hessian_vector(v.reshape(shape), p, d.reshape(shape)).reshape(-1)

    def gauss_newton(v):
        return rs.gauss_newton(v.reshape(shape), p)

    return newton_cg(lambda v: rs._value_and_gradient(v, p), hessian_vector, u.reshape(-1), gtol=1e-10,
                     max_cg=250, preconditioner=gauss_newton if precondition else None,
                     verbose=verbose, callback=callback, stop=stop)


def _second_order_report(rs: ReducedSpace, res, T: float, mode: str, presolve: dict) -> dict:
    """``sol.stats["second_order"]``: the mode and, at a converged unconstrained solution, a verdict.

    Hessian-vector mode: the smallest eigenvalues of the reduced Hessian by Lanczos
    (:func:`~turnpike.krylov.smallest_eigenvalues`) and their verdict. Dense mode: the Newton phase's last
    Hessian, factorised by Cholesky (``positive_definite``: a strict local minimum where the gradient
    vanishes), at no extra cost, where IPOPT accepted the phase's point as it was and the phase converged or
    stopped at round-off (:data:`~turnpike.presolve.ROUND_OFF_STOP`: its last Hessian is then that point's); any
    other point is "not determined".
    """
    report = {"mode": mode}
    if not res.success:
        return {**report, "verdict": "not determined", "reason": "the solver did not converge"}
    if not unconstrained(rs):
        return {**report, "verdict": "not determined",
                "reason": "constrained problem: the reduced Hessian alone does not decide"}
    if mode == "dense":
        newton = presolve.get("newton", {})
        ended = newton.get("converged") or newton.get("message") == ROUND_OFF_STOP  # there, H is the end point's
        if ended and newton.get("positive_definite") and res.iterations == 0:
            return {**report, "verdict": "local minimum",
                    "reason": "the Newton phase's last Hessian is positive definite (Cholesky without regularisation) "
                              "and IPOPT accepted the phase's point"}
        return {**report, "verdict": "not determined", "reason": "no converged Newton phase with a positive definite "
                "Hessian whose point IPOPT accepted as it was (Cholesky needed regularisation, the phase did not "
                "run, or IPOPT moved on)"}
    u, p = rs.controls(res.w), rs.parameters(T)

    def product(v):
        return rs.hessian_vector(u, p, v.reshape(u.shape)).reshape(-1)

    estimate = smallest_eigenvalues(product, u.size).summary()
    return {**report, "hessian_vector": rs.hessian_vector_method, **estimate}


def solve_static(
    problem: Problem,
    *,
    options: dict | None = None,
    initial_guess: StaticSolution | None = None,
    seed: int | None = 0,
    guess_scale: float = 0.0,
    starts: int = 1,
    verbose: bool = False,
) -> StaticSolution:
    """Solve the static problem ``min L(x, u)`` s.t. ``f(x, u) = 0`` with IPOPT.

    See :mod:`turnpike.static` for the NLP. The start is ``x̄ = x0`` and ``ū = 0`` (the default
    ``guess_scale = 0``), seeded random ``ū = guess_scale * N(0, 1)`` (clipped to the bounds), or
    ``initial_guess``. Why ``ū = 0``: a neural ODE's field vanishes at zero weights, so that start
    is feasible for every sample. From the random ``ū`` of scale 0.1 instead, IPOPT took 36 iterations
    on the two-circles problem at N = 200 (10 from ``ū = 0``), and at N = 1000 it stalled with a Hessian
    regularisation near 1e4, at about 1 s per iteration (12 iterations, 0.9 s from ``ū = 0``); the
    other catalogue problems took as many iterations or fewer from ``ū = 0``, to the same optima.
    IPOPT's default tolerance here is ``tol = 1e-10``: the static optimum is the reference
    the turnpike is measured against.

    The static problem can have several local optima (a pendulum hanging and upright), and the one
    found is the one IPOPT reaches from the start. ``starts = k > 1`` also solves from ``k - 1`` seeded
    random starts ``x̄ = x0 + s N(0, 1)``, ``ū = N(0, 1)`` (``s = max(1, |x0|_∞)``, the generator seeded
    with ``(seed, i)``; ``ū`` clipped to the bounds) and returns the converged solution of lowest cost
    (the first start's if none converged); ``stats["starts"]`` lists each start's success and cost.

    Returns:
        A :class:`StaticSolution`; ``success`` is False when IPOPT did not converge.
    """
    P = _check_problem(problem)
    guess_scale = check_nonnegative("guess_scale", guess_scale)
    starts = check_positive("starts", starts, integer=True)
    _check_seed(seed)
    opts = solver_options("ipopt", {"ipopt.tol": 1e-10, **(options or {})}, verbose=verbose)
    built, fresh = built_solver(P, ("static",), lambda: StaticNLP(P), "ipopt", opts)
    nlp = built.nlp
    if initial_guess is None:
        guesses = [(P.x0_samples, _random_controls(P, 1, seed, guess_scale)[0])]
    elif isinstance(initial_guess, StaticSolution):
        guesses = [(initial_guess.x, initial_guess.u)]
    else:
        raise InputError(f"initial_guess must be a StaticSolution or None, got {type(initial_guess).__name__}")
    spread = max(1.0, float(np.abs(P.x0_samples).max()))
    for i in range(1, starts):
        rng = np.random.default_rng([0 if seed is None else seed, i])
        x = P.x0_samples + spread * rng.standard_normal(P.x0_samples.shape)
        guesses.append((x, np.clip(rng.standard_normal(P.nu), P.control_lower, P.control_upper)))
    solutions = []
    for x_guess, u_guess in guesses:
        res = run(built, w0=nlp.pack(x_guess, u_guess), p=nlp.parameters(), bounds=nlp.bounds())
        x, u = nlp.unpack(res.w)
        solutions.append(StaticSolution(
            success=res.success,
            status=res.status,
            cost=res.cost,
            cost_terms=nlp.cost_terms(res.w),
            stats={
                "iterations": res.iterations,
                "build_seconds": built.build_seconds if fresh and not solutions else 0.0,
                "solve_seconds": res.solve_seconds,
                "solver": "ipopt",
            },
            problem=P.name,
            x=x.reshape(P.state_shape),
            u=u,
            adjoint=nlp.adjoint(res.lam_g).reshape(P.state_shape),
        ))
    if starts == 1:
        return solutions[0]
    converged = [s for s in solutions if s.success and np.isfinite(s.cost)]
    best = min(converged, key=lambda s: s.cost) if converged else solutions[0]
    table = [{"start": i, "success": s.success, "cost": s.cost} for i, s in enumerate(solutions)]
    return replace(best, stats={**best.stats, "starts": table})
