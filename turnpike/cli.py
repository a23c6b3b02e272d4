"""The ``turnpike`` command.

Installed packages add commands through the entry-point group ``turnpike.commands`` (:data:`COMMANDS`), as they
add problems through ``turnpike.problems``: the project's ``problems`` package adds ``turnpike train``.

Exit codes: 0 success, 1 a solve did not converge or failed, 2 a usage error (bad argument,
unknown name, unwritable output), 3 converged with a warning (a step that does not resolve the ODE, see
:func:`turnpike.checks.step_check`), 130 interrupted (Ctrl-C), 143 a solve stopped by SIGTERM. User errors
print one line, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from importlib.metadata import entry_points
from pathlib import Path

from . import catalogue
from .analysis import DEFAULT_EPSILON, StudyInterrupted, compare_horizons
from .errors import InputError, SolverError
from .multistart import multistart
from .plots import plot_solution, plot_starts
from .report import study_report, sweep_report
from .solve import grid_steps, solve, solve_static
from .solvers import SOLVERS
from .stopping import Interrupted
from .sweeps import SweepInterrupted, sweep
from .sweeps.arguments import writable_directory
from .transcription import INTEGRATORS

COMMANDS = "turnpike.commands"
"""Entry-point group of further commands: ``name = "module:register"``, where ``register(subparsers)`` adds the
command's parser with a default ``run``: a function of the parsed arguments that returns the exit code (and
raises :class:`~turnpike.errors.InputError` for a usage error, like the commands here)."""


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (``turnpike sweep: error: ...``) and exit code 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="turnpike", description="Optimal control and the turnpike property.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    sub.add_parser("list", help="list the problems of the catalogue")

    s = sub.add_parser("solve", help="solve a catalogue problem on one horizon")
    s.add_argument("--T", type=float, required=True, help="horizon T > 0")
    _common(s, "out")
    _starts(s)

    c = sub.add_parser("compare", help="solve a catalogue problem for several horizons and compare their turnpikes")
    c.add_argument("--horizons", type=float, nargs="+", required=True, metavar="T", help="horizons T > 0")
    c.add_argument("--epsilon", type=float, default=DEFAULT_EPSILON, help="radius of the ε-tube")
    _rate_model(c)
    c.add_argument("--no-continuation", action="store_true", help="solve every horizon from a cold start")
    c.add_argument("--report", action="store_true", help="also write OUT/report.html (table, figures, settings)")
    _common(c, "out/compare")
    _starts(c)

    w = sub.add_parser("sweep", help="a horizon comparison for every point of a parameter grid and every seed, "
                                     "in parallel, checkpointed")
    w.add_argument("--param", action="append", default=[], metavar="KEY=V1,V2,...",
                   help="a parameter of the problem and its values (numbers, words, or [lists]); repeat for a grid")
    w.add_argument("--horizons", type=float, nargs="+", required=True, metavar="T", help="horizons T > 0")
    w.add_argument("--seeds", type=int, nargs="+", default=[0], metavar="SEED",
                   help="seeds of the random initial controls, one solve each (default 0)")
    w.add_argument("--starts", type=int, default=1, metavar="K",
                   help="each solve the best of K starts from its seed (in its worker; default 1)")
    where = w.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, help="local processes (default: all cores; 1: in this process)")
    where.add_argument("--scheduler", metavar="ADDRESS", help="run on a Dask cluster instead (tcp://host:port)")
    w.add_argument("--epsilon", type=float, default=DEFAULT_EPSILON, help="radius of the ε-tube")
    _rate_model(w)
    w.add_argument("--no-figures", action="store_true", help="write the table only")
    w.add_argument("--report", action="store_true", help="also write OUT/report.html (table, figures, settings)")
    _common(w, "out/sweep", seed=False)
    for command in sorted(entry_points(group=COMMANDS), key=lambda ep: ep.name):
        command.load()(sub)
    return parser


def _common(p: argparse.ArgumentParser, out: str, seed: bool = True) -> None:
    p.add_argument("name", help="catalogue name (see `turnpike list`)")
    grid = p.add_mutually_exclusive_group(required=True)
    grid.add_argument("--steps", type=int, help="number of control intervals")
    grid.add_argument("--dt", type=float, help="interval length (must divide T)")
    p.add_argument("--method", choices=INTEGRATORS, default="rk4", help="integrator per interval")
    p.add_argument("--solver", choices=SOLVERS, default="ipopt", help="NLP solver")
    p.add_argument("--out", type=Path, default=Path(out), help=f"output directory, created (default {out})")
    p.add_argument("--static-starts", type=int, default=1, metavar="K",
                   help="solve the static problem from K starts and keep the best (default 1)")
    if seed:
        p.add_argument("--seed", type=int, default=0, help="seed of the random initial controls")
        p.add_argument("--verbose", action="store_true", help="print the solver's iterations")


def _rate_model(p: argparse.ArgumentParser) -> None:
    """``--one-sided`` / ``--two-sided``: the rate fit's model; neither: chosen from each curve (fit_rate)."""
    model = p.add_mutually_exclusive_group()
    model.add_argument("--one-sided", dest="one_sided", action="store_const", const=True, default=None,
                       help="fit K e^{-μt} (no boundary layer at T); default: the model is chosen from the data")
    model.add_argument("--two-sided", dest="one_sided", action="store_const", const=False,
                       help="fit K (e^{-μt} + e^{-μ(T-t)}) (a boundary layer at T)")


