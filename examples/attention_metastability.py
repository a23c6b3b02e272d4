"""Metastability on the circle: plateau count against β, plateau length against β, the energy staircase.

Run:  python examples/attention_metastability.py --out out/attention/metastability
      (add --n 600 --seeds 2 for the setting of docs/mathematics.md §3; a few minutes)
Writes
* counts.png, circle_beta*.png: SA from seeded uniform starts (n = 128, t <= 1e6): the metastable count
  (first plateau lasting x5) against β with argmax k² I_k(β) and √(2β), tokens over log time;
* plateaus.png: two clusters of 3 tokens (spread 1e-3) at angular distance θ0 = π/3, π/2, 2π/3, SA:
  the length L of the two-cluster plateau against β (6 values of β in [4, 24]/(1 - cos θ0)), the
  least-squares fit log L = a + cβ with R², the exact two-point merge time T(β) by quadrature, and
  log(L)/β against log(T)/β up to β = 400/(1 - cos θ0), which tends to 1 - cos θ0 like
  -log(β)/β (the plateau ends at a finite rescaled time);
* clusters_energy.png: cluster count and E_β/(e^β/(2β)) against s = log(t)/β, uniform start, n = 128,
  β = 2, 4, 6, 9, 12, run to t = min(e^{2.2β}, 1e12) (past the collapse);
* metastability.json: every number above, with the fits over each half of the β range and, on each
  plateau of the staircase runs, the energy ratio against Σ_c (m_c/n)² of the cluster masses there.
Integration: BDF in t (rtol 1e-6, atol 1e-9), outputs log-spaced; clusters by single linkage at chord
1e-2. Beyond t ≈ 1e13 a transition is below float64's resolution of t: the staircase is therefore shown
for β <= 12, where every run collapses by e^{2β} <= 2.6e10.

Run time: about 35 s on a 2-core machine (measured on 2026-12-03 with the default arguments,
while other work shared the machine).
"""

import argparse
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from scipy.sparse.csgraph import connected_components

import turnpike.attention as ta
from turnpike.files import write_json

GAPS = {"π/3": np.pi / 3, "π/2": np.pi / 2, "2π/3": 2 * np.pi / 3}


def mass_level(run: ta.MetastableRun, k: int) -> float:
    """Σ_c (m_c/n)² of the clusters (single linkage at the run's chord tol) at output k."""
    x = ta.CircleAttention.to_points(run.trajectory.x[k])
    d2 = np.sum((x[:, None] - x[None]) ** 2, axis=-1)
    _, labels = connected_components(d2 < run.tol**2, directed=False)
    return float(np.sum((np.bincount(labels) / len(labels)) ** 2))


def counts_part(args, out):
    rows = []
    for beta in args.betas:
        runs = [ta.metastable_run(args.n, beta, t_max=args.t_max, seed=s) for s in range(args.seeds)]
        rows.append({"beta": beta, "fastest_mode": ta.fastest_mode(beta), "sqrt_2beta": float(np.sqrt(2 * beta)),
                     "metastable_counts": [r.metastable_count for r in runs],
                     "collapse_times": [r.summary()["collapse_time"] for r in runs],
                     "runs": [r.summary() for r in runs]})
        print(f"beta = {beta:g}: metastable counts {rows[-1]['metastable_counts']}, argmax k^2 I_k = "
              f"{rows[-1]['fastest_mode']}, collapse {rows[-1]['collapse_times']}")
        ta.plot_circle_tokens(runs[0].trajectory, out / f"circle_beta{beta:g}.png", snapshots=5, log_time=True,
                              title=f"SA on the circle, n = {args.n}, β = {beta:g}")
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
    return rows


