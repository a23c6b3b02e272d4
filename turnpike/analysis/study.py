"""Horizon comparison: solve one problem for several T and measure how the turnpike changes.

Grid policy: a fixed interval length ``dt`` (``steps = T/dt``, the default in the theory: the
same resolution on every horizon) or a fixed number of ``steps`` (``h = T/steps``, which reuses one
built solver for every horizon). Continuation: horizons are solved in increasing order, each
warm-started from the previous solution *stretched around the static optimum*: the first half of
the previous solution on ``[0, T_prev/2]``, its second half on ``[T - T_prev/2, T]``, and the static
optimum in between, which is what the turnpike predicts the new optimum looks like. Each horizon is
then solved in full from that guess: following the optimum along T instead (a tangent predictor
``du/dT = -H⁻¹ ∂²J/∂u∂T`` and Newton correctors, on one grid of fixed steps) does not carry over
on non-convex learning problems: on the two-circles problem (N = 200, 100 steps, horizons 1, 2,
3, 4, 5, 6, 8, 10), 13 of 14 such continuations between neighbouring horizons (up and down) ended in
a fold of the branch of local minima (the Hessian's smallest eigenvalue reaching 0) after ΔT = 0.02
to 1.04, and the full solves that then took over cost more than solving from the guess above.

A :class:`HorizonStudy` holds everything needed to print, plot and save the comparison; a saved
study is loaded back and re-plotted without solving again.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import InputError, SolverError, check_positive
from ..files import write_json
from ..problem import Problem
from ..solution import Solution, StaticSolution
from ..solve import grid_steps, solve, solve_static
from .rates import DEFAULT_FLOOR, PredictedRate, predicted_rate
from .report import DEFAULT_EPSILON, TurnpikeReport, turnpike_report

__all__ = ["HorizonStudy", "StudyInterrupted", "compare_horizons", "stretched_guess"]


class StudyInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM (``signal``) stopped :func:`compare_horizons`; ``study`` holds the horizons finished
    before (None if none was), to save or print."""

    def __init__(self, study: HorizonStudy | None, total: int, signal: int = 2):
        done = 0 if study is None else len(study.solutions)
        super().__init__(f"interrupted after {done} of {total} horizons")
        self.study, self.signal = study, signal

COLUMNS = (
    "T", "steps", "success", "status", "cost", "cost_per_time", "static_cost", "cost_excess",
    "rate", "rate_model", "rate_constant", "rate_r2", "predicted_rate", "tube_entry", "tube_exit", "tube_fraction",
    "total_seconds", "iterations",
)


def stretched_guess(previous: Solution, static: StaticSolution, T: float, steps: int,
                    constant: tuple[int, ...] = ()) -> Solution:
    """``previous`` stretched to horizon ``T`` (>= previous.T) around the static optimum in the middle; the
    ``constant`` controls (indices) keep the value they have in ``previous``.

    Returned as a (non-converged) :class:`Solution` to be used as ``initial_guess``.
    """
    t = np.linspace(0.0, T, steps + 1)
    half = previous.T / 2
    shift = T - previous.T

    def sample(times, values, grid):
        flat = values.reshape(len(grid), -1)
        return np.stack([np.interp(times, grid, col) for col in flat.T], axis=1)

    x = np.broadcast_to(static.x.reshape(1, -1), (steps + 1, static.x.size)).copy()
    early, late = t <= half, t >= T - half
    x[early] = sample(t[early], previous.x, previous.t)
    x[late] = sample(t[late] - shift, previous.x, previous.t)
    t_mid = 0.5 * (t[:-1] + t[1:])
    prev_mid = 0.5 * (previous.t[:-1] + previous.t[1:])
    u = np.broadcast_to(static.u, (steps, static.u.size)).copy()
    early, late = t_mid <= half, t_mid >= T - half
    u[early] = sample(t_mid[early], previous.u, prev_mid)
    u[late] = sample(t_mid[late] - shift, previous.u, prev_mid)
    u[:, list(constant)] = previous.u[0, list(constant)]
    return Solution(
        success=False, status="initial guess", cost=np.nan, cost_terms={}, stats={}, problem=previous.problem,
        T=T, steps=steps, t=t, x=x.reshape(steps + 1, *previous.x.shape[1:]), u=u,
        adjoint=np.zeros((steps, *previous.x.shape[1:])),
    )


