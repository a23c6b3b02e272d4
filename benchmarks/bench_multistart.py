"""Many starts against one (issue #22): the best certified optimum of k starts on 2 processes, and PyTorch's L-BFGS.

Run::

    python benchmarks/bench_multistart.py                  # both workloads (the large one takes minutes)
    python benchmarks/bench_multistart.py --only circles   # the two-circles workload and its PyTorch baseline

Workloads (two circles ``concentric_spheres(N, 2, radii=(1, 2), seed=0)``, inner tanh field, cost (B) with
λ = 1e-2, α = 1, squared loss, RK4, random starts ``0.1 N(0, 1)`` from seeds 0, 1, ...):

* ``circles``: N = 40, 100 steps, T = 10; 8 starts, the best one certified;
* ``large``: the ``large`` workload of ``bench_scale.py``, N = 1000, 200 steps, T = 5; 4 starts.

What is measured, in this process, on a fresh problem object each time (so every NLP build is counted; the
compiled C of the stages is in the disk cache for all of them, built by a first warm-up solve):

* ``one start``: ``turnpike.solve(problem, T, steps, seed=0)``, wall time (the whole machine: the compiled
  loops use every core);
* ``best of k``: ``turnpike.multistart(problem, T, steps, starts=k, workers=2)``, wall time (the pool's start,
  the builds in each worker, k first-order phases, the certification); the ratio to one start; the spread of
  the first-order and certified costs;
* ``torch L-BFGS`` (circles): ``torch.optim.LBFGS`` (strong Wolfe, full batch, float64, one thread) on the same
  RK4 network and cost from the same k random starts, until it stops moving or 60 s (``baseline_torch.py``);
  the best cost of the k runs against the best certified cost.

Prints a table and writes ``benchmarks/results/multistart.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


import turnpike as tp  # noqa: E402
from problems.datasets import concentric_spheres  # noqa: E402
from problems.neural_ode import NeuralODEClassification  # noqa: E402
from turnpike.files import write_json  # noqa: E402

WORKLOADS = {"circles": (40, 100, 10.0, 8), "large": (1000, 200, 5.0, 4)}  # name: (N, steps, T, starts)


def problem(N: int) -> NeuralODEClassification:
    points, labels = concentric_spheres(N, 2, radii=(1.0, 2.0), seed=0)
    return NeuralODEClassification(points, labels, field="inner", cost="turnpike", weight=1e-2, alpha=1.0)


def torch_lbfgs(N: int, steps: int, T: float, starts: int) -> list[dict]:
    import torch
    from baseline_torch import TorchNeuralODE, initial_controls, train

    torch.set_num_threads(1)
    prob = problem(N)
    model = TorchNeuralODE(prob, T, steps)
    runs = []
    for seed in range(starts):
        run = train(model, initial_controls(steps, prob.nu, seed), method="lbfgs", target=None, budget_seconds=60.0)
        runs.append({"seed": seed, "cost": run["cost"], "seconds": run["seconds"], "stop": run["stop"]})
        print(f"  torch L-BFGS seed {seed}: cost {run['cost']:.6f} in {run['seconds']:.1f} s ({run['stop']})",
              flush=True)
    return runs


def measure(name: str, baselines: bool) -> dict:
    N, steps, T, starts = WORKLOADS[name]
    print(f"{name}: N = {N}, {steps} steps, T = {T:g}, {starts} starts", flush=True)
    tp.solve(problem(N), T, steps)  # warm-up: the stages' C in the disk cache
    begin = time.perf_counter()
    one = tp.solve(problem(N), T, steps, seed=0)
    one_seconds = time.perf_counter() - begin
    print(f"  one start: {one.message}, {one_seconds:.1f} s", flush=True)
    begin = time.perf_counter()
    best = tp.multistart(problem(N), T, steps, starts=starts, workers=2)
    best_seconds = time.perf_counter() - begin
    rows = best.stats["starts"]
    first = [r["first_order_cost"] for r in rows]
    print(f"  best of {starts} on 2 processes: {best.message}, {best_seconds:.1f} s "
          f"({best_seconds / one_seconds:.2f}x one start); first-order costs {min(first):.6f} to {max(first):.6f}",
          flush=True)
    result = {"N": N, "steps": steps, "T": T, "starts": starts, "one_start": {
        "success": one.success, "cost": one.cost, "seconds": one_seconds},
        "best_of_starts": {"success": best.success, "cost": best.cost, "seconds": best_seconds,
                           "ratio_to_one_start": best_seconds / one_seconds, "starts": rows,
                           "summary": best.stats["multistart"]}}
    if baselines and name == "circles":
        runs = torch_lbfgs(N, steps, T, starts)
        best_torch = min(r["cost"] for r in runs)
        result["torch_lbfgs"] = {"runs": runs, "best_cost": best_torch,
                                 "certified_at_most_torch": bool(best.success and best.cost <= best_torch)}
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(WORKLOADS), help=f"comma-separated out of {','.join(WORKLOADS)}")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch baseline")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",")]
    unknown = sorted(set(names) - set(WORKLOADS))
    if unknown:
        parser.error(f"unknown workload(s) {unknown}; known: {sorted(WORKLOADS)}")
    out = Path(__file__).resolve().parent / "results" / "multistart.json"
    results = {}
    for name in names:
        results[name] = measure(name, not args.no_torch)
        write_json(out, results)
    print(f"\n{'workload':<9} {'one start s':>11} {'best of k s':>11} {'ratio':>6} {'one cost':>10} {'best cost':>10}"
          f" {'torch best':>10}")
    for name, r in results.items():
        torch_best = r.get("torch_lbfgs", {}).get("best_cost")
        print(f"{name:<9} {r['one_start']['seconds']:>11.1f} {r['best_of_starts']['seconds']:>11.1f} "
              f"{r['best_of_starts']['ratio_to_one_start']:>5.2f}x {r['one_start']['cost']:>10.6f} "
              f"{r['best_of_starts']['cost']:>10.6f} " + (f"{torch_best:>10.6f}" if torch_best else f"{'—':>10}"))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
