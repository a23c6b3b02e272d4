"""The presolve's L-BFGS settings: time to a Newton-converged point and the cost reached, over seeds.

Run:  python benchmarks/bench_presolve.py            (one thread: OMP_NUM_THREADS=TURNPIKE_THREADS=1)

``tp.solve`` starts an ensemble from seeded random controls (0.1 N(0, 1)), runs L-BFGS-B on the reduced
objective (:func:`turnpike.presolve.reduced_space_descent`), then Newton
(:func:`turnpike.presolve.newton_refinement`, to ‖∇J‖∞ <= 1e-10) and IPOPT, which then certifies at its
first KKT check. This script runs the two presolve phases with L-BFGS-B's ``memory`` (scipy's ``maxcor``)
20 (the default), 10, 40 and its iteration cap ``max_iter`` 3000 (the default), 1000, 10000 on the scale
benchmark's problem (two circles, inner tanh field, cost (B), RK4, T = 5, 100 steps) with N = 40 (seeds
0-9), N = 200 (seeds 0-4) and N = 400 (seeds 0-2), and prints per setting the median seconds, the
median cost, how many seeds Newton converged from, and on how many seeds it was faster and reached a
lower cost than the first setting (the defaults). The problem is non-convex: each run may end at a
different local optimum, so the costs are part of the result, and a few seeds are not a law.
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
SETTINGS = [(20, 3000), (10, 3000), (40, 3000), (20, 1000), (20, 10000)]  # (memory, max_iter); first the defaults
WORKLOADS = [(40, range(10)), (200, range(5)), (400, range(3))]  # (N, seeds)


def run(rs: ReducedSpace, seed: int, memory: int, max_iter: int) -> tuple[float, float, bool]:
    """Seconds, final cost and whether Newton converged, from the seeded guess of ``tp.solve``."""
    u0 = SCALE * np.random.default_rng(seed).standard_normal((STEPS, rs.problem.nu))
    start = time.perf_counter()
    pre = reduced_space_descent(rs, u0, T, memory=memory, max_iter=max_iter)
    newton = newton_refinement(rs, pre.u, T)
    return time.perf_counter() - start, newton.cost, newton.converged


def main() -> None:
    print(f"{'N':>4} {'memory':>6} {'max_iter':>8} {'seeds':>5} {'median s':>9} {'median cost':>12} "
          f"{'converged':>9} {'faster than first':>17} {'lower cost than first':>21}")
    for N, seeds in WORKLOADS:
        rs = ReducedSpace(two_circles(N), STEPS, "rk4")
        rs.ensemble_cost(np.zeros((STEPS, rs.problem.nu)), rs.parameters(T))  # load the compiled code
        results = {setting: [run(rs, seed, *setting) for seed in seeds] for setting in SETTINGS}
        base = results[SETTINGS[0]]
        for (memory, max_iter), rows in results.items():
            seconds, costs, ok = (np.array(column) for column in zip(*rows, strict=True))
            faster = sum(r[0] < b[0] for r, b in zip(rows, base, strict=True))
            lower = sum(r[1] < b[1] - 1e-9 for r, b in zip(rows, base, strict=True))
            print(f"{N:>4} {memory:>6} {max_iter:>8} {len(rows):>5} {np.median(seconds):>9.2f} "
                  f"{np.median(costs):>12.6f} {int(ok.sum()):>9} {faster:>17} {lower:>21}", flush=True)


if __name__ == "__main__":
    main()