@dataclass(frozen=True)
class HorizonStudy:
    """Solutions for several horizons, the static optimum, and their turnpike reports."""

    problem: str
    static: StaticSolution
    solutions: tuple[Solution, ...]
    reports: tuple[TurnpikeReport, ...]
    settings: dict

    @property
    def horizons(self) -> list[float]:
        return [s.T for s in self.solutions]

    @property
    def success(self) -> bool:
        """Whether the static problem and every horizon converged."""
        return self.static.success and all(s.success for s in self.solutions)

    @property
    def warnings(self) -> list[str]:
        """What the study as a whole shows to be wrong. Under the turnpike property ``J_T = T J̄ + O(1)``, so
        between the two longest converged horizons ``J_T`` grows like ``J̄``; growing more slowly (by more than
        1% of ``|J̄|``) with a negative excess ``J_T - T J̄`` means that trajectories stay somewhere cheaper than
        the static solution, which is then not the optimal steady state (a local optimum of the static
        problem: try ``static_starts`` or ``static_guess``)."""
        done = [s for s in self.solutions if s.success and np.isfinite(s.cost)]
        if not self.static.success or len(done) < 2:
            return []
        (T1, J1), (T2, J2) = ((s.T, s.cost) for s in done[-2:])
        slope, J = (J2 - J1) / (T2 - T1), self.static.cost
        if slope < J - 0.01 * max(abs(J), 1e-12) and J2 - T2 * J < 0:
            return [f"J_T grows like {slope:.6g}·T between T = {T1:g} and {T2:g}, below the static cost J̄ = {J:.6g}: "
                    "the static solution is not the optimal steady state (a local optimum?); try static_starts "
                    "(--static-starts) or a static_guess"]
        return []

    def rows(self) -> list[dict]:
        """One flat dict per horizon: the report's summary, ``total_seconds`` (the wall time of its
        :func:`~turnpike.solve` call: build, presolve and NLP solve), ``iterations`` (the NLP solver's) and
        ``warnings`` (the solution's, joined by "; ", or None)."""
        return [
            {**r.summary(), "total_seconds": s.stats.get("total_seconds"), "iterations": s.stats.get("iterations"),
             "warnings": "; ".join(s.warnings) or None}
            for r, s in zip(self.reports, self.solutions, strict=True)
        ]

    def table(self) -> str:
        """A plain-text table, one row per horizon."""
        head = ["T", "steps", "ok", "J_T", "J_T/T", "J_T-T·J̄", "rate", "predicted", "tube in", "tube out", "sec"]
        lines = []
        for row in self.rows():
            lines.append([
                f"{row['T']:g}", str(row["steps"]), "yes" if row["success"] else "NO",
                _fmt(row["cost"], 6), _fmt(row["cost_per_time"], 6), _fmt(row["cost_excess"]),
                _fmt(row["rate"]), _fmt(row["predicted_rate"]), _fmt(row["tube_entry"]), _fmt(row["tube_exit"]),
                "—" if row["total_seconds"] is None else f"{row['total_seconds']:.2f}",
            ])
        widths = [max(len(h), *(len(r[i]) for r in lines)) for i, h in enumerate(head)]
        out = ["  ".join(h.rjust(w) for h, w in zip(head, widths, strict=True))]
        out += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in lines]
        static = f"static cost J̄ = {self.static.cost:.6g} ({'converged' if self.static.success else 'NOT converged'})"
        return "\n".join([f"{self.problem}: {static}", *out])

    def plot(self, directory) -> list[Path]:
        """Write the comparison's figures as PNG files into ``directory``; returns their paths."""
        from ..plots import plot_study

        return plot_study(self, Path(directory))

    # -- files ------------------------------------------------------------------------------
    def save(self, directory) -> Path:
        """Write ``summary.json``, ``summary.csv``, ``static.npz`` and ``T{T}.npz`` per horizon (not into the
        directory of a sweep, whose table it would mix with)."""
        directory = Path(directory)
        if (directory / "sweep.json").exists():
            raise InputError(f"directory={str(directory)!r} holds a sweep (sweep.json): choose another directory")
        directory.mkdir(parents=True, exist_ok=True)
        self.static.save(directory / "static.npz")
        files = []
        for s in self.solutions:
            files.append(s.save(directory / f"T{s.T:g}.npz").name)
        rows = self.rows()
        summary = {"problem": self.problem, "settings": self.settings, "static_cost": self.static.cost,
                   "static_success": self.static.success, "horizons": rows, "files": files}
        write_json(directory / "summary.json", summary)
        with open(directory / "summary.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        return directory

    @classmethod
    def load(cls, directory) -> HorizonStudy:
        """Read a study written by :meth:`save`; the reports are recomputed from the solutions."""
        directory = Path(directory)
        try:
            summary = json.loads((directory / "summary.json").read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"directory={str(directory)!r} holds no readable summary.json: {exc}") from exc
        static = StaticSolution.load(directory / "static.npz")
        solutions = tuple(Solution.load(directory / name) for name in summary["files"])
        predicted = {row["T"]: row for row in summary["horizons"]}
        settings = summary["settings"]
        reports = tuple(
            _with_predicted(turnpike_report(s, static, epsilon=settings["epsilon"], one_sided=settings["one_sided"],
                                            floor=settings["floor"]), predicted.get(s.T))
            for s in solutions
        )
        return cls(summary["problem"], static, solutions, reports, settings)


def _with_predicted(report: TurnpikeReport, row: dict | None) -> TurnpikeReport:
    """The report with the predicted rate read back from a saved summary row."""
    if row is None or row.get("predicted_reason") == "no problem given":
        return report
    return replace(report, predicted=PredictedRate(row["predicted_rate"], row["predicted_reason"], np.zeros(0)))


def _fmt(value, digits: int = 4) -> str:
    return "—" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.{digits}g}"


