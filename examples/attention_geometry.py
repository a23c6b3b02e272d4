"""Limit geometry of unnormalised attention by the spectrum of V: polytope (V = I), hyperplanes, leaders (d = 1).

Run:  python examples/attention_geometry.py --out out/attention/geometry
Writes polytope.png (V = I in d = 2 and 3: rescaled tokens z = e^{-tV} x, the hull of the start and
the limit polytope), hyperplanes.png (a simple leading eigenvalue of V in d = 2 and 3: the coordinate
h = nᵀz against t and the levels found; d = 1: the two leaders) and geometry.json.

Instances: Q = K = I, tokens integrated in z with DOP853 (rtol 1e-10, atol 1e-12) on [0, 12], outputs
every 0.1. V = I: n = 24 tokens with uniform directions and radii uniform in [0.3, 1.2], β = 4. Leading
eigenvalue: V = [[1, 0.6], [0, 0.3]] (d = 2; not symmetric, so the hyperplanes' normal n is not the
eigenvector φ1) and V = R diag(1, 0.2, -0.4) R⁻¹ (d = 3; along -0.4 the rescaled tokens repel and z is
unbounded, h converges all the same), 24 standard Gaussian tokens, β = 1; both
satisfy λ1 > |λ| for the other eigenvalues and β<Qφ1, Kφ1> > 0. d = 1: V = Q = K = 1, β = 1, 20 tokens
uniform in [-1, 1]. Diagnostics (turnpike.attention.geometry): clusters and levels by single linkage at
1e-3, convergence when no token moves more than 1e-3 over the last unit of time. The theorem bounds the
number of hyperplanes by three; the figures report how many were found, no more.

Run time: about 4 s on a 2-core machine (measured on 2026-12-03 with the default arguments, while
other work shared the machine).
"""

import argparse
import time
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from scipy.spatial import ConvexHull

import turnpike.attention as ta
from turnpike.files import write_json

T, TIMES = 12.0, np.linspace(0.0, 12.0, 121)


def run(model, z0):
    return ta.simulate(model, z0, TIMES, method="adaptive", rtol=1e-10, atol=1e-12)


