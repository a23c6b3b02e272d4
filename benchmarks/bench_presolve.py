"""The presolve's L-BFGS memory: time to a Newton-converged point and the cost reached, over seeds.

Run:  python benchmarks/bench_presolve.py            (one thread: OMP_NUM_THREADS=TURNPIKE_THREADS=1)

``tp.solve`` starts an ensemble from seeded random controls (0.1 N(0, 1)), runs L-BFGS-B on the reduced
objective (:func:`turnpike.presolve.reduced_space_descent`), then Newton
(:func:`turnpike.presolve.newton_refinement`, to ‖∇J‖∞ <= 1e-10) and IPOPT, which then certifies at its
first KKT check. This script runs the two presolve phases for ``memory`` (scipy's ``maxcor``) 10, 20, 40
on the scale benchmark's problem (two circles, inner tanh field, cost (B), RK4, T = 5, 100 steps) with
N = 40 (seeds 0-9) and N = 200 (seeds 0-4), and prints per memory the median seconds, the median
cost, how many seeds Newton converged from, and on how many seeds it was faster and reached a lower
cost than memory 10. The problem is non-convex: each run may end at a different local optimum, so
the costs are part of the result, and a few seeds are not a law.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TURNPIKE_THREADS", "1")

import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from scale_jobs import two_circles  # noqa: E402

from turnpike.presolve import newton_refinement, reduced_space_descent  # noqa: E402
from turnpike.reduced import ReducedSpace  # noqa: E402

T, STEPS, SCALE = 5.0, 100, 0.1
MEMORIES = (10, 20, 40)
WORKLOADS = [(40, range(10)), (200, range(5))]  # (N, seeds)


def run(rs: ReducedSpace, seed: int, memory: int) -> tuple[float, float, bool]:
    """Seconds, final cost and whether Newton converged, from the seeded guess of ``tp.solve``."""
    u0 = SCALE * np.random.default_rng(seed).standard_normal((STEPS, rs.problem.nu))
    start = time.perf_counter()
    pre = reduced_space_descent(rs, u0, T, memory=memory)
    newton = newton_refinement(rs, pre.u, T)
    return time.perf_counter() - start, newton.cost, newton.converged


def main() -> None:
    print(f"{'N':>4} {'memory':>6} {'seeds':>5} {'median s':>9} {'median cost':>12} {'converged':>9} "
          f"{'faster than 10':>15} {'lower cost than 10':>19}")
    for N, seeds in WORKLOADS:
        rs = ReducedSpace(two_circles(N), STEPS, "rk4")
        rs.ensemble_cost(np.zeros((STEPS, rs.problem.nu)), rs.parameters(T))  # load the compiled code
        results = {m: [run(rs, seed, m) for seed in seeds] for m in MEMORIES}
        base = results[MEMORIES[0]]
        for m, rows in results.items():
            seconds, costs, ok = (np.array(column) for column in zip(*rows, strict=True))
            faster = sum(r[0] < b[0] for r, b in zip(rows, base, strict=True))
            lower = sum(r[1] < b[1] - 1e-9 for r, b in zip(rows, base, strict=True))
            print(f"{N:>4} {m:>6} {len(rows):>5} {np.median(seconds):>9.2f} {np.median(costs):>12.6f} "
                  f"{int(ok.sum()):>9} {faster:>15} {lower:>19}", flush=True)


if __name__ == "__main__":
    main()