def progress_bar(done: int, total: int, label: str, stream=None) -> None:
    """``[######------] done/total label`` on ``stream`` (default: ``sys.stderr`` at the call; redrawn in place
    on a terminal)."""
    stream = stream or sys.stderr
    width = 24
    filled = int(width * done / total)
    bar = "#" * filled + "-" * (width - filled)
    end = "\n" if done == total or not stream.isatty() else ""
    stream.write(f"\r[{bar}] {done}/{total} {label}" + end)
    stream.flush()


def compare_horizons(
    problem: Problem,
    horizons: Sequence[float],
    *,
    dt: float | None = None,
    steps: int | None = None,
    continuation: bool = True,
    epsilon: float = DEFAULT_EPSILON,
    one_sided: bool | None = None,
    floor: float = DEFAULT_FLOOR,
    progress: bool = True,
    static_starts: int = 1,
    static_guess: StaticSolution | None = None,
    starts: int = 1,
    certify: int = 1,
    workers: int | None = None,
    scheduler=None,
    **solve_options,
) -> HorizonStudy:
    """Solve ``problem`` for every horizon in ``horizons`` and report the turnpike of each.

    Arguments:
        problem: the :class:`~turnpike.Problem`.
        horizons: the horizons T (> 0, distinct); solved in increasing order.
        dt / steps: exactly one: a fixed interval length or a fixed number of intervals.
        continuation: warm-start each horizon from the previous one (see the module docstring);
            otherwise every horizon starts from the seeded random guess of :func:`~turnpike.solve`.
        epsilon, one_sided, floor: passed to :func:`~turnpike.turnpike_report` (``one_sided=None``: each horizon's
            rate model, one- or two-sided, is chosen from its curve by :func:`~turnpike.fit_rate`).
        progress: print a progress line per horizon on stderr (and, on a terminal, each solve's status line:
            :func:`~turnpike.solve`'s ``progress``).
        static_starts, static_guess: the static problem's ``starts`` and ``initial_guess`` for
            :func:`~turnpike.solve_static` (its optimum may be only local: see :attr:`HorizonStudy.warnings`).
        starts, certify, workers, scheduler: with ``starts > 1`` every horizon is solved by
            :func:`~turnpike.multistart` (``starts`` seeded starts from ``seed``, the ``certify`` best certified, on
            ``workers`` processes or a Dask ``scheduler``), and with continuation also from the previous horizon;
            the better certified solution is kept, with the starts' table in its ``stats["starts"]`` and where it
            came from in ``stats["multistart"]["kept"]``. ``J_T`` is then less hostage to one basin.
        **solve_options: ``method``, ``solver``, ``options``, ``seed`` ... for :func:`~turnpike.solve`.

    Returns:
        A :class:`HorizonStudy`. Horizons that did not converge are kept and marked
        ``success=False``; a failed horizon is not used to warm-start the next.
    """
    if isinstance(horizons, (str, bytes)) or not isinstance(horizons, Sequence) or len(horizons) == 0:
        raise InputError(f"horizons must be a non-empty sequence of numbers, got {horizons!r}")
    Ts = sorted(check_positive("horizons", T) for T in horizons)
    if len(set(Ts)) != len(Ts):
        raise InputError(f"horizons must be distinct, got {list(horizons)!r}")
    grids = [grid_steps(T, steps, dt) for T in Ts]  # validates dt/steps for every T before solving
    for key in ("initial_guess", "T", "steps", "dt"):
        if key in solve_options:
            raise InputError(f"{key} cannot be passed to compare_horizons (it is set per horizon)")

    starts, certify = check_positive("starts", starts, integer=True), check_positive("certify", certify, integer=True)
    if certify > starts:
        raise InputError(f"certify must be between 1 and starts = {starts}, got {certify!r}")
    recorded = {**solve_options, **({"starts": starts, "certify": certify} if starts > 1 else {})}
    static = solve_static(problem, starts=static_starts, initial_guess=static_guess)
    predicted = predicted_rate(problem, static)
    solutions, reports = [], []
    previous = None
    try:
        for i, (T, n) in enumerate(zip(Ts, grids, strict=True)):
            if progress:
                progress_bar(i, len(Ts), f"solving T = {T:g} ({n} steps)")
            guess = None
            if continuation and previous is not None and static.success:
                guess = stretched_guess(previous, static, T, n, problem.constant_controls)
            if starts > 1:
                sol = _best_of_starts(problem, T, n, guess, starts, certify, workers, scheduler, solve_options)
            else:
                sol = solve(problem, T, n, initial_guess=guess,
                            **{"progress": progress and sys.stderr.isatty(), **solve_options})
            solutions.append(sol)
            reports.append(turnpike_report(sol, static, predicted=predicted, epsilon=epsilon, one_sided=one_sided,
                                           floor=floor))
            if sol.success:
                previous = sol
    except KeyboardInterrupt as exc:  # Ctrl-C, or turnpike.Interrupted (SIGTERM too): keep what is finished
        finished = HorizonStudy(problem.name, static, tuple(solutions), tuple(reports),
                                _settings(problem, dt, steps, continuation, epsilon, one_sided, floor, recorded))
        raise StudyInterrupted(finished if solutions else None, len(Ts), getattr(exc, "signal", 2)) from exc
    if progress:
        progress_bar(len(Ts), len(Ts), "done")
    settings = _settings(problem, dt, steps, continuation, epsilon, one_sided, floor, recorded)
    return HorizonStudy(problem.name, static, tuple(solutions), tuple(reports), settings)