def ball_start(n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    u = rng.standard_normal((n, d))
    return u / np.linalg.norm(u, axis=1, keepdims=True) * rng.uniform(0.3, 1.2, (n, 1))


def draw_polygon(ax, z, style, **kw):
    hull = ConvexHull(z)
    loop = np.append(hull.vertices, hull.vertices[0])
    ax.plot(z[loop, 0], z[loop, 1], style, **kw)


def polytope_figure(cases, path):
    fig = Figure(figsize=(11, 5), layout="constrained")
    (traj2, poly2), (traj3, poly3) = cases
    ax = fig.add_subplot(1, 2, 1)
    z = traj2.x
    ax.plot(z[:, :, 0], z[:, :, 1], color="0.6", lw=0.6)
    ax.plot(z[0, :, 0], z[0, :, 1], "o", mfc="none", color="0.3", ms=5, label="z_i(0)")
    draw_polygon(ax, z[0], "--", color="0.4", lw=1, label="hull of z(0)")
    loop = np.append(np.arange(len(poly2.vertices)), 0)
    ax.fill(poly2.vertices[loop, 0], poly2.vertices[loop, 1], color="C3", alpha=0.15)
    ax.plot(poly2.vertices[loop, 0], poly2.vertices[loop, 1], "o-", color="C3", lw=1.5,
            label=f"limit polytope ({len(poly2.vertices)} vertices)")
    for v, tokens in zip(poly2.vertices, poly2.vertex_tokens, strict=True):
        ax.annotate(f"{len(tokens)}", v, textcoords="offset points", xytext=(6, 6), color="C3")
    ax.set(aspect="equal", xlabel="z_1", ylabel="z_2",
           title=f"d = 2, V = I, β = 4: every token on a vertex\n(numbers: tokens per vertex; motion in the "
                 f"last unit of time {poly2.motion:.0e})")
    ax.legend(fontsize=8, loc="lower left")
    ax = fig.add_subplot(1, 2, 2, projection="3d")
    z = traj3.x
    for i in range(z.shape[1]):
        ax.plot(z[:, i, 0], z[:, i, 1], z[:, i, 2], color="0.6", lw=0.6)
    ax.scatter(*z[0].T, facecolors="none", edgecolors="0.3", s=14)
    hull = ConvexHull(poly3.vertices)
    for simplex in hull.simplices:
        loop = np.append(simplex, simplex[0])
        ax.plot(*poly3.vertices[loop].T, color="C3", lw=1)
    ax.scatter(*poly3.vertices.T, color="C3", s=30)
    ax.set(xlabel="z_1", ylabel="z_2", zlabel="z_3",
           title=f"d = 3, V = I, β = 4: {len(poly3.vertices)} vertices,\n"
                 f"{len(poly3.other_tokens)} tokens off the vertices")
    fig.savefig(path, dpi=120)


def hyperplane_figure(plane_cases, d1, path):
    fig = Figure(figsize=(11, 8.5), layout="constrained")
    axes = fig.subplots(2, 2)
    (traj2, res2, V2), (traj3, res3, V3) = plane_cases
    ax = axes[0, 0]
    z = traj2.x
    ax.plot(z[:, :, 0], z[:, :, 1], color="0.6", lw=0.6)
    ax.plot(z[0, :, 0], z[0, :, 1], "o", mfc="none", color="0.3", ms=4)
    ax.plot(z[-1, :, 0], z[-1, :, 1], "o", color="C0", ms=4, label="z_i(12)")
    n, tangent = res2.normal, np.array([-res2.normal[1], res2.normal[0]])
    xlim, ylim = ax.get_xlim(), ax.get_ylim()
    span = 2 * np.hypot(np.ptp(xlim), np.ptp(ylim)) + np.max(np.abs(z[-1]))
    for k, c in enumerate(res2.levels):
        ends = c * n + np.outer([-span, span], tangent)
        ax.plot(ends[:, 0], ends[:, 1], "--", color="C3", lw=1, label="nᵀz = c (levels found)" if k == 0 else None)
    ax.set(xlim=xlim, ylim=ylim, xlabel="z_1", ylabel="z_2",
           title=f"d = 2, V = {V2.tolist()}: tokens end on {res2.count} lines nᵀz = c\n"
                 f"(largest distance between two tokens of a line: {np.round(res2.extent, 2).tolist()})")
    ax.legend(fontsize=8)
    for ax, traj, res, label in ((axes[0, 1], traj2, res2, "d = 2"), (axes[1, 0], traj3, res3, "d = 3")):
        h = traj.x @ res.normal
        ax.plot(traj.t, h, color="C0", lw=0.8)
        for c in res.levels:
            ax.axhline(c, ls="--", color="C3", lw=1)
        grow = np.max(np.linalg.norm(traj.x[-1], axis=-1))
        ax.set(xlabel="t", ylabel="h_i = nᵀz_i",
               title=f"{label}: {res.count} levels found (theorem: at most 3)\n"
                     f"λ1 = {res.eigenvalue:.3g}, gap {res.gap:.2g}, max |z_i(12)| = {grow:.3g}")
    traj1, res1, lead = d1
    ax = axes[1, 1]
    ax.plot(traj1.t, traj1.x[:, :, 0], color="C0", lw=0.8)
    ax.plot(traj1.t, traj1.x[:, lead, 0], color="C3", lw=2)
    ax.set(xlabel="t", ylabel="z_i = e^{-t} x_i",
           title=f"d = 1, V = Q = K = 1: {res1.count} levels, leaders {lead.tolist()} (red)")
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out/attention/geometry")
    parser.add_argument("--n", type=int, default=24)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    record = {"T": T, "outputs": len(TIMES), "rtol": 1e-10, "atol": 1e-12, "n": args.n, "seed": args.seed}
    polys = []
    for d in (2, 3):
        model = ta.Unnormalised(d, beta=4.0)
        traj = run(model, ball_start(args.n, d, args.seed))
        poly = ta.limit_polytope(model, traj)
        polys.append((traj, poly))
        record[f"polytope_d{d}"] = {"V": "I", "beta": 4.0, **poly.summary()}
        print(f"V = I, d = {d}: {len(poly.vertices)} vertices, tokens per vertex "
              f"{[len(v) for v in poly.vertex_tokens]}, off the vertices {list(poly.other_tokens)}, "
              f"motion {poly.motion:.2e}")
    polytope_figure(polys, out / "polytope.png")
    R = np.array([[1.0, 0.3, 0.0], [0.0, 1.0, 0.5], [0.2, 0.0, 1.0]])
    Vs = {2: np.array([[1.0, 0.6], [0.0, 0.3]]), 3: R @ np.diag([1.0, 0.2, -0.4]) @ np.linalg.inv(R)}
    planes = []
    rng = np.random.default_rng(args.seed)
    for d, V in Vs.items():
        model = ta.Unnormalised(d, beta=1.0, V=V)
        traj = run(model, rng.standard_normal((args.n, d)))
        res = ta.limit_hyperplanes(model, traj)
        planes.append((traj, res, V))
        record[f"hyperplanes_d{d}"] = {"V": V.tolist(), "beta": 1.0, **res.summary()}
        print(f"leading eigenvalue, d = {d}: {res.count} hyperplanes at {np.round(res.levels, 4).tolist()}, "
              f"tokens {[len(k) for k in res.tokens]}, motion {res.motion:.2e}, theory applies: {res.theory}")
    model = ta.Unnormalised(1, beta=1.0, Q=1.0, K=1.0, V=1.0)
    z0 = np.random.default_rng(7).uniform(-1, 1, (20, 1))
    traj = run(model, z0)
    res = ta.limit_hyperplanes(model, traj)
    lead = ta.leaders(model.attention(T, traj.x[-1]))
    record["leaders_d1"] = {"leaders": lead, "argmin_argmax_start": [int(np.argmin(z0)), int(np.argmax(z0))],
                            **res.summary()}
    print(f"d = 1: {res.count} levels, leaders {lead.tolist()} (argmin, argmax of z(0): "
          f"{record['leaders_d1']['argmin_argmax_start']})")
    hyperplane_figure(planes, (traj, res, lead), out / "hyperplanes.png")
    record["seconds"] = time.perf_counter() - start
    write_json(out / "geometry.json", record)


if __name__ == "__main__":
    main()