def plateau_part(out):
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    record = {}
    for i, (name, gap) in enumerate(GAPS.items()):
        c = 1 - np.cos(gap)
        betas = np.linspace(4, 24, 6) / c
        lengths, exact = [], []
        for beta in betas:
            T = ta.two_cluster_merge_time(gap, beta)
            run = ta.metastable_run(6, beta, t_max=min(1e12, 30 * T), points=400,
                                    theta0=ta.clustered_start([0.0, gap], 3, seed=i))
            lengths.append(ta.plateau_length(run, 2))
            exact.append(T)
        fit, reduced = ta.fit_exponent(betas, lengths), ta.fit_exponent(betas, exact)
        halves = [ta.fit_exponent(betas[s], np.array(lengths)[s]) for s in (slice(0, 3), slice(3, 6))]
        record[name] = {"gap": gap, "1-cos(gap)": c, "fit": fit.summary(), "two_point_merge_times": exact,
                        "two_point_exponent": reduced.exponent, "fit_halves": [h.summary() for h in halves],
                        "measured_over_two_point": (np.array(lengths) / np.array(exact)).tolist()}
        print(f"gap {name}: exponent {fit.exponent:.4f} (R² {fit.r2:.5f}), halves {halves[0].exponent:.4f} / "
              f"{halves[1].exponent:.4f}; two-point reduction {reduced.exponent:.4f}; 1 - cos θ0 = {c:.4f}")
        ax1.semilogy(betas, lengths, "o", color=f"C{i}", label=f"θ0 = {name}: fit c = {fit.exponent:.3f}, "
                                                               f"R² = {fit.r2:.4f}")
        ax1.semilogy(betas, fit.prefactor * np.exp(fit.exponent * betas), "-", color=f"C{i}", lw=0.8)
        bb = np.linspace(betas[0], betas[-1], 50)
        ax1.semilogy(bb, [ta.two_cluster_merge_time(gap, x) for x in bb], ":", color="k", lw=0.8,
                     label="two-point merge time" if i == 0 else None)
        ax2.plot(betas, np.log(lengths) / betas, "o", color=f"C{i}", label=f"θ0 = {name}, measured")
        far = np.geomspace(betas[0], 400 / c, 60)
        ax2.plot(far, [np.log(ta.two_cluster_merge_time(gap, x)) / x for x in far], ":", color=f"C{i}",
                 label="two-point merge time" if i == 0 else None)
        ax2.axhline(c, ls="--", color=f"C{i}", lw=0.8, label=f"1 - cos θ0 = {c:.3g}")
    ax1.set(xlabel="β", ylabel="plateau length L",
            title="two clusters of 3 tokens, SA: L against β\n(slope c - 1/β at finite β; c = 1 - cos θ0, right)")
    ax1.legend(fontsize=7)
    ax2.set(xscale="log", xlabel="β", ylabel="log(L) / β", ylim=(0, 1.6),
            title="end of the plateau in rescaled time s = log(t)/β")
    ax2.legend(fontsize=7, ncol=3, loc="lower center")
    fig.savefig(out / "plateaus.png", dpi=120)
    return record


def staircase_part(args, out):
    runs, rows = [], []
    for beta in args.staircase_betas:
        run = ta.metastable_run(args.n, beta, t_max=min(np.exp(2.2 * beta), 1e12), points=300, seed=0)
        runs.append(run)
        t = run.trajectory.t
        long = [p for p in run.plateaus if p.ratio >= 1.5]
        mid = [int(np.argmin(np.abs(np.log(np.maximum(t, 1e-300)) - np.log(np.sqrt(max(p.start, 1e-1) * p.end)))))
               for p in long]
        summary = run.summary()
        rows.append({**summary, "mass_levels_on_plateaus": [mass_level(run, k) for k in mid]})
        print(f"beta = {beta:g}: collapse at s = {summary['rescaled_collapse_time']}, E/E_max on plateaus "
              f"{np.round(summary['energy_ratio_on_plateaus'], 4).tolist()} vs Σ(m/n)² "
              f"{np.round(rows[-1]['mass_levels_on_plateaus'], 4).tolist()}")
    ta.plot_clusters_energy(runs, out / "clusters_energy.png")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out/attention/metastability")
    parser.add_argument("--n", type=int, default=128)
    parser.add_argument("--betas", type=float, nargs="+", default=[4.0, 9.0, 16.0, 36.0, 64.0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--t-max", type=float, default=1e6)
    parser.add_argument("--staircase-betas", type=float, nargs="+", default=[2.0, 4.0, 6.0, 9.0, 12.0])
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = {"n": args.n, "t_max": args.t_max, "counts": counts_part(args, out)}
    record["plateau_lengths"] = plateau_part(out)
    record["staircase"] = staircase_part(args, out)
    write_json(out / "metastability.json", record)


if __name__ == "__main__":
    main()