def _best_of_starts(problem, T, n, guess, starts, certify, workers, scheduler, solve_options) -> Solution:
    """The better certified of :func:`~turnpike.multistart` and the continuation from ``guess`` (if any)."""
    from ..multistart import SOLVE_OPTIONS, multistart

    passed = {k: v for k, v in solve_options.items() if k in SOLVE_OPTIONS}
    warm = None if guess is None else solve(problem, T, n, initial_guess=guess, **passed)
    try:
        best = multistart(problem, T, n, starts=starts, certify=certify, seed=solve_options.get("seed") or 0,
                          workers=workers, scheduler=scheduler, **passed)
    except SolverError:  # no start gave a solution: the continuation's, if there is one, is the row
        if warm is None:
            raise
        return replace(warm, stats={**warm.stats, "multistart": {"kept": "continuation (every start failed)"}})
    kept = f"start {best.stats['multistart']['best_seed']}"
    if warm is not None and warm.success and (not best.success or warm.cost < best.cost):
        best, kept = replace(warm, stats={**warm.stats, "starts": best.stats["starts"],
                                          "multistart": best.stats["multistart"]}), "continuation"
    return replace(best, stats={**best.stats, "multistart": {**best.stats["multistart"], "kept": kept}})


def _settings(problem, dt, steps, continuation, epsilon, one_sided, floor, solve_options) -> dict:
    """What a study was made with (saved in its summary)."""
    return {"dt": dt, "steps": steps, "continuation": continuation, "epsilon": epsilon, "one_sided": one_sided,
            "floor": floor, "state_names": problem.state_names, "control_names": problem.control_names,
            **{k: v for k, v in solve_options.items() if isinstance(v, (str, int, float, bool))}}
