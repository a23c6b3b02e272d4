"""Metastability on the circle: cluster count and energy over log-time, plateau count against β.

Run:  python examples/attention_metastability.py --out out/attention/metastability
      (add --n 600 --seeds 2 for the setting of docs/mathematics.md §3; a few minutes)
Writes clusters_energy.png (count and normalised energy over log t for each β), circle_beta*.png
(tokens over log time), counts.png (metastable count against β with argmax k² I_k(β) and √(2β)) and
metastability.json.

Run time: about 37 s on a 2-core machine (measured on 2026-12-03 with the default arguments,
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
    parser.add_argument("--out", default="out/attention/metastability")
    parser.add_argument("--n", type=int, default=128)
    parser.add_argument("--betas", type=float, nargs="+", default=[4.0, 9.0, 16.0, 36.0, 64.0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--t-max", type=float, default=1e6)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows, first = [], []
    for beta in args.betas:
        runs = [ta.metastable_run(args.n, beta, t_max=args.t_max, seed=s) for s in range(args.seeds)]
        first.append(runs[0])
        rows.append({"beta": beta, "fastest_mode": ta.fastest_mode(beta), "sqrt_2beta": float(np.sqrt(2 * beta)),
                     "metastable_counts": [r.metastable_count for r in runs],
                     "collapse_times": [r.summary()["collapse_time"] for r in runs],
                     "runs": [r.summary() for r in runs]})
        print(f"beta = {beta:g}: metastable counts {rows[-1]['metastable_counts']}, argmax k^2 I_k = "
              f"{rows[-1]['fastest_mode']}, collapse {rows[-1]['collapse_times']}")
        ta.plot_circle_tokens(runs[0].trajectory, out / f"circle_beta{beta:g}.png", snapshots=5, log_time=True,
                              title=f"SA on the circle, n = {args.n}, β = {beta:g}")
    ta.plot_clusters_energy(first, out / "clusters_energy.png")
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    b = np.array(args.betas)
    for i, row in enumerate(rows):
        ax.plot([row["beta"]] * len(row["metastable_counts"]),
                [c if c is not None else np.nan for c in row["metastable_counts"]], "o", color="C0", alpha=0.6,
                label="measured (first plateau lasting ×5)" if i == 0 else None)
    bb = np.geomspace(b.min(), b.max(), 100)
    ax.plot(bb, [ta.fastest_mode(x) for x in bb], color="C3", label="argmax_k k² I_k(β)")
    ax.plot(bb, np.sqrt(2 * bb), "--", color="0.5", label="√(2β)")
    ax.set(xscale="log", xlabel="β", ylabel="clusters", title=f"metastable clusters, SA, n = {args.n}")
    ax.set_xticks(b, labels=[f"{x:g}" for x in b])
    ax.minorticks_off()
    ax.legend()
    fig.savefig(out / "counts.png", dpi=120)
    (out / "metastability.json").write_text(json.dumps({"n": args.n, "t_max": args.t_max, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
