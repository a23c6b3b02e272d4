"""d = 1, V = Q = K = 1 (unnormalised tokens in R): the attention matrix becomes Boolean, with two leaders.

Run:  python examples/attention_leaders.py --out out/attention/leaders
Writes attention.png (P at several times, tokens sorted), tokens.png (x_i(t) = e^t z_i(t), leaders marked)
and leaders.json.

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
    parser.add_argument("--out", default="out/attention/leaders")
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    z0 = np.random.default_rng(args.seed).uniform(-1, 1, (args.n, 1))
    model = ta.Unnormalised(1, beta=1.0, Q=1.0, K=1.0, V=1.0)
    t = np.linspace(0.0, 10.0, 201)
    traj = ta.simulate(model, z0, t, dt=1e-3)
    order = np.argsort(z0[:, 0])
    shown = [0.0, 1.0, 3.0, 10.0]
    mats = [model.attention(s, traj.at(s)) for s in shown]
    ta.plot_attention_matrix(mats, shown, out / "attention.png", order=order)
    P = mats[-1]
    lead = ta.leaders(P)
    dist = [float(np.max(np.minimum(np.abs(model.attention(s, x)), np.abs(model.attention(s, x) - 1))))
            for s, x in zip(t, traj.x, strict=True)]
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(t, traj.x[:, :, 0], color="C0", lw=0.8)
    ax1.plot(t, traj.x[:, lead, 0], color="C3", lw=2)
    ax1.set(xlabel="t", ylabel="z_i = e^{-t} x_i", title="rescaled tokens (leaders in red)")
    ax2.semilogy(t, np.maximum(dist, 1e-16))
    ax2.axhline(1e-2, ls="--", color="C3")
    ax2.set(xlabel="t", ylabel="max_ij dist(P_ij, {0, 1})", title="distance of P to a Boolean matrix")
    fig.savefig(out / "tokens.png", dpi=120)
    sv = np.linalg.svd(P, compute_uv=False)
    first = next((float(s) for s, d in zip(t, dist, strict=True) if d < 1e-2), None)
    numbers = {"n": args.n, "seed": args.seed, "leaders": lead.tolist(),
               "leader_start_values": z0[lead, 0].tolist(), "argmax_argmin_start": [int(np.argmax(z0)),
                                                                                   int(np.argmin(z0))],
               "boolean_within_1e-2_from_t": first, "singular_values_at_T": sv[:4].tolist(),
               "rank_tol_1e-2": int(np.sum(sv > 1e-2))}
    (out / "leaders.json").write_text(json.dumps(numbers, indent=2))
    print(json.dumps(numbers, indent=2))


if __name__ == "__main__":
    main()
