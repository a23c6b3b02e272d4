"""Energy E_β along SA and USA with Q = K = I: non-decreasing for V = I, non-increasing for V = -I.

Run:  python examples/attention_energy.py --out out/attention/energy
Writes energy.png (E_β(t), and dE/dt by the identity against a centred difference of E) and energy.json.

Run time: about 4 s on a 2-core machine (measured on 2026-12-03 with the default arguments,
while a test run shared the machine).
"""

import argparse
import json
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

import turnpike.attention as ta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out/attention/energy")
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--d", type=int, default=3)
    parser.add_argument("--beta", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    x0 = ta.random_sphere((args.n,), args.d, seed=args.seed)
    t = np.linspace(0.0, 10.0, 401)
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    numbers = {"n": args.n, "d": args.d, "beta": args.beta, "seed": args.seed, "runs": {}}
    for i, (kind, sign) in enumerate([("sa", 1), ("usa", 1), ("sa", -1), ("usa", -1)]):
        model = ta.SelfAttention(args.d, beta=args.beta, V=sign * np.eye(args.d), kind=kind)
        traj = ta.simulate(model, x0, t, method="adaptive", rtol=1e-11, atol=1e-13)
        E = ta.energy(traj.x, args.beta)
        rate = np.array([ta.energy_rate(x, model.field(0, x), args.beta, kind=kind, sign=sign) for x in traj.x])
        fd = np.gradient(E, t, edge_order=2)
        label = f"{kind.upper()}, V = {'+' if sign > 0 else '-'}I"
        ax1.plot(t, E, color=f"C{i}", label=label)
        ax2.plot(t, rate, color=f"C{i}", label=label)
        ax2.plot(t[::20], fd[::20], "o", ms=3, color=f"C{i}", mfc="none")
        numbers["runs"][label] = {
            "E0": float(E[0]), "E_end": float(E[-1]), "max_wrong_way_step": float(np.max(-sign * np.diff(E))),
            "identity_vs_centred_difference_rel": float(np.max(np.abs(rate[1:-1] - fd[1:-1])) / np.max(np.abs(rate))),
        }
    ax1.axhline(np.exp(args.beta) / (2 * args.beta), ls=":", color="k", lw=1, label="single cluster e^β/2β")
    ax1.set(xlabel="t", ylabel="E_β", title=f"energy, n = {args.n}, d = {args.d}, β = {args.beta:g}")
    ax1.legend(fontsize=8)
    ax2.set(xlabel="t", ylabel="dE/dt", title="identity (lines) vs centred difference of E (circles)")
    ax2.legend(fontsize=8)
    fig.savefig(out / "energy.png", dpi=120)
    (out / "energy.json").write_text(json.dumps(numbers, indent=2))
    print(json.dumps(numbers, indent=2))


if __name__ == "__main__":
    main()