def _starts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--starts", type=int, default=1, metavar="K",
                   help="the best of K seeded starts (turnpike.multistart; writes starts.png; default 1)")
    p.add_argument("--certify", type=int, default=1, metavar="M", help="certify the M best starts (default 1)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, help="local processes for the starts (default: all cores)")
    where.add_argument("--scheduler", metavar="ADDRESS", help="run the starts on a Dask cluster (tcp://host:port)")


def _many(args) -> dict:
    """The multistart arguments of solve and compare (none for one start)."""
    if args.starts == 1 and args.certify == 1 and args.workers is None and args.scheduler is None:
        return {}
    return {"starts": args.starts, "certify": args.certify, "workers": args.workers, "scheduler": args.scheduler}


def _out_dir(path: Path) -> Path:
    return writable_directory(path, "--out")


def _list() -> int:
    names = catalogue.names()
    if not names:
        print("the catalogue is empty: install the project (pip install -e .) to register its problems")
        return 1
    width = max(map(len, names))
    for name in names:
        print(f"{name:<{width}}  {catalogue.describe(name)}")
    return 0


def _solve(args) -> int:
    problem = catalogue.load(args.name)
    grid_steps(args.T, args.steps, args.dt)  # bad grids are reported before any work
    out = _out_dir(args.out)
    print(f"solving {problem!r} on [0, {args.T:g}] ({args.method}, {args.solver}) ...", flush=True)
    if _many(args):
        sol = multistart(problem, args.T, args.steps, dt=args.dt, method=args.method, solver=args.solver,
                         seed=args.seed, progress=sys.stderr.isatty(), **_many(args))
    else:
        sol = solve(problem, args.T, args.steps, dt=args.dt, method=args.method, solver=args.solver,
                    seed=args.seed, verbose=args.verbose, progress=sys.stderr.isatty() and not args.verbose)
    static = solve_static(problem, starts=args.static_starts)
    stem = f"{args.name}_T{args.T:g}"
    npz = sol.save(out / f"{stem}.npz")
    static.save(out / f"{stem}_static.npz")
    figures = [out / f"{stem}.png"]
    plot_solution(sol, figures[0], static=static if static.success else None,
                  state_names=problem.state_names, control_names=problem.control_names)
    if "starts" in sol.stats:
        figures.append(out / "starts.png")
        plot_starts(sol, figures[-1])
        print(_starts_line(sol))
    stats = sol.stats
    presolve, its = stats.get("presolve", {}).get("seconds", 0.0), stats["iterations"]
    print(f"{sol.message}; {stats['total_seconds']:.2f} s (build {stats['build_seconds']:.2f} s, presolve "
          f"{presolve:.2f} s, {its} NLP iteration{'' if its == 1 else 's'} in {stats['solve_seconds']:.2f} s)")
    print(f"static problem: {static.message}")
    print(f"wrote {npz}, " + ", ".join(str(f) for f in figures))
    for warning in sol.warnings:
        print(f"turnpike: warning: {warning}", file=sys.stderr)
    return 1 if not sol.success else 3 if sol.warnings else 0


def _compare(args) -> int:
    problem = catalogue.load(args.name)
    for T in args.horizons:  # bad grids are reported before any work
        grid_steps(T, args.steps, args.dt)
    out = _out_dir(args.out)
    try:
        study = compare_horizons(
            problem, args.horizons, dt=args.dt, steps=args.steps, continuation=not args.no_continuation,
            epsilon=args.epsilon, one_sided=args.one_sided, method=args.method, solver=args.solver, seed=args.seed,
            verbose=args.verbose, static_starts=args.static_starts, **_many(args),
        )
    except StudyInterrupted as exc:  # keep the finished horizons
        if exc.study is not None:
            exc.study.save(out)
            print(exc.study.table())
        print(f"turnpike: {exc}; " + (f"the finished ones are in {out}" if exc.study else "nothing to save"),
              file=sys.stderr)
        return 128 + exc.signal
    study.save(out)
    figures = study.plot(out)
    if any("starts" in s.stats for s in study.solutions):
        plot_starts(study.solutions, out / "starts.png")
        figures.append(out / "starts.png")
        for sol in study.solutions:
            print(f"T = {sol.T:g}: {_starts_line(sol)}")
    print(study.table())
    report = [study_report(study, figures, out / "report.html").name] if args.report else []
    print(f"wrote {out / 'summary.json'}, {out / 'summary.csv'}, {len(study.solutions)} solutions, "
          + ", ".join([p.name for p in figures] + report))
    for sol in study.solutions:
        for warning in sol.warnings:
            print(f"turnpike: warning: T = {sol.T:g}: {warning}", file=sys.stderr)
    for warning in study.warnings:
        print(f"turnpike: warning: {warning}", file=sys.stderr)
    if not study.success:
        print("turnpike: some solves did not converge (marked NO above)", file=sys.stderr)
    flagged = study.warnings or any(s.warnings for s in study.solutions)
    return 1 if not study.success else 3 if flagged else 0


def _value(key: str, text: str):
    """One value of ``--param KEY=...``: a finite number, a [list] of them (JSON), or a word."""
    try:
        number = float(text)
    except ValueError:
        number = None
    if number is not None:
        if not math.isfinite(number):
            raise InputError(f"--param {key}: {text!r} is not a finite number")
        return int(text) if text.strip().lstrip("+-").isdigit() else number
    if text.startswith("["):
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise InputError(f"--param {key}: {text!r} is not a list of finite numbers ({exc})") from exc
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in _flat(value)):
            raise InputError(f"--param {key}: {text!r} must hold finite numbers only")
        return value
    if not text:
        raise InputError(f"--param {key}: empty value")
    return text


