"""The network the seed papers' authors train: a width-50 bottleneck on a 3×3 chessboard, at two depths.

Instance (their trainer's set-up): ``problems.datasets.chessboard`` (3×3 squares in [-0.9, 0.9]², gaps 0.09,
2997 points, seed 0), 80% for training (2397 points, a seeded permutation; the other 600 held out); the field
``W2 σ(W1 x + b1) + b2`` of width 50 (``--activation``, default tanh: with it L-BFGS-B separates the 2397
training points and every held-out one, where the smooth ReLU softplus stays at 97% held out after 300 s,
``benchmarks/bench_width.py``; ``relu``, the authors' choice, is certified only on the smooth piece
containing the answer, see docs/second_order.md) with one augmented
coordinate, so 353 weights per layer; squared loss on the last coordinate, cost (B)
``E(x(T)) + ∫ (α E(x(t)) + λ|u|²) dt`` with α = 1, λ = 1e-2; RK4 with h = 5/16, T = 5 (16 layers) and
T = 10 (32 layers).

Each horizon is solved by ``turnpike.solve`` from its random start (seed 0) with ``time_limit`` seconds
(``--time-limit``) for the whole solve and ``presolve=--presolve`` (``adam``,
minibatch Adam epochs before L-BFGS-B, helps with ReLU and not with softplus, see
``turnpike.presolve.minibatch_descent``): 5648 and 11296 variables, so the
reduced Hessian is never formed (Hessian-vector products, trust-region Newton-CG, a limited-memory IPOPT).
Whether IPOPT certified the answer (``success``, its tolerance 1e-8 on the scaled KKT error) is printed and
saved with ``‖∇J‖∞`` and the second-order verdict; an answer that is not certified is reported as such,
never as an optimum.

The turnpike of the weights: under cost (B) the static problem has ū = 0 (the field vanishes at rest, every
state is an equilibrium), and the papers' exponential estimate (|u(t)| and the training error decaying in
depth at a rate independent of T) needs the loss to be controllable at first order at rest, rank G = N with
G_ij = ∂(P f(x̄_i, u))/∂u_j at u = 0. For the bottleneck at u = 0 only W2 and b2 act at first order, and the
same way on every sample (σ(W1 x + b1) = σ(0) for every x), so rank G <= 1 < N: no exponential rate is
predicted. The figure shows |u(t)| and E(x(t)) at both depths, and the JSON the first layer where E falls
below 1e-2, for each.

Run:  python examples/neural_ode_chessboard.py --out out/neural_ode/chessboard
      python examples/neural_ode_chessboard.py --points 300 --time-limit 30    # a quick look
Writes chessboard.json (after every horizon), layers_T5.png (samples through the layers, decision regions),
horizons.png.

Run time: about 11 minutes (two horizons, each stopped by its 300 s time limit) on a 2-core machine
(measured on 2026-12-03 with softplus, while a test run shared the machine; with tanh the same limits stop
both horizons). The quick look took 78 s (2026-12-04); its figures are docs/neural_ode_chessboard_*.png.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import turnpike as tp
from problems.datasets import chessboard
from problems.learning_figures import plot_horizons, plot_layers
from problems.neural_ode import NeuralODEClassification
from turnpike.files import write_json

H = 5.0 / 16
HORIZONS = [5.0, 10.0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="out/neural_ode/chessboard")
    parser.add_argument("--activation", default="tanh", choices=["tanh", "softplus", "relu", "sigmoid"])
    parser.add_argument("--points", type=int, default=2397, help="training points (of 2997; the rest are held out)")
    parser.add_argument("--time-limit", type=float, default=300.0, help="seconds per horizon (the whole solve)")
    parser.add_argument("--presolve", default="auto", choices=["auto", "adam", "lbfgs", "none"])
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    points, labels = chessboard(2997, seed=0)
    order = np.random.default_rng(0).permutation(len(points))
    train, test = order[: args.points], order[args.points :]
    problem = NeuralODEClassification(points[train], labels[train], field="bottleneck", hidden=50, augment=1,
                                      activation=args.activation, cost="turnpike", weight=1e-2, alpha=1.0,
                                      name="chessboard")
    solutions, report = [], {"activation": args.activation, "presolve": args.presolve,
                             "training_points": int(args.points), "held_out_points": int(len(test)), "h": H,
                             "horizons": []}
    for T in HORIZONS:
        steps = int(round(T / H))
        print(f"T = {T:g} ({steps} layers, {steps * problem.nu} variables), time limit {args.time_limit:g} s ...",
              flush=True)
        sol = tp.solve(problem, T=T, steps=steps, time_limit=args.time_limit, presolve=args.presolve)
        solutions.append(sol)
        order2 = sol.stats.get("second_order", {})
        held_out = problem.network(sol).accuracy(points[test], labels[test])
        error = problem.training_error(sol.x)
        below = np.flatnonzero(error < 1e-2)
        row = {"T": T, "steps": steps, "certified": bool(sol.success), "status": sol.status, "cost": sol.cost,
               "seconds": sol.stats["total_seconds"], "presolve": sol.stats.get("presolve", {}).get("method"),
               "verdict": order2.get("verdict"), "smallest_eigenvalues": order2.get("smallest_eigenvalues"),
               "train_accuracy": float(problem.accuracy(sol.x[-1])), "held_out_accuracy": float(held_out),
               "final_training_error": float(error[-1]),
               "first_layer_with_error_below_1e-2": int(below[0]) if below.size else None}
        report["horizons"].append(row)
        write_json(out / "chessboard.json", report)  # after every horizon: what is finished so far
        state = "certified" if sol.success else f"NOT certified ({sol.status})"
        print(f"  {state}: cost {sol.cost:.6g}, train accuracy {row['train_accuracy']:.3f}, held out "
              f"{held_out:.3f}, verdict {row['verdict']}, {row['seconds']:.0f} s", flush=True)
    plot_layers(problem, solutions[0], out / "layers_T5.png")
    plot_horizons(problem, solutions, out / "horizons.png")
    print(f"wrote {out}/chessboard.json, layers_T5.png, horizons.png")


if __name__ == "__main__":
    main()
