"""One measurement of the scale benchmark, run in its own process by ``bench_scale.py``.

Usage (normally only through ``bench_scale.py``):  ``python benchmarks/scale_jobs.py SPEC.json RESULT.json``

``SPEC.json`` says which job to run (``kind``) on which workload (``N``, ``steps``, ``T``); the result
is written to ``RESULT.json`` as it becomes known (so a run killed at its time cap still reports
what it had, e.g. the build time). The parent measures the peak memory of this process.

Jobs:

* ``toolbox``: ``turnpike.solve(problem, T, steps=steps, method="rk4", seed=0)`` with its defaults
  (``start_seed`` in the spec changes the seed of the random start; the data stay the same).
  ``total`` is the wall time of that call; ``build`` is ``sol.stats["build_seconds"]`` and ``solve``
  the rest (the presolve, if any, the initial guess and the NLP solve). Then, outside that time, what
  one step of each presolve phase costs at the solution (:func:`unit_costs`).
* ``to_target``: the toolbox's time to the criterion the torch baselines stop at, ``J <= target``
  (see :func:`run_to_target`).
* ``opti``: :func:`baseline_opti.opti_baseline`, capped so that build + solve stay within ``budget``.
* ``lbfgs`` / ``adam``: :func:`baseline_torch.train` for ``budget`` seconds or until the toolbox's cost
  within 1%; first the cross-check that the torch cost at the toolbox's controls equals ``sol.cost``.
* ``sweep``: ``turnpike.analysis.compare_horizons`` over ``horizons`` with fixed ``steps`` (``start_seed``:
  the seed of the first horizon's random start).
* ``pool_sweep``: ``turnpike.sweep`` of the same horizons on ``workers`` local processes: every horizon
  from the random start ``start_seed`` (no warm starts), the static problem once.

Every job uses the same data: ``problems.datasets.concentric_spheres(N, 2, radii=(1, 2), seed=0)`` and
``NeuralODEClassification(field="inner", activation="tanh", cost="turnpike", weight=1e-2, alpha=1)``.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

SEED = 0
GUESS_SCALE = 0.1  # turnpike.solve's default guess_scale
CROSS_CHECK_RTOL = 1e-7  # torch cost at the toolbox's controls vs sol.cost (IPOPT's tol is 1e-8)


def two_circles(N: int):
    """The workload's problem: N points on two circles (radii 1, 2), inner tanh field, cost (B)."""
    from problems.datasets import concentric_spheres
    from problems.neural_ode import NeuralODEClassification

    points, labels = concentric_spheres(N, 2, radii=(1.0, 2.0), seed=SEED)
    return NeuralODEClassification(points, labels, field="inner", activation="tanh", cost="turnpike",
                                   weight=1e-2, alpha=1.0, name=f"two-circles-N{N}")


class Report:
    """The job's result dict, rewritten to disk (atomically) at every update."""

    def __init__(self, path: str):
        self.path = Path(path)
        self.data: dict = {}

    def update(self, **values) -> None:
        self.data.update(values)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.data, default=_jsonable, indent=1))
        os.replace(tmp, self.path)


