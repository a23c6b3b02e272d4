"""The ``turnpike`` command.

Exit codes: 0 success, 1 a solve did not converge or failed, 2 a usage error (bad argument,
unknown name, unwritable output). User errors print one line, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import catalogue
from .analysis import DEFAULT_EPSILON, compare_horizons
from .errors import InputError, SolverError
from .plots import plot_solution
from .solve import grid_steps, solve, solve_static
from .solvers import SOLVERS
from .transcription import INTEGRATORS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="turnpike", description="Optimal control and the turnpike property.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("list", help="list the problems of the catalogue")

    s = sub.add_parser("solve", help="solve a catalogue problem on one horizon")
    s.add_argument("--T", type=float, required=True, help="horizon T > 0")
    _common(s, "out")

    c = sub.add_parser("compare", help="solve a catalogue problem for several horizons and compare their turnpikes")
    c.add_argument("--horizons", type=float, nargs="+", required=True, metavar="T", help="horizons T > 0")
    c.add_argument("--epsilon", type=float, default=DEFAULT_EPSILON, help="radius of the ε-tube")
    c.add_argument("--one-sided", action="store_true", help="fit K e^{-μt} (no boundary layer at T)")
    c.add_argument("--no-continuation", action="store_true", help="solve every horizon from a cold start")
    _common(c, "out/compare")
    return parser


def _common(p: argparse.ArgumentParser, out: str) -> None:
    p.add_argument("name", help="catalogue name (see `turnpike list`)")
    grid = p.add_mutually_exclusive_group(required=True)
    grid.add_argument("--steps", type=int, help="number of control intervals")
    grid.add_argument("--dt", type=float, help="interval length (must divide T)")
    p.add_argument("--method", choices=INTEGRATORS, default="rk4", help="integrator per interval")
    p.add_argument("--solver", choices=SOLVERS, default="ipopt", help="NLP solver")
    p.add_argument("--seed", type=int, default=0, help="seed of the random initial controls")
    p.add_argument("--out", type=Path, default=Path(out), help=f"output directory, created (default {out})")
    p.add_argument("--verbose", action="store_true", help="print the solver's iterations")


def _out_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".turnpike-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise InputError(f"--out {str(path)!r} is not a writable directory: {exc.strerror}") from exc
    return path


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
    sol = solve(problem, args.T, args.steps, dt=args.dt, method=args.method, solver=args.solver,
                seed=args.seed, verbose=args.verbose)
    static = solve_static(problem)
    stem = f"{args.name}_T{args.T:g}"
    npz = sol.save(out / f"{stem}.npz")
    static.save(out / f"{stem}_static.npz")
    png = out / f"{stem}.png"
    plot_solution(sol, png, static=static if static.success else None,
                  state_names=problem.state_names, control_names=problem.control_names)
    print(f"{sol.message}; {sol.stats['iterations']} iterations, "
          f"build {sol.stats['build_seconds']:.2f} s, solve {sol.stats['solve_seconds']:.2f} s")
    print(f"static problem: {static.message}")
    print(f"wrote {npz}, {png}")
    return 0 if sol.success else 1


def _compare(args) -> int:
    problem = catalogue.load(args.name)
    for T in args.horizons:  # bad grids are reported before any work
        grid_steps(T, args.steps, args.dt)
    out = _out_dir(args.out)
    study = compare_horizons(
        problem, args.horizons, dt=args.dt, steps=args.steps, continuation=not args.no_continuation,
        epsilon=args.epsilon, one_sided=args.one_sided, method=args.method, solver=args.solver, seed=args.seed,
        verbose=args.verbose,
    )
    study.save(out)
    figures = study.plot(out)
    print(study.table())
    print(f"wrote {out / 'summary.json'}, {out / 'summary.csv'}, {len(study.solutions)} solutions, "
          + ", ".join(p.name for p in figures))
    if not study.success:
        print("turnpike: some solves did not converge (marked NO above)", file=sys.stderr)
    return 0 if study.success else 1


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "list":
            return _list()
        if args.command == "compare":
            return _compare(args)
        return _solve(args)
    except InputError as exc:
        print(f"turnpike: error: {exc}", file=sys.stderr)
        return 2
    except SolverError as exc:
        print(f"turnpike: solver failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
