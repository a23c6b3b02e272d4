"""Result 3 of the neural-ODE papers: under the turnpike cost (B) the training error and the weights decay
exponentially in depth, with a rate and a constant that do not depend on the horizon T, when the estimate's
hypothesis holds, and what happens when it does not.

Cost (B): E(x(T)) + ∫ (α E(x(t)) + λ|u|²) dt, squared loss on P x = x_d, labels ±1, α = 1, λ = 0.02; RK4 with
dt = 0.1 (steps = T/dt), T in {5, 10, 20}, IPOPT tol 1e-10. Data: two spheres in R^7 (radii 1, 2), N = 8 points.

Why the hypothesis matters. The estimate E(x_T(t)) <= C e^{-μt} follows from V(x) <= C E(x) near the zero-error
set (the cost of removing a residual is at most proportional to the error). With u = 0 at rest, the residuals
r_i = P x_i - y_i obey dr/dt = G u to first order (NeuralODEClassification.linearised_rate):
* outer field w tanh(x) + b: G has rank N when N <= d + 1 (here 8 = 7 + 1): V ~ E, exponential decay with
  μ = √(α/(Nλ)) s_min(G) for |u| and 2μ for E;
* inner field w tanh(A x + b): G = 0 (σ(0) = 0, bilinear at u = 0), min λ(|w|² + |a|²) over w a = v is 2λ|v|,
  an L1 price on the velocity: the control stops at T* with (α(T - T*) + 1)|P||Σ r_i (x_i, 1)|/N = λ and the
  error stays at a plateau ~ 1/T² (NeuralODEClassification.stopping_residual);
* logistic loss: zero error only at infinite margin, E ~ t^{-2} and |u| ~ t^{-1} (polynomial, not exponential).
The tracking variant (α (1/N) Σ|x_i - x̄_i|², x̄ the projection of the inputs on the zero-error set) has a unique
static optimum (x̄, 0); |x(t) - x̄| decays at the spectral gap of the linearised Hamiltonian system.

Fits: turnpike.analysis.fit_rate, one-sided K e^{-μt}, on the layers all horizons share (t in [1, 4]: after the
first transient layer, and before the last layer of T = 5, where the terminal cost, weight 1 against α per unit
time, leaves a small boundary layer), and on each whole horizon (t >= 1, above the floors 1e-14 for E, 1e-7 for
|u|, 1e-8 for |x - x̄|: the solver's tolerance makes smaller values noise). The whole-horizon rates differ with T
because the decay is a sum of modes √(α/(Nλ)) s_k(G): short windows see the faster ones, long windows approach
the slowest, the linearised μ. Re-simulation (DOP853) must match the RK4 states to 1e-3 (the dt = 0.1 scheme's
error with the large first-layer weights).

Run:  python examples/neural_ode_turnpike.py --out out/neural_ode/turnpike
Writes turnpike.json (rewritten after every solve: it holds what is finished so far), decay.png (outer and inner
under (B)), tracking.png, logistic.png.

Run time: 71 s on a 2-core machine, peak resident set 197 MB (measured on 2026-12-03 with the default arguments, quiet
machine, /usr/bin/time -v).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

import turnpike as tp
from problems.datasets import concentric_spheres
from problems.learning_figures import plot_decay
from problems.neural_ode import NeuralODEClassification
from turnpike.analysis.learning import zero_threshold
from turnpike.files import write_json

HORIZONS = [5.0, 10.0, 20.0]
N, D = 8, 7
ALPHA, LAMBDA, DT, TOL = 1.0, 0.02, 0.1, 1e-10
WINDOW = (1.0, 4.0)
EPSILONS = [1e-2, 1e-4, 1e-6]
# tp.solve takes multiple shooting here (N = 8 samples, nu = 56 or more weights per layer; see its formulation=).
SOLVE = {"dt": DT, "options": {"ipopt.tol": TOL}}


def solve(prob, T):
    start = time.perf_counter()
    sol = tp.solve(prob, T, **SOLVE)
    seconds = time.perf_counter() - start
    print(f"{prob.name} ({prob.field}, {prob.cost}, {prob.loss}), T = {T:g}: {sol.message} ({seconds:.1f} s)",
          flush=True)
    check = tp.resimulation_error(prob, sol)
    if not sol.success or check > 1e-3:
        raise SystemExit(f"{prob.name} T = {T:g}: {sol.message}, re-simulation error {check:.1e}: no optimum to report")
    return sol, {"T": T, "success": sol.success, "status": sol.status, "iterations": sol.stats["iterations"],
                 "seconds": round(seconds, 2), "cost": sol.cost, "resimulation_error": check}


def fit(t, values, T, floor, window=None):
    keep = t >= WINDOW[0]
    if window is not None:
        keep &= t <= window[1] + 1e-9
    f = tp.analysis.fit_rate(t[keep], values[keep], T if window is None else window[1], one_sided=True, floor=floor)
    return {"rate": f.rate, "constant": f.constant, "r2": f.r2, "points": f.points, "success": f.success}


def spread(rows, key, part):
    values = [r[key][part] for r in rows]
    return max(values) / min(values) - 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out/neural_ode/turnpike"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    points, labels = concentric_spheres(N, D, seed=0)
    result = {"instance": {"data": f"two spheres in R^{D}, radii (1, 2), N = {N}, seed 0", "alpha": ALPHA,
                           "lambda": LAMBDA, "dt": DT, "method": "rk4", "ipopt_tol": TOL, "shared_window": WINDOW},
              "outer_turnpike": {"horizons": []}, "inner_turnpike": {"horizons": []}, "tracking": {"horizons": []}}
    record = args.out / "turnpike.json"  # rewritten after every solve: it holds what is finished so far

    def model(**kw):
        return NeuralODEClassification(points, labels, weight=LAMBDA, alpha=ALPHA, **kw)

    # -- outer field, cost (B): the hypothesis holds ----------------------------------------------------------
    outer = model(field="outer", cost="turnpike")
    outer_sols, outer_rows = [], result["outer_turnpike"]["horizons"]
    for T in HORIZONS:
        sol, row = solve(outer, T)
        E, u = outer.training_error(sol.x), tp.analysis.control_norm(sol)
        mu, s = outer.linearised_rate(sol.x[-1])
        row.update({"final_error": float(E[-1]), "linearised_rate": mu, "singular_values_G": s.tolist(),
                    "error_fit_shared": fit(sol.t, E, T, 1e-14, WINDOW),
                    "control_fit_shared": fit(sol.t[:-1], u, T, 1e-7, WINDOW),
                    "error_fit_whole": fit(sol.t, E, T, 1e-14), "control_fit_whole": fit(sol.t[:-1], u, T, 1e-7),
                    "depth_to_error": {f"{eps:g}": tp.analysis.first_time_below(sol.t, E, eps) for eps in EPSILONS}})
        outer_sols.append(sol)
        outer_rows.append(row)
        write_json(record, result)
        print(f"outer (B) T = {T:>4g}: {sol.message}; E(T) = {E[-1]:.2e}; shared-window fit E: μ = "
              f"{row['error_fit_shared']['rate']:.3f}, K = {row['error_fit_shared']['constant']:.3g}; |u|: μ = "
              f"{row['control_fit_shared']['rate']:.3f}, K = {row['control_fit_shared']['constant']:.3g}; "
              f"whole-horizon |u| μ = {row['control_fit_whole']['rate']:.3f}; linearised μ = {mu:.3f}; "
              f"t_ε = {row['depth_to_error']}")
    summary = {key: {part: spread(outer_rows, key, part) for part in ("rate", "constant")}
               for key in ("error_fit_shared", "control_fit_shared", "error_fit_whole", "control_fit_whole")}
    print("relative spread across T (max/min - 1):", json.dumps(summary))
    result["outer_turnpike"]["relative_spread"] = summary

    # -- inner tanh field, cost (B): the estimate fails, the control stops -------------------------------------
    inner = model(field="inner", cost="turnpike")
    inner_sols, inner_rows = [], result["inner_turnpike"]["horizons"]
    for T in HORIZONS:
        sol, row = solve(inner, T)
        zero = zero_threshold(TOL, sol.h, LAMBDA)
        t_star = tp.analysis.stopping_time(sol, zero)
        E = inner.training_error(sol.x)
        price = inner.stopping_residual(sol.x[-1])
        row.update({"final_error": float(E[-1]), "sqrt_error_times_T": float(np.sqrt(E[-1]) * T),
                    "zero_threshold": zero, "stopping_time": t_star,
                    "stopping_law": (ALPHA * (T - t_star) + 1) * price / LAMBDA,
                    "max_control_after_stop": float(np.abs(sol.u[sol.t[:-1] >= t_star]).max()),
                    "linearised_rate": inner.linearised_rate(sol.x[-1])[0]})
        inner_sols.append(sol)
        inner_rows.append(row)
        write_json(record, result)
        print(f"inner (B) T = {T:>4g}: {sol.message}; u = 0 after T* = {t_star:.1f} (max |u| after: "
              f"{row['max_control_after_stop']:.1e}); E(T) = {E[-1]:.2e}, √E(T)·T = {row['sqrt_error_times_T']:.4f}; "
              f"(α(T-T*)+1)|ξ|/(Nλ) = {row['stopping_law']:.4f} (law: 1)")

    # -- tracking variant ------------------------------------------------------------------------------------
    tracking = model(field="outer", cost="tracking")
    static = tp.solve_static(tracking)
    predicted = tp.analysis.predicted_rate(tracking, static)
    result["tracking"].update({"predicted_rate": predicted.rate, "predicted_reason": predicted.reason,
                               "static_success": static.success})
    track_sols, track_rows = [], result["tracking"]["horizons"]
    for T in HORIZONS:
        sol, row = solve(tracking, T)
        dist = np.sqrt(((sol.x - tracking.tracking_target) ** 2).sum(axis=2).mean(axis=1))
        row.update({"distance_fit_shared": fit(sol.t, dist, T, 1e-8, WINDOW),
                    "distance_fit_whole": fit(sol.t, dist, T, 1e-8),
                    "control_fit_whole": fit(sol.t[:-1], tp.analysis.control_norm(sol), T, 1e-7),
                    "final_error": float(tracking.training_error(sol.x[-1]))})
        track_sols.append(sol)
        track_rows.append(row)
        write_json(record, result)
        print(f"tracking T = {T:>4g}: {sol.message}; |x - x̄| fit, shared window: μ = "
              f"{row['distance_fit_shared']['rate']:.3f}, K = {row['distance_fit_shared']['constant']:.3g}; whole: "
              f"μ = {row['distance_fit_whole']['rate']:.3f}; predicted (Hamiltonian gap) {predicted.rate}")

    # -- logistic loss: polynomial decay ---------------------------------------------------------------------
    logistic = model(field="outer", cost="turnpike", loss="logistic")
    sol, log_row = solve(logistic, HORIZONS[-1])
    E, u = logistic.training_error(sol.x), tp.analysis.control_norm(sol)
    mid = (sol.t[:-1] >= 2) & (sol.t[:-1] <= HORIZONS[-1] / 2)
    log_row.update({"loglog_slope_error": float(np.polyfit(np.log(sol.t[:-1][mid]), np.log(E[:-1][mid]), 1)[0]),
                    "loglog_slope_control": float(np.polyfit(np.log(sol.t[:-1][mid]), np.log(u[mid]), 1)[0]),
                    "window": [2.0, HORIZONS[-1] / 2]})
    print(f"logistic T = {HORIZONS[-1]:g}: {sol.message}; log-log slopes on [2, T/2]: "
          f"E {log_row['loglog_slope_error']:.2f} (theory -2), |u| {log_row['loglog_slope_control']:.2f} (theory -1)")
    result["logistic"] = log_row
    write_json(record, result)

    mu = outer_rows[-1]["linearised_rate"]
    plot_decay(outer, outer_sols, args.out / "decay.png", rate=mu, failing=(inner, inner_sols))
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    ax_d, ax_u = fig.subplots(1, 2)
    for k, sol in enumerate(track_sols):
        dist = np.sqrt(((sol.x - tracking.tracking_target) ** 2).sum(axis=2).mean(axis=1))
        ax_d.semilogy(sol.t, dist, color=f"C{k}", label=f"T = {sol.T:g}")
        ax_u.stairs(np.maximum(tp.analysis.control_norm(sol), 1e-300), sol.t, color=f"C{k}", baseline=None)
    if predicted.rate is not None:
        t = np.linspace(1, HORIZONS[-1], 50)
        d1 = np.sqrt(((track_sols[-1].x[10] - tracking.tracking_target) ** 2).sum(axis=1).mean())
        ax_d.semilogy(t, d1 * np.exp(-predicted.rate * (t - 1)), "k:", label=f"e^(-μt), μ = {predicted.rate:.3f} (gap)")
    ax_u.set_yscale("log")
    ax_d.set(title="tracking: RMS |x_i(t) - x̄_i|", xlabel="t (depth)")
    ax_u.set(title="|u(t)|", xlabel="t (depth)")
    ax_d.legend(fontsize=8)
    fig.savefig(args.out / "tracking.png", dpi=110)
    fig = Figure(figsize=(5, 3.8), layout="constrained")
    ax = fig.subplots()
    ax.loglog(sol.t[1:], E[1:], label="E(x(t))")
    ax.loglog(sol.t[1:-1], u[1:], label="|u(t)|")
    ax.loglog(sol.t[1:], E[10] * (sol.t[1:] / 1.0) ** -2.0, "k:", lw=1, label="t^-2")
    ax.loglog(sol.t[1:], u[10] * (sol.t[1:] / 1.0) ** -1.0, "k--", lw=1, label="t^-1")
    ax.set(title=f"logistic loss, cost (B), T = {HORIZONS[-1]:g}: polynomial decay", xlabel="t (depth)")
    ax.legend(fontsize=8)
    fig.savefig(args.out / "logistic.png", dpi=110)

    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
