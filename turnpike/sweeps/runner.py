"""The sweep: a grid of problem parameters x horizons x seeds, solved in parallel, checkpointed, tabulated.

Every solve is independent: each horizon starts from the seeded random controls of
:func:`~turnpike.solve` (no continuation from a shorter horizon, which would chain the solves), so the
result of a solve does not depend on where or in which order it runs, and the serial, pool and
Dask runs of one sweep give the same table. The static problem of each parameter point is solved once.
"""

from __future__ import annotations

import csv
import io
import json
import math
import signal
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..analysis import DEFAULT_EPSILON, HorizonStudy, turnpike_report
from ..analysis.rates import DEFAULT_FLOOR, predicted_rate
from ..analysis.study import COLUMNS, progress_bar
from ..errors import InputError, check_choice, check_positive
from ..files import atomic_write, jsonable
from ..problem import Problem
from ..solution import Solution, StaticSolution
from ..solvers import SOLVERS
from ..stopping import Interrupted
from ..transcription import INTEGRATORS
from . import checkpoints
from .arguments import (
    check_seeds,
    claimed_directory,
    horizon_grid,
    parameter_column,
    parameter_points,
    plain,
    point_problem,
    writable_directory,
)
from .executors import end_rerun_script, executor, local_workers
from .tasks import Task, WorkerLost, check_factory, factory_name

__all__ = ["sweep", "SweepResult", "SweepInterrupted", "CheckpointWarning"]


