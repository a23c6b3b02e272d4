"""Multiple shooting against the reduced formulation, and what ``formulation="auto"`` picks.

Run:  python benchmarks/bench_formulations.py            (one core: OMP_NUM_THREADS=1 is set here)

``tp.solve`` takes the reduced formulation for an ensemble when N >= n_v (samples against control
variables per stage): per Newton step the reduced NLP factorises a dense (steps·n_v) Hessian and
multiple shooting a KKT system that fills in a block per sample, in the ratio about N / n_v (see
``turnpike.solve._formulation``). This script times both on the two sides of that rule:

* few samples, many weights: N = 8 points on two spheres in R^7, outer field (n_v = 56), cost (B),
  λ = 0.02, α = 1, RK4 with dt = 0.1 at T = 5 and 10 (the instance of examples/neural_ode_turnpike.py);
* many samples, few weights: two circles, N = 40 in R^2, inner tanh field (n_v = 10), cost (B), T = 5,
  100 steps.

Every solve starts from the seeded random guess, IPOPT tol 1e-10 for the first and 1e-8 (default) for
the second; the CPU seconds of ``tp.solve`` are printed with the iterations and the cost reached.
The problems are non-convex: the two formulations may stop at different local optima (on the two
circles they did, 0.8676 and 0.8701, on commit 5e48dae), so compare the costs as well as the times.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import time  # noqa: E402

import turnpike as tp  # noqa: E402
from problems.datasets import concentric_spheres  # noqa: E402
from problems.neural_ode import NeuralODEClassification  # noqa: E402
from turnpike.solve import _formulation  # noqa: E402  (the rule behind formulation="auto")

FORMULATIONS = ("multiple-shooting", "reduced")


def cases():
    points, labels = concentric_spheres(8, 7, seed=0)
    outer = NeuralODEClassification(points, labels, field="outer", cost="turnpike", weight=0.02, alpha=1.0)
    for T in (5.0, 10.0):
        yield "outer, N=8, n_v=56", outer, T, {"dt": 0.1, "options": {"ipopt.tol": 1e-10}}
    points, labels = concentric_spheres(40, 2, radii=(1.0, 2.0), seed=0)
    inner = NeuralODEClassification(points, labels, field="inner", cost="turnpike", weight=1e-2, alpha=1.0)
    yield "inner, N=40, n_v=10", inner, 5.0, {"steps": 100}


def main() -> None:
    print(f"{'problem':<22} {'T':>4} {'steps':>5} {'formulation':>18} {'ok':>3} {'cpu s':>7} {'iter':>5} "
          f"{'cost':>12}  auto picks")
    for name, prob, T, grid in cases():
        for formulation in FORMULATIONS:
            start = time.process_time()
            sol = tp.solve(prob, T, formulation=formulation, **grid)
            seconds = time.process_time() - start
            auto = _formulation(prob, "auto", "ipopt")
            print(f"{name:<22} {T:>4g} {sol.steps:>5} {formulation:>18} {'yes' if sol.success else 'no':>3} "
                  f"{seconds:>7.2f} {sol.stats['iterations']:>5} {sol.cost:>12.8f}  {auto}", flush=True)


if __name__ == "__main__":
    main()
