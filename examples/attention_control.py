"""Measure-to-measure control: one Transformer (piecewise-constant θ(t)) steers N point clouds to N targets.

Run:  python examples/attention_control.py --out out/attention/control
Poses the problem with turnpike.attention.measure_matching (N clouds of n tokens on the circle, each target
token 0.4 rad from its input token), solves it with tp.solve at T = 4, checks it by re-simulation
(solve_ivp) and optimal-assignment W2, and compares horizons with tp.compare_horizons. Writes
clouds.png (tokens moving to their targets), the horizon study's figures and table, and control.json.

Posing θ(t) as an optimal control problem and looking for its turnpike is the toolbox's extension: no theorem
gives a turnpike, a bound on J_T - T·J̄ or a rate here, and the linearisation at the static optimum predicts none
(eigenvalues on the imaginary axis: no spectral gap). The study's value_and_rate.png therefore draws J_T - T·J̄
without a claim and only the measured rates whose fit has R² >= 0.5 (one- or two-sided, chosen by
turnpike.fit_rate from each curve), and says below the panels what it leaves out.

Run time: about 6 minutes on a 2-core machine (measured on 2026-12-03 with the default arguments,
while a test run shared the machine).
"""

import argparse
import json
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

import turnpike as tp
import turnpike.attention as ta
from turnpike.files import write_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out/attention/control")
    parser.add_argument("--clouds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--width", type=int, default=4,
                        help="perceptron width; the static problem needs N n d <= 8 + 5 width (see the README)")
    parser.add_argument("--horizons", type=float, nargs="+", default=[1.0, 2.0, 4.0, 8.0])
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    N, n, d = args.clouds, args.tokens, 2
    rng = np.random.default_rng(args.seed)
    theta = rng.uniform(0, 2 * np.pi, (N, n))
    shift = 0.4 * rng.choice([-1, 1], (N, n))
    inputs, targets = ta.CircleAttention.to_points(theta), ta.CircleAttention.to_points(theta + shift)
    prob = ta.measure_matching(inputs, targets, width=args.width, running=1.0, terminal=10.0, l2=1e-3,
                                bound=2.0)

    T = 4.0
    sol = tp.solve(prob, T, dt=0.05)
    resim = tp.resimulate(prob, sol)
    xT = resim[-1].reshape(N, n, d)
    numbers = {
        "N": N, "n": n, "d": d, "width": args.width, "bound": 2.0, "l2": 1e-3, "T": T, "steps": sol.steps,
        "success": sol.success, "status": sol.status, "cost": sol.cost,
        "matching_loss_at_T": ta.matching_loss(sol.x[-1].reshape(N, n, d), targets).tolist(),
        "W2_input_target": [ta.wasserstein2(inputs[i], targets[i]) for i in range(N)],
        "W2_resimulated_target": [ta.wasserstein2(xT[i], targets[i]) for i in range(N)],
        "resimulation_error": float(np.max(np.abs(resim - sol.x))),
        "solve_seconds": sol.stats["solve_seconds"],
    }
    write_json(out / "control.json", numbers)  # now, and again with the horizon study
    print(f"T = {T:g}: {sol.message}; the horizon study follows ({len(args.horizons)} horizons)", flush=True)
    fig = Figure(figsize=(4 * N, 4.2), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, N))
    circle = np.linspace(0, 2 * np.pi, 200)
    path = sol.x.reshape(sol.steps + 1, N, n, d)
    for i, ax in enumerate(axes):
        ax.plot(np.cos(circle), np.sin(circle), color="0.85")
        for k in range(n):
            ax.plot(path[:, i, k, 0], path[:, i, k, 1], color=f"C{k}", lw=1.5)
            ax.plot(*inputs[i, k], "o", color=f"C{k}", mfc="none", ms=8)
            ax.plot(*targets[i, k], "x", color=f"C{k}", ms=9, mew=2)
        w2 = numbers["W2_resimulated_target"][i]
        ax.set(aspect="equal", xticks=[], yticks=[], title=f"cloud {i + 1}: W2 to target {w2:.1e}")
    fig.suptitle(f"T = {T:g}: inputs (o) pushed to targets (x) by one θ(t); {sol.message}", fontsize=10)
    fig.savefig(out / "clouds.png", dpi=120)

    study = tp.compare_horizons(prob, args.horizons, dt=0.05)
    study.save(out / "study")
    study.plot(out / "study")
    print(study.table())
    numbers["horizons"] = study.rows()
    write_json(out / "control.json", numbers)
    print(json.dumps({k: v for k, v in numbers.items() if k != "horizons"}, indent=2))


if __name__ == "__main__":
    main()
