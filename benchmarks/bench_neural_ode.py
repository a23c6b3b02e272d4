"""Solve times of the two-circles neural-ODE problem under the costs (A), (B) and (C) (issue #4, speed report).

Run:  python benchmarks/bench_neural_ode.py [--cap 600] [--cap-large 1800] [--formulation auto] [--seed 0]
      [--sizes 100 1000] [--json FILE]

Workload: the catalogue entry ``neural-ode`` (``NeuralODEClassification.example``): two circles (radii 1, 2) of N
points in d = 2, inner field dx_i/dt = w tanh(A x_i + b) (10 controls per layer), squared loss on x_2, T = 10 with
steps = 100 (RK4), seeded random start (``--seed``, 0 by default), IPOPT tol 1e-8 (the default). Costs, λ = 1e-2:
(A) "erm" E(x(T)) + λ∫|u|²; (B) "turnpike" with α = 1; (C) "sparse" ∫E + λ∫|u|_1 with M = 10 (M = 1 or 2 leaves the
inner field stuck at a local optimum with 50% accuracy; with M = 10 it learns).
Cases: N = 100 for A, B, C; N = 1000 for B, then A and C.

Every case runs in its own process (a fresh build, one core: OMP_NUM_THREADS=1) and is capped twice: IPOPT's
``max_wall_time`` (the run then reports "capped", with the iterations done) and a hard process timeout of the cap
plus 300 s for the build and the presolve. A capped or failed run is reported as such, never as a time to optimum.
"seconds" is build + presolve + solve, wall clock; the commit and the machine's load average are printed with it.
"u = 0": the controls exactly 0 where the solve made its zeros exact (sol.stats["zeros"]), else "-".
"resim" is max |x_k - x(t_k)| against the re-simulated flow (not timed): where the optimal weights are large in
the first layers, RK4 with h = 0.1 is a coarse ODE solver and the optimum is that of the 100-layer network rather
than of the ODE; the numbers time the workload the issue defines (steps = 100).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

T, STEPS, LAMBDA, BOUND = 10.0, 100, 1e-2, 10.0
CASES = [(100, "erm"), (100, "turnpike"), (100, "sparse"), (1000, "turnpike"), (1000, "erm"), (1000, "sparse")]


def run_case(n: int, cost: str, cap: float, formulation: str, seed: int) -> dict:
    """One solve in this process; returns its numbers."""
    import turnpike as tp
    from problems.neural_ode import NeuralODEClassification

    params = {"n_points": n, "cost": cost, "weight": LAMBDA}
    if cost == "sparse":
        params["l1_bound"] = BOUND
    prob = NeuralODEClassification.example(**params)
    start = time.perf_counter()
    sol = tp.solve(prob, T, STEPS, options={"ipopt.max_wall_time": cap}, formulation=formulation, seed=seed)
    seconds = time.perf_counter() - start
    capped = sol.status == "Maximum_WallTime_Exceeded"
    return {"N": n, "cost": cost, "success": sol.success, "status": sol.status, "capped": capped,
            "seconds": round(seconds, 2), "build_seconds": round(sol.stats["build_seconds"], 2),
            "presolve_seconds": round(sol.stats.get("presolve", {}).get("seconds", 0.0), 2),
            "solve_seconds": round(sol.stats["solve_seconds"], 2), "iterations": sol.stats["iterations"],
            "formulation": sol.stats["formulation"], "cost_value": sol.cost,
            "training_error": float(prob.training_error(sol.x[-1])), "accuracy": float(prob.accuracy(sol.x[-1])),
            "resimulation_error": tp.resimulation_error(prob, sol),
            "exact_zeros": sol.stats.get("zeros", {}).get("exact"), "zero_controls": int((sol.u == 0).sum())}


def commit() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "turnpike", "problems",
                                "benchmarks/*.py"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" (with uncommitted changes to the code)" if dirty else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cap", type=float, default=600.0, help="IPOPT wall-time cap for N = 100, seconds")
    parser.add_argument("--cap-large", type=float, default=1800.0, help="the cap for N = 1000, seconds")
    parser.add_argument("--formulation", default="auto", choices=["auto", "multiple-shooting", "reduced"])
    parser.add_argument("--seed", type=int, default=0, help="the seed of the random start (default 0)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000], choices=[100, 1000],
                        help="the N to run (default: both)")
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    parser.add_argument("--case", nargs=2, metavar=("N", "COST"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        n, cost = int(args.case[0]), args.case[1]
        print(json.dumps(run_case(n, cost, args.cap, args.formulation, args.seed)))
        return

    print(f"commit {commit()}, load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores, "
          f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}, formulation {args.formulation}, seed {args.seed}")
    print(f"{'N':>5} {'cost':>9} {'ok':>4} {'seconds':>8} {'build':>6} {'presolve':>8} {'solve':>7} {'iter':>5} "
          f"{'formulation':>18} {'J':>10} {'E(x(T))':>9} {'acc':>5} {'resim':>8} {'u = 0':>6}  status")
    rows = []
    for n, cost in [case for case in CASES if case[0] in args.sizes]:
        cap = args.cap if n <= 100 else args.cap_large
        command = [sys.executable, __file__, "--case", str(n), cost, "--cap", str(cap),
                   "--formulation", args.formulation, "--seed", str(args.seed)]
        try:
            out = subprocess.run(command, capture_output=True, text=True, timeout=cap + 300)
            row = json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else {
                "N": n, "cost": cost, "success": False, "status": f"process failed: {out.stderr.strip()[-200:]}"}
        except subprocess.TimeoutExpired:
            row = {"N": n, "cost": cost, "success": False, "capped": True,
                   "status": f"killed after {cap + 300:.0f} s (cap + build allowance)"}
        rows.append(row)
        if "seconds" in row:
            word = "yes" if row["success"] else ("CAP" if row["capped"] else "no")
            print(f"{n:>5} {cost:>9} {word:>4} {row['seconds']:>8.1f} {row['build_seconds']:>6.1f} "
                  f"{row['presolve_seconds']:>8.1f} {row['solve_seconds']:>7.1f} {row['iterations']:>5} "
                  f"{row['formulation']:>18} {row['cost_value']:>10.4g} {row['training_error']:>9.3g} "
                  f"{row['accuracy']:>5.0%} {row['resimulation_error']:>8.1e} "
                  f"{row['zero_controls'] if row['exact_zeros'] else '-':>6}  {row['status']}", flush=True)
        else:
            print(f"{n:>5} {cost:>9}   no  {row['status']}", flush=True)
    seconds = {(row["N"], row["cost"]): row["seconds"] for row in rows if row.get("success")}
    for n in sorted({n for n, _ in CASES}):
        if (n, "sparse") in seconds and (n, "turnpike") in seconds:
            print(f"N = {n}: cost (C) took {seconds[n, 'sparse'] / seconds[n, 'turnpike']:.2f}x the time of cost (B)")
    if args.json:
        args.json.write_text(json.dumps({"commit": commit(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
