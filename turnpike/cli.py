"""The ``turnpike`` command.

Exit codes: 0 success, 1 a solve did not converge or failed, 2 a usage error (bad argument,
unknown name, unwritable output). User errors print one line, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import catalogue
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
    s.add_argument("name", help="catalogue name (see `turnpike list`)")
    s.add_argument("--T", type=float, required=True, help="horizon T > 0")
    grid = s.add_mutually_exclusive_group(required=True)
    grid.add_argument("--steps", type=int, help="number of control intervals")
    grid.add_argument("--dt", type=float, help="interval length (must divide T)")
    s.add_argument("--method", choices=INTEGRATORS, default="rk4", help="integrator per interval")
    s.add_argument("--solver", choices=SOLVERS, default="ipopt", help="NLP solver")
    s.add_argument("--seed", type=int, default=0, help="seed of the random initial controls")
    s.add_argument("--out", type=Path, default=Path("out"), help="output directory (created)")
    s.add_argument("--verbose", action="store_true", help="print the solver's iterations")
    return parser


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


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "list":
            return _list()
        return _solve(args)
    except InputError as exc:
        print(f"turnpike: error: {exc}", file=sys.stderr)
        return 2
    except SolverError as exc:
        print(f"turnpike: solver failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
