"""Build and solve times of the core: the LQ example and a neural-ODE ensemble.

Run:  python benchmarks/bench_core.py            (one core: OMP_NUM_THREADS=1 is set here)

Ensemble workload: two circles (radii 1, 2) of N = 40 points in d = 2, inner vector field
dx_i/dt = W tanh(A x_i + b) with u = (W, A, b), 10 controls per stage shared by the 40 samples,
RK4, 100 stages, T = 10, cost  ∫ mean_i (x_{i,2} - y_i)² + |u|² dt + mean_i (x_{i,2}(T) - y_i)².
Start: controls 0.1·N(0, 1) (seed 0) and the states they produce, the same for every method.

Baseline, run here on the same data, start, discretisation and cost: a CasADi Opti model written
the obvious way (one state and one control variable per stage, constraints added in a Python
loop, IPOPT with MUMPS). Each configuration is timed in a fresh solver build; "total" is build +
solve, and the ratio is the baseline's total over the configuration's.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import casadi as ca  # noqa: E402
import numpy as np  # noqa: E402

import turnpike as tp  # noqa: E402
from problems import LinearQuadratic  # noqa: E402
from problems.datasets import concentric_spheres  # noqa: E402

N, STEPS, T = 40, 100, 10.0


def ensemble_problem() -> tp.Problem:
    points, labels = concentric_spheres(N, 2, radii=(1.0, 2.0), seed=0)
    x, u, y = ca.SX.sym("x", 2), ca.SX.sym("u", 10), ca.SX.sym("y")
    W, A, b = ca.reshape(u[:4], 2, 2), ca.reshape(u[4:8], 2, 2), u[8:]
    return tp.Problem(
        state=x, control=u, data=y, data_values=labels[:, None], x0=points,
        dynamics=W @ ca.tanh(A @ x + b),
        running_cost=(x[1] - y) ** 2 + ca.sumsqr(u),
        terminal_cost=(x[1] - y) ** 2,
        name="two-circles",
    )


def opti_baseline(prob: tp.Problem, u0: np.ndarray, x0_traj: np.ndarray):
    """The same NLP written the obvious way with casadi.Opti."""
    start = time.perf_counter()
    opti = ca.Opti()
    labels = prob.data_values[:, 0]
    h = T / STEPS

    def field(X, U):  # X: 2 x N, all samples
        W, A, b = ca.reshape(U[:4], 2, 2), ca.reshape(U[4:8], 2, 2), U[8:]
        return W @ ca.tanh(A @ X + ca.repmat(b, 1, N))

    def running(X, U):
        return ca.sumsqr(X[1, :] - labels.reshape(1, -1)) / N + ca.sumsqr(U)

    Xs = [opti.variable(2, N) for _ in range(STEPS + 1)]
    Us = [opti.variable(10) for _ in range(STEPS)]
    J = 0
    opti.subject_to(Xs[0] == prob.x0_samples.T)
    for k in range(STEPS):
        X, U = Xs[k], Us[k]
        k1, l1 = field(X, U), running(X, U)
        k2, l2 = field(X + h / 2 * k1, U), running(X + h / 2 * k1, U)
        k3, l3 = field(X + h / 2 * k2, U), running(X + h / 2 * k2, U)
        k4, l4 = field(X + h * k3, U), running(X + h * k3, U)
        opti.subject_to(Xs[k + 1] == X + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4))
        J += h / 6 * (l1 + 2 * l2 + 2 * l3 + l4)
        opti.set_initial(U, u0[k])
        opti.set_initial(Xs[k + 1], x0_traj[k + 1].T)
    J += ca.sumsqr(Xs[-1][1, :] - labels.reshape(1, -1)) / N
    opti.minimize(J)
    opti.solver("ipopt", {"print_time": False, "error_on_fail": False}, {"print_level": 0, "sb": "yes", "tol": 1e-8})
    build = time.perf_counter() - start
    start = time.perf_counter()
    sol = opti.solve()
    solve = time.perf_counter() - start
    stats = opti.stats()
    return {"build": build, "solve": solve, "iterations": stats["iter_count"], "cost": float(sol.value(J)),
            "status": stats["return_status"], "success": bool(stats["success"])}


def turnpike_run(prob: tp.Problem, T: float, steps: int, **kw):
    sol = tp.solve(prob, T, steps, **kw)
    pre = sol.stats.get("presolve", {})
    return {"build": sol.stats["build_seconds"], "solve": sol.stats["solve_seconds"] + pre.get("seconds", 0.0),
            "iterations": sol.stats["iterations"], "cost": sol.cost, "status": sol.status, "success": sol.success,
            "presolve_seconds": pre.get("seconds", 0.0)}


def fresh(factory):
    """A new problem object: its solver cache is empty, so the build is timed."""
    return factory()


def main() -> None:
    rows = []
    lq = LinearQuadratic.example
    rows.append(("LQ example, T = 20, 200 steps, IPOPT", turnpike_run(fresh(lq), 20.0, 200)))
    rows.append(("LQ example, T = 20, 200 steps, FATROP", turnpike_run(fresh(lq), 20.0, 200, solver="fatrop")))

    prob = ensemble_problem()
    rows.append(("ensemble N=40: default (presolve + IPOPT, reduced)", turnpike_run(prob, T, STEPS)))
    rows.append(("ensemble N=40: IPOPT reduced, no presolve",
                 turnpike_run(fresh(ensemble_problem), T, STEPS, presolve="none")))
    rows.append(("ensemble N=40: presolve + IPOPT multiple shooting",
                 turnpike_run(fresh(ensemble_problem), T, STEPS, formulation="multiple-shooting")))
    rows.append(("ensemble N=40: IPOPT multiple shooting, no presolve",
                 turnpike_run(fresh(ensemble_problem), T, STEPS, presolve="none", formulation="multiple-shooting")))
    rows.append(("ensemble N=40: turnpike FATROP, no presolve",
                 turnpike_run(fresh(ensemble_problem), T, STEPS, solver="fatrop", presolve="none")))
    rows.append(("ensemble N=40: turnpike presolve + FATROP",
                 turnpike_run(fresh(ensemble_problem), T, STEPS, solver="fatrop")))

    ms = tp.transcription.MultipleShooting(prob, STEPS, "rk4")
    u0 = 0.1 * np.random.default_rng(0).standard_normal((STEPS, 10))
    baseline = opti_baseline(prob, u0, ms.simulate(u0, T))
    rows.append(("ensemble N=40: baseline casadi.Opti, loop over stages", baseline))

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print(f"turnpike core benchmark (commit {commit or 'unknown'}, casadi {ca.__version__}, "
          f"python {sys.version.split()[0]}, OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']})")
    head = f"{'configuration':<55} {'build s':>8} {'solve s':>8} {'total s':>8} {'iter':>5} {'cost':>10} " \
           f"{'status':<28} {'vs Opti':>8}"
    print(head)
    print("-" * len(head))
    base_total = baseline["build"] + baseline["solve"]
    for name, r in rows:
        total = r["build"] + r["solve"]
        ratio = f"{base_total / total:7.1f}x" if name.startswith("ensemble") else ""
        print(f"{name:<55} {r['build']:8.3f} {r['solve']:8.3f} {total:8.3f} {r['iterations']:5d} {r['cost']:10.5g} "
              f"{r['status'][:28]:<28} {ratio:>8}")
    print("solve s includes the presolve where there is one; iterations are the NLP solver's.")


if __name__ == "__main__":
    main()