def _jsonable(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return repr(obj)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_toolbox(spec: dict, report: Report) -> None:
    import turnpike as tp

    problem = two_circles(spec["N"])
    report.update(rss_before_mb=_rss_mb(), phase="solving")
    start = time.perf_counter()
    sol = tp.solve(problem, spec["T"], steps=spec["steps"], method="rk4", seed=spec.get("start_seed", SEED))
    total = time.perf_counter() - start
    build = float(sol.stats.get("build_seconds", 0.0))
    if spec.get("save_solution"):
        sol.save(spec["save_solution"])
    report.update(
        build=build, solve=total - build, total=total, iterations=sol.stats.get("iterations"), cost=sol.cost,
        cost_terms=sol.cost_terms, train_error=float(problem.training_error(sol.x[-1])),
        status=sol.status, success=bool(sol.success), stats=sol.stats,
    )
    if sol.stats.get("formulation") == "reduced":
        report.update(unit_costs=unit_costs(problem, spec, sol.u))


def unit_costs(problem, spec: dict, u: np.ndarray, repeats: int = 5) -> dict:
    """Milliseconds of one step of each presolve phase at the controls ``u`` (median of ``repeats``).

    On a reduced space built like the solve's (``turnpike.reduced.ReducedSpace``, RK4, the compiled
    ensemble loop when there is a compiler):

    * ``ensemble_ms``: ``ensemble_cost``, the ensemble terms of J and their gradient (the compiled loop);
    * ``evaluation_ms``: J and ∇J as the presolve calls them (``reduced_objective``: the same loop, the
      control cost and the reshaping around it);
    * ``hessian_ms``: the exact reduced Hessian (``hessian``, from a new point each time: it keeps no
      result across calls with other controls);
    * ``cholesky_ms``: LAPACK's Cholesky factorisation of that Hessian (``scipy.linalg.cho_factor``), or
      None where it is not positive definite.

    An L-BFGS-B iteration costs at least an evaluation, a Newton step with a new Hessian at least a
    Hessian and a factorisation: with the counts in the solve's stats these give the least time each
    phase could have taken on this machine.
    """
    import scipy.linalg

    from turnpike.reduced import ReducedSpace

    rs = ReducedSpace(problem, spec["steps"], "rk4")
    p, fg = rs.parameters(spec["T"]), rs.reduced_objective()
    rng = np.random.default_rng(SEED)
    points = [u + 1e-9 * rng.standard_normal(u.shape) for _ in range(repeats + 1)]  # the first one warms up

    def median_ms(call) -> float:
        times = []
        for point in points:
            start = time.perf_counter()
            call(point)
            times.append(time.perf_counter() - start)
        return 1e3 * float(np.median(times[1:]))

    H = rs.hessian(u, p)
    try:
        cholesky = median_ms(lambda _: scipy.linalg.cho_factor(H, lower=False, check_finite=False))
    except np.linalg.LinAlgError:
        cholesky = None
    return {"ensemble_ms": median_ms(lambda v: rs.ensemble_cost(v, p)),
            "evaluation_ms": median_ms(lambda v: fg(v.T, p)),
            "hessian_ms": median_ms(lambda v: rs.hessian(v, p)), "cholesky_ms": cholesky}


def run_to_target(spec: dict, report: Report) -> None:
    """The toolbox solve's L-BFGS phase, run alone and timed until ``J <= target``.

    The torch baselines stop at ``J <= 1.01 J_toolbox``, while the toolbox's ``total`` is its time to a
    certified optimum. This is the toolbox's time to the baselines' criterion: the reduced space built
    (``build``), then the same descent as the solve's (same function, start and settings, so the same
    iterates: the caller compares ``lbfgs_iterations`` and ``lbfgs_cost`` with the solve's stats) until J
    reaches ``target`` (``seconds``; None if the L-BFGS phase never got there).
    """
    from baseline_torch import initial_controls

    from turnpike.presolve import reduced_space_descent
    from turnpike.reduced import ReducedSpace

    problem = two_circles(spec["N"])
    u0 = initial_controls(spec["steps"], problem.nu, spec.get("start_seed", SEED), GUESS_SCALE)
    report.update(rss_before_mb=_rss_mb(), phase="building")
    start = time.perf_counter()
    rs = ReducedSpace(problem, spec["steps"], "rk4")
    rs.reduced_objective()
    build = time.perf_counter() - start
    reached = {"seconds": None, "iteration": None, "cost": None}
    iterations = 0
    start = time.perf_counter()

    def watch(intermediate_result):
        nonlocal iterations
        iterations += 1
        if reached["seconds"] is None and intermediate_result.fun <= spec["target"]:
            reached.update(seconds=time.perf_counter() - start, iteration=iterations, cost=intermediate_result.fun)

    result = reduced_space_descent(rs, u0, spec["T"], callback=watch)
    report.update(build=build, **reached, target=spec["target"], lbfgs_iterations=result.iterations,
                  lbfgs_cost=result.cost, success=reached["seconds"] is not None, phase="done")


def _reference(spec: dict):
    """The toolbox's solution of this workload (saved by its job), or None."""
    path = spec.get("reference")
    if not path or not Path(path).exists():
        return None
    import turnpike as tp

    return tp.Solution.load(path)


def run_opti(spec: dict, report: Report) -> None:
    from baseline_opti import opti_baseline
    from baseline_torch import initial_controls

    problem = two_circles(spec["N"])
    u0 = initial_controls(spec["steps"], problem.nu, SEED, GUESS_SCALE)
    ref = _reference(spec)
    report.update(rss_before_mb=_rss_mb(), budget=spec["budget"], phase="building")

    def built(partial):  # the build time, then IPOPT's progress (kept if the run is killed at its cap)
        if "model_seconds" in partial:
            report.update(build=partial["model_seconds"], phase="solving")
        else:
            report.update(iterations=partial["ipopt_iterations"], solve=partial["solve_seconds_so_far"], **partial)

    out = opti_baseline(problem, spec["T"], spec["steps"], u0,
                        budget_seconds=spec["budget"],
                        reference=None if ref is None else (ref.x, ref.u, ref.cost), progress=built)
    out["total"] = out["build"] + out["solve"]
    if ref is not None:
        out["cross_check"] = {"cost_at_toolbox_solution": out["cost_at_reference"], "toolbox_cost": ref.cost,
                              "relative_difference": (out["cost_at_reference"] - ref.cost) / abs(ref.cost)}
    report.update(**out, phase="done")


def run_torch(spec: dict, report: Report) -> None:
    import torch
    from baseline_torch import TorchNeuralODE, initial_controls, train

    torch.set_num_threads(1)
    problem = two_circles(spec["N"])
    model = TorchNeuralODE(problem, spec["T"], spec["steps"])
    report.update(rss_before_mb=_rss_mb(), budget=spec["budget"], torch=torch.__version__, threads=1,
                  phase="training")
    ref = _reference(spec)
    if ref is not None:
        J, parts = model.cost_at(ref.u)
        rel = (J - ref.cost) / abs(ref.cost)
        report.update(cross_check={"torch_cost_at_toolbox_controls": J, "toolbox_cost": ref.cost,
                                   "relative_difference": rel, "parts": parts})
        if not abs(rel) <= CROSS_CHECK_RTOL:
            raise RuntimeError(f"cross-check failed: torch cost {J!r} at the toolbox's controls differs from "
                               f"sol.cost {ref.cost!r} by {rel:.2e} relative (> {CROSS_CHECK_RTOL:g})")
    target = spec.get("target")
    u0 = initial_controls(spec["steps"], problem.nu, SEED, GUESS_SCALE)
    out = train(model, u0, method=spec["kind"], target=target, budget_seconds=spec["budget"], lr=spec.get("lr", 1e-2))
    report.update(total=out["seconds"], build=0.0, solve=out["seconds"], iterations=out["iterations"],
                  evaluations=out["evaluations"], cost=out["cost"], train_error=out["terminal"], target=target,
                  reached=out["reached"], status=out["stop"], success=out["reached"], settings=out["settings"])


def run_sweep(spec: dict, report: Report) -> None:
    from turnpike.analysis import compare_horizons

    problem = two_circles(spec["N"])
    report.update(rss_before_mb=_rss_mb(), phase="solving")
    start = time.perf_counter()
    study = compare_horizons(problem, spec["horizons"], steps=spec["steps"], method="rk4",
                             seed=spec.get("start_seed", SEED), progress=False)
    total = time.perf_counter() - start
    per = []
    for sol in study.solutions:
        s = sol.stats
        pre = s.get("presolve") or {}
        per.append({"T": sol.T, "success": bool(sol.success), "status": sol.status, "cost": sol.cost,
                    "iterations": s.get("iterations"), "build": s.get("build_seconds", 0.0),
                    "solve": s.get("solve_seconds", 0.0), "presolve": pre.get("seconds", 0.0),
                    "reused_solver": s.get("reused_solver"), "stats": s})
    for row in per:
        row["total"] = row["build"] + row["solve"] + row["presolve"]
    static = study.static.stats
    report.update(total=total, horizons=per, static_success=bool(study.static.success),
                  static_seconds=static.get("build_seconds", 0.0) + static.get("solve_seconds", 0.0),
                  success=bool(study.success), status="all converged" if study.success else "not all converged")


def run_pool_sweep(spec: dict, report: Report) -> None:
    import tempfile

    from scale_jobs import two_circles as factory  # by this module's name, not __main__'s: workers import it

    import turnpike as tp

    report.update(rss_before_mb=_rss_mb(), phase="solving")
    with tempfile.TemporaryDirectory(prefix="pool_sweep_") as out:
        start = time.perf_counter()
        result = tp.sweep(factory, spec["horizons"], out, params={"N": [spec["N"]]}, steps=spec["steps"],
                          seeds=[spec.get("start_seed", SEED)], workers=spec["workers"], figures=False,
                          progress=False)
        total = time.perf_counter() - start
    per = [{"T": row["T"], "success": bool(row["success"]), "status": row["status"], "cost": row["cost"],
            "total": row["total_seconds"]} for row in result.rows]
    report.update(total=total, horizons=per, workers=spec["workers"], success=bool(result.success),
                  status="all converged" if result.success else "not all converged")


JOBS = {"toolbox": run_toolbox, "opti": run_opti, "lbfgs": run_torch, "adam": run_torch, "sweep": run_sweep,
        "pool_sweep": run_pool_sweep, "to_target": run_to_target}


def main(spec_path: str, result_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    report = Report(result_path)
    import turnpike

    report.update(kind=spec["kind"], phase="starting", load_average=os.getloadavg(), toolbox=turnpike.__file__)
    try:
        JOBS[spec["kind"]](spec, report)
    except Exception as exc:  # reported to the parent, which prints it in the table
        report.update(status=f"error: {type(exc).__name__}: {exc}", success=False, error=True)
        raise
    report.update(phase="done", load_average_end=os.getloadavg())
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
