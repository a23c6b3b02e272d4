"""The multiple-shooting build's peak memory against its estimate (turnpike.transcription.build_bytes).

Run::

    python benchmarks/bench_build_memory.py            # nine neural-ODE builds, up to about 4 GB and 40 s each
    python benchmarks/bench_build_memory.py --quick    # the four smallest
    python benchmarks/bench_build_memory.py --case outer 0 40 400   # one build: field, width (0: none), N, steps

Each build runs in a fresh process: the growth of its peak resident set (``VmHWM``) while ``built_solver``
builds ``MultipleShooting`` with IPOPT and the stage-wise derivatives (RK4), against ``build_bytes``. Two
circles, one augmented coordinate; the inner field and the bottleneck of several widths. The printed ratio
measured/estimate is what ``BUILD_BYTES_PER_UNIT`` was calibrated on (0.74 to 1.19 on 2026-12-03).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CASES = [  # (field, hidden, N, steps)
    ("inner", 0, 10, 20), ("inner", 0, 40, 20), ("bottleneck", 8, 10, 20), ("bottleneck", 16, 20, 20),
    ("inner", 0, 160, 20), ("bottleneck", 8, 40, 20), ("bottleneck", 16, 40, 80), ("bottleneck", 16, 80, 20),
    ("bottleneck", 32, 40, 20),
]

JOB = """
import json, sys, time
def peak_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
from problems.datasets import concentric_spheres
from problems.neural_ode import NeuralODEClassification
from turnpike.solvers import built_solver, solver_options
from turnpike.transcription import MultipleShooting, build_bytes
field, hidden, n, steps = sys.argv[1], int(sys.argv[2]) or None, int(sys.argv[3]), int(sys.argv[4])
points, labels = concentric_spheres(n, 2, seed=0)
problem = NeuralODEClassification(points, labels, field=field, hidden=hidden, augment=1)
estimate = build_bytes(problem, "rk4") / 2**20
before, start = peak_mb(), time.perf_counter()
built_solver(problem, ("bench", steps, "rk4"), lambda: MultipleShooting(problem, steps, "rk4"), "ipopt",
             solver_options("ipopt", None))
print(json.dumps({"estimate_mb": estimate, "measured_mb": peak_mb() - before, "seconds": time.perf_counter() - start}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the four smallest builds only")
    parser.add_argument("--case", nargs=4, metavar=("FIELD", "WIDTH", "N", "STEPS"), help="this build only")
    args = parser.parse_args()
    cases = [tuple(args.case)] if args.case else CASES[:4] if args.quick else CASES
    print(f"{'field':>10} {'width':>5} {'N':>4} {'steps':>5} {'estimate MB':>11} {'measured MB':>11} {'ratio':>6} "
          f"{'build s':>7}")
    for field, hidden, n, steps in cases:
        out = subprocess.run([sys.executable, "-c", JOB, field, str(hidden), str(n), str(steps)], capture_output=True,
                             text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{field:>10} {int(hidden) or '-':>5} {n:>4} {steps:>5} {r['estimate_mb']:>11.1f} "
              f"{r['measured_mb']:>11.1f} {r['measured_mb'] / r['estimate_mb']:>6.2f} {r['seconds']:>7.1f}", flush=True)


if __name__ == "__main__":
    main()