def _flat(value):
    if isinstance(value, list):
        for v in value:
            yield from _flat(v)
    else:
        yield value


def _split_values(text: str) -> list[str]:
    """``1,2,[0,1],word`` -> ``['1', '2', '[0,1]', 'word']``: commas inside brackets do not split."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return [*parts, text[start:]]


def _params(specs: list[str]) -> dict[str, list]:
    """``--param KEY=V1,V2`` options as ``{KEY: [V1, V2]}``."""
    params = {}
    for spec in specs:
        key, eq, values = spec.partition("=")
        key = key.strip()
        if not eq or not key.isidentifier():
            raise InputError(f"--param {spec!r} must read KEY=V1,V2,... with KEY a parameter name")
        if key in params:
            raise InputError(f"--param {key} is given twice; list all its values in one --param {key}=V1,V2,...")
        params[key] = [_value(key, v.strip()) for v in _split_values(values)]
    return params


def _sweep(args) -> int:
    result = sweep(
        args.name, args.horizons, args.out, params=_params(args.param), steps=args.steps, dt=args.dt,
        seeds=args.seeds, starts=args.starts, workers=args.workers, scheduler=args.scheduler, method=args.method,
        solver=args.solver,
        epsilon=args.epsilon, one_sided=args.one_sided, figures=not args.no_figures, static_starts=args.static_starts,
    )
    print(result.table())
    report = [str(sweep_report(result, args.out, args.out / "report.html"))] if args.report else []
    print(f"{len(result.solved)} solved now, {len(result.reused)} read from checkpoints; wrote "
          + ", ".join([str(p) for p in result.files[:2]] + report)
          + (f" and {len(result.files) - 2} figures" if len(result.files) > 2 else ""))
    if not result.success:
        print("turnpike: some solves did not converge or failed (marked NO above)", file=sys.stderr)
    return 0 if result.success else 1


def _starts_line(sol) -> str:
    """One line on a multistart: how many starts were certified, the spread of their costs, the one kept."""
    summary = sol.stats["multistart"]
    costs = [r["cost"] for r in sol.stats["starts"] if r["certified"]]
    spread = f", certified costs {min(costs):.6g} to {max(costs):.6g}" if len(costs) > 1 else ""
    kept = summary.get("kept", f"start {summary['best_seed']}")
    return (f"{summary['certified']} of {summary['starts']} starts certified{spread}; kept {kept} "
            f"({summary['where']}, {summary['seconds']:.1f} s)")


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    print(f"turnpike: warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    commands = {"list": lambda _: _list(), "solve": _solve, "compare": _compare, "sweep": _sweep}
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warning
            return commands.get(args.command, getattr(args, "run", None))(args)
    except InputError as exc:
        print(f"turnpike: error: {exc}", file=sys.stderr)
        return 2
    except SolverError as exc:
        print(f"turnpike: solver failed: {exc}", file=sys.stderr)
        return 1
    except SweepInterrupted as exc:
        print(f"turnpike: {exc}", file=sys.stderr)
        return 128 + exc.signal
    except Interrupted as exc:
        print(f"turnpike: {exc.args[0].split(':')[0]}", file=sys.stderr)
        return 128 + exc.signal
    except KeyboardInterrupt:
        print("turnpike: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