class CheckpointWarning(UserWarning):
    """A checkpoint file was not trusted (unreadable, garbled, digest mismatch); its task is solved again."""


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM: ``signal``) stopped a sweep; the finished solves are checkpointed and the next run of
    the same sweep skips them."""

    def __init__(self, finished: int, total: int, directory: Path, signal: int = 2):
        self.finished, self.total, self.directory, self.signal = finished, total, directory, signal
        super().__init__(f"interrupted: {finished} of {total} solves are checkpointed in {directory}; "
                         "run the same sweep again to finish it")


@dataclass(frozen=True)
class SweepResult:
    """The table of a sweep and what this run did.

    Attributes:
        factory: the catalogue name or ``module:callable`` of the problem family.
        columns: the table's columns: ``point``, the parameter names, ``seed``, the columns of a horizon
            comparison (``T``, ``steps``, ``success``, ``status``, ``cost`` ... ``iterations``, see
            :meth:`~turnpike.HorizonStudy.rows`), ``static_success``.
        rows: one dict per solve, ordered by parameter point (grid order), then T (increasing), then seed
            (as given), whatever the order in which the solves finished. Where a solve raised or its worker
            died, ``status`` says so and the turnpike columns are None.
        points: per parameter point: ``params``, the static problem's ``success``, ``status`` and ``cost``, and
            its ``figures``.
        solved, reused: labels (``point 0 T=10 seed=1``) of the solves this run did / read from checkpoints.
        corrupted: checkpoint files that were not trusted, with the reason; they were solved again.
        files: the table (``sweep.csv``, ``sweep.json``) and the figures written.
    """

    factory: str
    columns: tuple[str, ...]
    rows: tuple[dict, ...]
    points: tuple[dict, ...]
    solved: tuple[str, ...]
    reused: tuple[str, ...]
    corrupted: tuple[str, ...]
    files: tuple[Path, ...]

    @property
    def success(self) -> bool:
        """Whether every solve, static problems included, converged."""
        return all(r["success"] and r["static_success"] for r in self.rows)

    def table(self) -> str:
        """A plain-text table: parameters, seed, T, steps, convergence, J_T, J_T/T, fitted and predicted rate."""
        params = self.columns[1:self.columns.index("seed")]
        head = ["point", *params, "seed", "T", "steps", "ok", "J_T", "J_T/T", "rate", "predicted"]
        lines = [
            [str(r["point"]), *(_fmt(r[p]) for p in params), str(r["seed"]), f"{r['T']:g}", str(r["steps"]),
             "yes" if r["success"] else f"NO ({_short(r['status'])})", _fmt(r["cost"]), _fmt(r["cost_per_time"]),
             _fmt(r["rate"]), _fmt(r["predicted_rate"])]
            for r in self.rows
        ]
        widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(head)]
        return "\n".join("  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)) for line in [head, *lines])


def _short(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.6g}" if isinstance(value, float) else str(value)


# -- the sweep --------------------------------------------------------------------------------------
def sweep(
    factory: str | Callable[..., Problem],
    horizons: Sequence[float],
    out,
    *,
    params: Mapping[str, Sequence] | None = None,
    steps: int | None = None,
    dt: float | None = None,
    seeds: Sequence[int] = (0,),
    workers: int | None = None,
    scheduler: str | None = None,
    method: str = "rk4",
    solver: str = "ipopt",
    options: dict | None = None,
    epsilon: float = DEFAULT_EPSILON,
    one_sided: bool | None = None,
    floor: float = DEFAULT_FLOOR,
    figures: bool = True,
    progress: bool = True,
    static_starts: int = 1,
    starts: int = 1,
) -> SweepResult:
    """Solve a family of problems on a grid of parameters x horizons x seeds, and compare their turnpikes.

    For every parameter point ``p`` (the product of the lists in ``params``) the static problem is solved
    once, and the problem ``factory(**p)`` on every horizon T from the random controls of every seed; each
    solve's turnpike numbers (:func:`~turnpike.turnpike_report`: distance decay rate, predicted rate,
    ε-tube, ``J_T/T`` and ``J_T - T·J̄``) make one row of the table.

    Arguments:
        factory: a catalogue name (``turnpike list``), or a module-level callable ``f(**params) -> Problem``.
        horizons: the horizons T (> 0, distinct).
        out: the output directory: ``checkpoints/`` (one file per finished solve), ``sweep.csv``,
            ``sweep.json``, and ``point{i}/`` with the figures of point ``i`` (its first seed).
        params: parameter name -> list of values (numbers, words, lists of numbers); default: no parameters.
            A parameter's column is its name, or ``param_<name>`` for a name that is one of the table's own
            columns (the neural-ODE entry's ``cost`` and data ``seed``: ``param_cost``, ``param_seed``).
        steps / dt: exactly one: a fixed number of intervals or a fixed interval length (dividing every T).
        seeds: seeds of the random initial controls, one solve per seed.
        workers: local processes (default: all usable cores); 1 runs in this process.
        scheduler: address of a Dask distributed scheduler (``tcp://host:port``) to run on instead of the
            local processes; needs ``pip install 'turnpike[dask]'``.
        method, solver, options: for :func:`~turnpike.solve`.
        epsilon, one_sided, floor: for :func:`~turnpike.turnpike_report` (``one_sided=None``: the model is chosen
            from each curve, :func:`~turnpike.fit_rate`).
        figures: draw each point's horizon-comparison figures (:func:`~turnpike.plots.plot_study`).
        static_starts: starts of each point's static problem (:func:`~turnpike.solve_static`'s ``starts``).
        starts: each solve is the best of ``starts`` seeded starts from its seed (:func:`~turnpike.multistart`,
            run in the solve's worker; one certified), its table in the solution's ``stats["starts"]``.
        progress: print a progress line on stderr, counting finished solves.

    Checkpoints: each finished solve (converged, not converged, or raised) is written at once and atomically.
    A later call with the same problem, parameters and solve settings skips the solves found there and
    solves the rest; a checkpoint that cannot be trusted is reported (:class:`CheckpointWarning`) and solved
    again. A solve whose worker process died is reported in the table but not checkpointed (see
    :mod:`turnpike.sweeps.executors`). Ctrl-C raises :class:`SweepInterrupted`, losing only the solves in
    flight. With local processes, call this under ``if __name__ == "__main__":`` in a script.

    Returns:
        A :class:`SweepResult`; the table is also written to ``out/sweep.csv`` and ``out/sweep.json``.

    Raises:
        InputError: a bad argument, an unknown name or parameter, a parameter value the problem rejects, an
            output directory that cannot be written. Reported before any solve.
        SweepInterrupted: on Ctrl-C.
    """
    end_rerun_script()
    factory = check_factory(factory)
    points = parameter_points(params)
    Ts, grids = horizon_grid(horizons, steps, dt)
    seeds = check_seeds(seeds)
    static_starts = check_positive("static_starts", static_starts, integer=True)
    starts = check_positive("starts", starts, integer=True)
    check_choice("method", method, INTEGRATORS)
    check_choice("solver", solver, SOLVERS)
    check_positive("epsilon", epsilon)
    check_positive("floor", floor)
    if options is not None and not isinstance(options, Mapping):
        raise InputError(f"options must be a dict of solver options, got {options!r}")
    options = plain("options", dict(options or {}))  # JSON data: part of each solve's checkpoint identity
    workers = local_workers(workers, scheduler)
    problems = [point_problem(factory, p) for p in points]
    out = writable_directory(out)
    with claimed_directory(out, factory_name(factory)):
        directory = writable_directory(out / "checkpoints", "checkpoint directory")
        tasks = [Task(factory, p, i, "static", static_starts=static_starts) for i, p in enumerate(points)]
        tasks += [Task(factory, p, i, "horizon", T, n, s, method, solver, options, starts=starts)
                  for i, p in enumerate(points) for T, n in zip(Ts, grids, strict=True) for s in seeds]
        results, corrupted = _read_checkpoints(tasks, directory)
        reused = [t.label for t in tasks if t.key in results]
        solved = _solve(tasks, results, directory, workers, scheduler, progress)

        settings = {"dt": dt, "steps": steps, "continuation": False, "epsilon": epsilon, "one_sided": one_sided,
                    "floor": floor, "method": method, "solver": solver, "starts": starts}
        rows, point_info, studies = [], [], []
        for i, (p, problem) in enumerate(zip(points, problems, strict=True)):
            point_rows, study = _point_rows(tasks, results, i, problem, Ts, seeds, settings)
            rows += [{"point": i, **{parameter_column(k): v for k, v in p.items()}, **row} for row in point_rows]
            static = results[tasks[i].key]
            studies.append(study)
            point_info.append({"point": i, "params": p, "static_success": getattr(static, "success", False),
                               "static_status": static.status, "static_cost": getattr(static, "cost", None),
                               "figures": []})
        columns = ["point", *map(parameter_column, points[0]), "seed", *COLUMNS]
        columns += [c for c in dict.fromkeys(c for row in rows for c in row) if c not in columns]
        rows = [{c: row.get(c) for c in columns} for row in rows]
        header = {"factory": factory_name(factory), "horizons": Ts, "steps": grids, "seeds": seeds,
                  "settings": {**settings, "options": options}, "points": point_info, "columns": columns}
        files = _write_table(out, header, rows)  # the table first: the figures take longer
        figure_files = []
        if figures:
            for i, study in enumerate(studies):
                paths = study.plot(out / f"point{i}") if study is not None else []
                point_info[i]["figures"] = [str(path.relative_to(out)) for path in paths]
                figure_files += paths
                if progress:
                    progress_bar(i + 1, len(studies), "figures")
            files = _write_table(out, header, rows)
    return SweepResult(factory_name(factory), tuple(columns), tuple(rows), tuple(point_info), tuple(solved),
                       tuple(reused), tuple(corrupted), (*files, *figure_files))


def _read_checkpoints(tasks: list[Task], directory: Path) -> tuple[dict, list[str]]:
    """The results found in ``directory`` by task key, and the untrusted files with the reason (also warned)."""
    results, corrupted = {}, []
    for task in tasks:
        path = directory / task.filename
        if path.exists():
            try:
                results[task.key] = checkpoints.read(path, task)
            except checkpoints.CorruptCheckpoint as exc:
                corrupted.append(f"{path}: {exc}")
                warnings.warn(f"checkpoint {path} is corrupted: {exc}; solving it again", CheckpointWarning,
                              stacklevel=3)
    return results, corrupted


def _solve(tasks: list[Task], results: dict, directory: Path, workers, scheduler, progress: bool) -> list[str]:
    """Run the tasks that have no result yet, checkpointing and adding each result as it arrives.

    Returns the labels of the tasks solved. Raises :class:`SweepInterrupted` on Ctrl-C.
    """
    todo = [t for t in tasks if t.key not in results]
    if not todo:
        if progress:
            progress_bar(len(tasks), len(tasks), "solves, all read from checkpoints")
        return []
    solved, started = [], time.perf_counter()
    try:
        with _terminate_as_interrupt(), executor(workers, scheduler) as run, closing(run(todo)) as finished:
            if progress:
                progress_bar(len(results), len(tasks), f"solves ({len(results)} read from checkpoints)")
            for task, result in finished:
                if not isinstance(result, WorkerLost):
                    checkpoints.write(directory / task.filename, task, result)
                results[task.key] = result
                solved.append(task.label)
                if progress:
                    left = (time.perf_counter() - started) / len(solved) * (len(todo) - len(solved))
                    eta = f", about {left:.0f} s left" if len(solved) < len(todo) else ""
                    progress_bar(len(results), len(tasks), f"{task.label}: {_word(result)}{eta}")
    except KeyboardInterrupt as exc:
        checkpointed = sum(not isinstance(r, WorkerLost) for r in results.values())
        raise SweepInterrupted(checkpointed, len(tasks), directory, getattr(exc, "signal", signal.SIGINT)) from exc
    return solved


@contextmanager
def _terminate_as_interrupt():
    """Within (main thread only): SIGTERM stops the sweep as Ctrl-C does (workers terminated, finished solves
    kept in their checkpoints, :class:`SweepInterrupted`), instead of ending this process alone."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, _frame):
        raise Interrupted("sweep interrupted by SIGTERM", signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _word(result) -> str:
    if isinstance(result, (Solution, StaticSolution)):
        return "converged" if result.success else f"NOT converged ({result.status})"
    return result.status


def _point_rows(tasks, results, point, problem, Ts, seeds, settings) -> tuple[list[dict], HorizonStudy | None]:
    """The rows of one parameter point, by T then seed, and the horizon comparison of its first seed.

    Each seed's converged-or-not solutions form a :class:`~turnpike.HorizonStudy` against the point's
    static solution; its :meth:`~turnpike.HorizonStudy.rows` are the rows. A solve that raised (or whose
    worker died), or every solve of a point whose static problem raised, gets a row with what is known.
    """
    static = results[tasks[point].key]
    found = {(t.T, t.seed): (t, results[t.key]) for t in tasks if t.point == point and t.kind == "horizon"}
    by_key, first = {}, None
    for seed in seeds:
        sols = [found[T, seed][1] for T in Ts if isinstance(found[T, seed][1], Solution)]
        study = None
        if isinstance(static, StaticSolution) and sols:
            predicted = predicted_rate(problem, static)
            reports = [turnpike_report(s, static, predicted=predicted, epsilon=settings["epsilon"],
                                       one_sided=settings["one_sided"], floor=settings["floor"]) for s in sols]
            names = {"state_names": problem.state_names, "control_names": problem.control_names}
            params = ", ".join(f"{k}={v}" for k, v in tasks[point].params.items())
            title = f"{problem.name}, point {point}{f' ({params})' if params else ''}, seed {seed}"
            study = HorizonStudy(problem.name, static, tuple(sols), tuple(reports),
                                 {**settings, "seed": seed, "title": title, **names})
            by_key.update({(s.T, seed): row for s, row in zip(sols, study.rows(), strict=True)})
        if seed == seeds[0]:
            first = study
    rows = []
    for T in Ts:
        for seed in seeds:
            row = by_key.get((T, seed)) or _bare_row(*found[T, seed], static)
            rows.append({"seed": seed, **row, "static_success": getattr(static, "success", False)})
    return rows, first


def _bare_row(task: Task, result, static) -> dict:
    """What is known of a solve without a turnpike report: it raised, its worker died, or the static problem raised."""
    row = {"T": task.T, "steps": task.steps, "success": False, "status": result.status,
           "static_cost": static.cost if isinstance(static, StaticSolution) else None}
    if isinstance(result, Solution):
        row.update(success=result.success, cost=result.cost,
                   total_seconds=result.stats.get("total_seconds"), iterations=result.stats.get("iterations"))
    return row


def _write_table(out: Path, header: dict, rows: list[dict]) -> list[Path]:
    """``sweep.json`` (the header and the rows) and ``sweep.csv`` (the rows), each written atomically."""
    text = json.dumps(jsonable({**header, "rows": rows}), indent=1, allow_nan=False)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header["columns"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return [atomic_write(out / "sweep.json", lambda fh: fh.write(text.encode())),
            atomic_write(out / "sweep.csv", lambda fh: fh.write(buffer.getvalue().encode()))]
