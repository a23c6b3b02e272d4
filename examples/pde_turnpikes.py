"""Heat and wave turnpikes: the finite-difference semi-discretisations of problems.heat and problems.wave, solved by
multiple shooting over several horizons and meshes, and their spectral gaps under mesh refinement.

Heat (problems.heat.Heat): y_t = y_xx + χ_ω u on (0, 1), Dirichlet, interior control on ω = (0.25, 0.75), cost
∫ ‖y - 1‖² + 10⁻²‖u‖² dt from y = 0 (mesh-weighted L² norms, Δx = 1/(M + 1)). The gap of the semi-discrete
Hamiltonian (turnpike.analysis.predicted_rate) converges as the mesh is refined (interior control, and Dirichlet
boundary control y(t, 0) = u(t)), and the horizons show the exponential turnpike.

Wave (problems.wave.Wave): y_tt = y_xx + u, Dirichlet, position observed, cost ∫ ‖y‖² + ‖u‖² dt, from
y(0) = sin(πx) at rest. The gap is the rate of the highest mesh mode and closes like Δx/4 (docs/mathematics.md
§2, §4); compared here with the closed form r_M = Re √(-λ_M + i) of Wave.mode_rates. These data lie in the first mode,
which the optimality system does not couple to the others: the solutions approach the turnpike at that mode's
rate r_1 = Re √(-λ_1 + i) ≈ 0.159, not at the gap, which bounds the rate over all data from below.

Grids: RK4, dt = 2^-k, the largest power of two below a third of RK4's stability bound for the heat equation
(h λ_M <= 2.785/3, so dt ∝ Δx²) and below half of it for the wave (h √λ_M <= √2). At these steps RK4 damps the
first wave mode by far less than r_1 but the highest one by more than the gap (wave rk4_damping, in the JSON): the
fully discrete wave problem keeps the semi-discrete rate of the mode these data excite, not the gap. IPOPT tol 1e-8.
Rates fitted by turnpike.analysis.fit_rate on the total distance |x - x̄| + |u - ū| + |p - p̄|: two-sided for the
heat equation (the target is not an equilibrium of the free dynamics, so the optimum leaves the turnpike before T),
one-sided for the wave (x̄ = 0 is one, and the optimum stays near it up to T).

Run:  python examples/pde_turnpikes.py --out out/pde_turnpikes          (--full: finer meshes)
Writes pde_turnpikes.json (rewritten after every piece of work: it holds what is finished so far), distance.png
(mesh-weighted state distance to the static optimum against t, every horizon and mesh) and gaps.png (the gaps
against the mesh, with Δx/4 for the wave).

Run time: about 40 s on a 2-core machine with the default arguments, peak memory 1.3 GB; with --full about 95 s,
3.0 GB (measured on 2026-12-03).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

import turnpike as tp
from problems.heat import Heat
from problems.wave import Wave
from turnpike.files import write_json

HEAT_HORIZONS, WAVE_HORIZONS = [0.5, 1.0, 2.0], [10.0, 20.0, 40.0]
GAP_MESHES, HEAT_MESHES, WAVE_MESHES = [10, 20, 40, 80], [10, 20], [10, 20]
# Finer solves are refused by tp.solve's memory guard, whose estimate assumes dense stage Jacobians (heat M = 40 at
# T = 2, 16384 steps: 23.7 GB estimated); it estimates the wave at M = 40 at 14 GB, where 3.0 GB were measured.
FULL = {"gaps": [10, 20, 40, 80, 160], "heat": [10, 20], "wave": [10, 20, 40]}
HEAT_STEP, WAVE_STEP = 1 / 3, 1 / 2  # the fraction of RK4's stability bound
SOLVE = {"formulation": "multiple-shooting", "method": "rk4"}


def power_of_two_step(limit: float) -> float:
    """The largest ``2^-k`` (k >= 0) not above ``limit``: it divides every horizon used here."""
    return 2.0 ** -np.ceil(-np.log2(limit))


def gap(problem) -> tuple[float | None, float]:
    """The predicted rate at the static optimum and the seconds both took."""
    start = time.perf_counter()
    static = tp.solve_static(problem)
    if not static.success:
        raise SystemExit(f"{problem!r}: static problem {static.message}")
    return tp.predicted_rate(problem, static).rate, time.perf_counter() - start


def gaps(meshes: list[int], rows: dict, save) -> None:
    """Heat (interior and boundary control) and wave gaps on every mesh, into ``rows``; ``save()`` after each."""
    for M in meshes:
        for control in ("interior", "boundary"):
            heat = Heat(nodes=M, control=control)
            mu, seconds = gap(heat)
            rows[f"heat_{control}"].append({"nodes": M, "dx": heat.dx, "gap": mu, "seconds": round(seconds, 2)})
        wave = Wave(nodes=M)
        mu, seconds = gap(wave)
        closed = float(wave.mode_rates()[-1])
        rows["wave"].append({"nodes": M, "dx": wave.dx, "gap": mu, "closed_form": closed,
                             "relative_difference": abs(mu - closed) / closed, "dx_over_4": wave.dx / 4,
                             "ratio_to_dx_over_4": mu / (wave.dx / 4), "seconds": round(seconds, 2)})
        save()
        print(f"M = {M:>3}: heat gap {rows['heat_interior'][-1]['gap']:.6f} (interior), "
              f"{rows['heat_boundary'][-1]['gap']:.6f} (boundary); wave gap {mu:.6f} = {mu / (wave.dx / 4):.4f}·Δx/4 "
              f"(closed form {closed:.6f})", flush=True)


def study(problem, horizons, dt: float, one_sided: bool, extra: dict, rows: list, save) -> tp.HorizonStudy:
    """``tp.compare_horizons`` at fixed ``dt``: one row per horizon (with ``extra``) into ``rows``, then ``save()``."""
    found = tp.compare_horizons(problem, horizons, dt=dt, one_sided=one_sided, progress=False, **SOLVE)
    if not found.success:
        raise SystemExit(f"{problem!r}: " + "; ".join(s.message for s in found.solutions))
    for row, sol in zip(found.rows(), found.solutions, strict=True):
        rows.append({"nodes": problem.nodes, "dt": dt, **extra, **row})
        fitted = "none" if row["rate"] is None else f"{row['rate']:.4f} (R² {row['rate_r2']:.3f})"
        print(f"{problem.name} M = {problem.nodes:>3}, T = {sol.T:>4g}, dt = {dt:.3g}: {sol.message} in "
              f"{row['total_seconds']:.1f} s; fitted rate {fitted}, predicted {row['predicted_rate']:.6f}", flush=True)
    save()
    return found


def state_distance(problem, solution, static) -> np.ndarray:
    """``‖x(t_k) - x̄‖_h = (Δx Σ_j |x_j(t_k) - x̄_j|²)^{1/2}`` over every state component (y, and y_t for the wave)."""
    return np.sqrt(problem.dx * np.sum((solution.x - static.x) ** 2, axis=1))


def plot_distances(path: Path, heat_studies, wave_studies, heat_gap: float, wave_gap: float, wave_r1: float):
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    panels = fig.subplots(1, 2)
    styles = ["-", "--", ":", "-."]
    for ax, studies in zip(panels, (heat_studies, wave_studies), strict=True):
        for m, (problem, found) in enumerate(studies):
            for k, sol in enumerate(found.solutions):
                label = f"T = {sol.T:g}" if m == 0 else None
                ax.semilogy(sol.t, state_distance(problem, sol, found.static), styles[m % 4], color=f"C{k}",
                            label=label)
            ax.plot([], [], styles[m % 4], color="gray", label=f"M = {problem.nodes}")
    heat_text = f"slope e^(-μt), μ = {heat_gap:.2f}: the gap at M = {heat_studies[-1][0].nodes}"
    wave_text = f"slope e^(-r₁t), r₁ = {wave_r1:.3f}: rate of the first mode"
    for ax, studies, rate, text in ((panels[0], heat_studies, heat_gap, heat_text),
                                    (panels[1], wave_studies, wave_r1, wave_text)):
        problem, found = studies[-1]
        sol = found.solutions[-1]
        d = state_distance(problem, sol, found.static)
        t0 = sol.T / 8
        t = np.linspace(t0, sol.T / 2, 20)
        ax.semilogy(t, 2 * np.interp(t0, sol.t, d) * np.exp(-rate * (t - t0)), "k", lw=0.8, label=text)
        ax.set(xlabel="t")
        ax.legend(fontsize=7, ncol=2, loc="lower left")
    panels[0].set_ylim(1e-9, None)  # room for the legend below the curves
    panels[0].set_title("heat: ‖y(t) − ȳ‖_h, interior control on (0.25, 0.75),\nβ = 0.01, y_d = 1, y(0) = 0",
                        fontsize=9)
    panels[1].set_title(f"wave: ‖(y, y_t)(t) − (ȳ, 0)‖_h, β = 1, y_d = 0, y(0) = sin(πx)\nthe gap ({wave_gap:.4f} at "
                        f"M = {wave_studies[-1][0].nodes}) is the rate of the highest mesh mode,\nwhich these data do "
                        "not excite", fontsize=9)
    fig.savefig(path, dpi=110)


def plot_gaps(path: Path, rows: dict):
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax_h, ax_w = fig.subplots(1, 2)
    for control, marker in (("interior", "o"), ("boundary", "s")):
        r = rows[f"heat_{control}"]
        label = "interior control on (0.25, 0.75)" if control == "interior" else "boundary control y(t, 0) = u(t)"
        ax_h.plot([x["nodes"] for x in r], [x["gap"] for x in r], marker=marker, label=label)
    ax_h.set_title("heat, β = 0.01: gap of the semi-discrete Hamiltonian", fontsize=8)
    r = rows["wave"]
    nodes = np.array([x["nodes"] for x in r])
    ax_w.plot(nodes, [x["gap"] for x in r], "o", label="gap μ_h (predicted_rate)")
    ax_w.plot(nodes, 1 / (4 * (nodes + 1)), "k", lw=0.8, label="Δx/4 = 1/(4(M + 1))")
    ax_w.set_yscale("log")
    ax_w.set_title("wave, position observed, β = 1: gap of the semi-discrete Hamiltonian", fontsize=8)
    for ax in (ax_h, ax_w):
        ax.set_xscale("log")
        ax.set_xticks(nodes, [str(M) for M in nodes])
        ax.set_xticks([], minor=True)
        ax.set(xlabel="interior nodes M (Δx = 1/(M + 1))", ylabel="gap μ_h")
        ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out/pde_turnpikes"))
    parser.add_argument("--full", action="store_true",
                        help=f"meshes {FULL} (about 95 s; needs the memory guard's 14 GB: else set TURNPIKE_MEMORY_GB)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    meshes = FULL if args.full else {"gaps": GAP_MESHES, "heat": HEAT_MESHES, "wave": WAVE_MESHES}
    record = args.out / "pde_turnpikes.json"
    result = {"settings": {"meshes": meshes, "heat_horizons": HEAT_HORIZONS, "wave_horizons": WAVE_HORIZONS,
                           "heat": "Heat(nodes=M): interior control on (0.25, 0.75), beta 1e-2, y_d = 1, y(0) = 0",
                           "wave": "Wave(nodes=M): beta 1, y_d = 0, y(0) = sin(pi x), y_t(0) = 0",
                           "step_rule": {"heat": HEAT_STEP, "wave": WAVE_STEP}, **SOLVE},
              "gaps": {"heat_interior": [], "heat_boundary": [], "wave": []}, "heat": [], "wave": []}
    start = time.perf_counter()

    def save():  # the record holds what is finished so far
        write_json(record, result)

    gaps(meshes["gaps"], result["gaps"], save)

    heat_studies = []
    for M in meshes["heat"]:
        heat = Heat(nodes=M)
        dt = power_of_two_step(HEAT_STEP * heat.max_step())
        heat_studies.append((heat, study(heat, HEAT_HORIZONS, dt, False, {}, result["heat"], save)))
    wave_studies = []
    for M in meshes["wave"]:
        wave = Wave(nodes=M)
        dt = power_of_two_step(WAVE_STEP * wave.max_step())
        rates, damping = wave.mode_rates(), wave.rk4_damping(dt)
        extra = {"first_mode_rate": rates[0], "gap_closed_form": rates[-1], "rk4_damping_first_mode": damping[0],
                 "rk4_damping_highest_mode": damping[-1]}
        wave_studies.append((wave, study(wave, WAVE_HORIZONS, dt, True, extra, result["wave"], save)))

    result["seconds"] = round(time.perf_counter() - start, 1)
    save()
    heat_gap, wave_gap = (studies[-1][1].reports[0].predicted.rate for studies in (heat_studies, wave_studies))
    plot_distances(args.out / "distance.png", heat_studies, wave_studies, heat_gap, wave_gap,
                   float(wave_studies[-1][0].mode_rates()[0]))
    plot_gaps(args.out / "gaps.png", result["gaps"])
    print(f"wrote {record}, distance.png and gaps.png in {args.out} ({result['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
