"""Speed and scale of turnpike on neural-ODE learning, against the ways users solve it today (issue #6).

Run (one core; the script sets ``OMP_NUM_THREADS=1`` for every measurement)::

    python benchmarks/bench_scale.py                       # every workload (long: see --cap)
    python benchmarks/bench_scale.py --quick               # small workload and its baselines, runs capped at 120 s
    python benchmarks/bench_scale.py --only medium,sweep   # chosen workloads
    python benchmarks/bench_scale.py --only small --baselines none   # the toolbox alone
    TURNPIKE_THREADS=2 python benchmarks/bench_scale.py --only large --baselines none   # its sample loop on 2 threads

Workloads (all: two circles ``concentric_spheres(N, 2, radii=(1, 2), seed=0)``, inner tanh field,
cost (B) with λ = 1e-2, α = 1, squared loss, RK4, horizon T = 5, random start seed 0):

* ``small`` N = 40, ``medium`` N = 200 (100 steps), ``large`` N = 1000 (200 steps): the toolbox, then
  each baseline on the same problem;
* ``scaling``: the toolbox at N = 100, 200, 400, 800 (100 steps) and at 50, 100, 200 steps (N = 200);
  the fitted exponent ``b`` of ``total seconds ∝ N^b`` (and of steps), from the runs that finished.
  The problem is non-convex and the number of iterations depends on the random start as much as on
  N (at N = 800: 1283 to 2405 L-BFGS iterations over 3 starts), so each point is also solved from the
  random starts 1, ..., ``--seeds`` - 1 (default 5 starts in all) and the exponent is also fitted to the
  medians;
* ``sweep``: ``turnpike.analysis.compare_horizons`` over T = 1, 2, 3, 4, 5, 6, 8, 10 on the medium
  workload with 100 steps for every T; its total time against its longest single solve, read two
  ways: the slowest horizon inside the sweep (warm-started), and a cold solve of the longest horizon
  (T = 10, alone, in its own process, like the other toolbox rows). Which local optima the warm starts
  fall into, and so the time, depends on the first horizon's random start (14.8 to 27.7 s over 5
  starts on 8778a8f), so the sweep is also run from the random starts 1, ..., ``--seeds`` - 1 and the
  medians are reported too. Then the same horizons once more per start with ``turnpike.sweep`` on
  ``--sweep-workers`` (2) local processes: no warm starts, every horizon from that random start, the
  wall time of the whole sweep (its peak memory column is the parent process's only).

What is measured. Every run is a fresh process (``benchmarks/scale_jobs.py``): nothing is cached
between runs, and the peak memory reported is that process's peak resident set size (``ru_maxrss``
from ``wait4``; it includes the interpreter and the imports, given as ``rss_before_mb`` in the JSON).
Times are wall-clock seconds measured inside the process (imports and data excluded): for the toolbox
``total`` is the wall time of ``turnpike.solve``, ``build`` its ``stats["build_seconds"]`` and ``solve``
the rest (presolve included). ``iter`` is the NLP solver's iterations (L-BFGS iterations or Adam
epochs for the torch baselines); the line ``phases`` under a toolbox row splits its time into the
build, the presolve's L-BFGS-B and Newton phases, and IPOPT, which certifies the optimum; the next lines
give what one evaluation of J and its gradient, one Hessian and one Cholesky factorisation cost at the
solution (timed after the solve, see ``scale_jobs.unit_costs``), and from them and the phases' counts
the least time the solve could have taken with the same iterations (under each torch row that reached
its target it is set against the time the issue's 20x asks for).
``train err`` is ``E(x(T)) = (1/N) Σ (x_{i,2}(T) - y_i)²``.

Baselines and caps (see ``baseline_opti.py`` and ``baseline_torch.py`` for exactly what they do):

* ``opti``: a ``casadi.Opti`` model written the obvious way, IPOPT + MUMPS, ``tol = 1e-8``; its
  build + solve is capped at ``--opti-factor`` (25) times the toolbox's total, at most ``--cap``;
* ``lbfgs`` / ``adam``: PyTorch (float64, one thread) training of the same RK4 network until its cost
  is within 1% of the toolbox's (``J <= 1.01 J_toolbox``) or ``--factor`` (10) times the toolbox's
  total has passed, at most ``--cap``. The torch cost at the toolbox's controls must equal
  ``sol.cost`` to 1e-7 relative (checked; the run fails otherwise).

``vs toolbox`` is the baseline's time over the toolbox's (time to the target for torch): ``12x`` means
the toolbox was 12 times faster; ``>=`` marks a baseline stopped by its cap (a lower bound), ``<=`` a
toolbox run stopped by its cap. That ratio compares torch's time to ``J <= 1.01 J_toolbox`` with the
toolbox's time to a certified optimum. Under each torch run that reached the target a second ratio uses
the same criterion for both: the toolbox's time to it (``to_target``: the solve's L-BFGS phase run again
in a job of its own, its build plus its time until J reaches the target, with a check that its iterates
are the solve's). Every run also has a hard cap (the toolbox: ``--cap``; the sweep:
3 ``--cap``; a baseline: its budget plus 30 s for imports and set-up); a run stopped there is reported
``capped``, with whatever it had measured. The table is printed and saved as JSON and CSV
(``--out``), with the git commit and whether the toolbox's files had uncommitted changes.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
JOB_SCRIPT = HERE / "scale_jobs.py"
T = 5.0
SOLVE_WORKLOADS = {"small": (40, 100), "medium": (200, 100), "large": (1000, 200)}  # name: (N, steps)
SCALING_N = (100, 200, 400, 800)  # at 100 steps
SCALING_STEPS = (50, 100, 200)  # at N = 200
SWEEP_HORIZONS = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0)
WORKLOADS = (*SOLVE_WORKLOADS, "scaling", "sweep")
BASELINES = ("opti", "lbfgs", "adam")
TARGET_SLACK = 1.01  # torch stops at J <= 1.01 J_toolbox
TARGET_RATIO = 20.0  # the issue's target on small: 20x faster than each baseline
ADAM_LR = 1e-2


# -- running one measurement in its own process ------------------------------------------------------
def run_job(spec: dict, cap: float, workdir: Path, mem_limit_mb: float) -> dict:
    """Run ``scale_jobs.py`` on ``spec`` in a fresh process, killed after ``cap`` seconds or above ``mem_limit_mb``.

    Returns the job's result dict with ``peak_rss_mb`` (the child's ``ru_maxrss``), ``wall`` (seconds
    including start-up), ``capped`` and, on failure, the end of its stderr.
    """
    name = f"{spec['kind']}_N{spec['N']}_s{spec['steps']}_{len(list(workdir.iterdir()))}"
    spec_path, result_path, log_path = (workdir / f"{name}{ext}" for ext in (".spec.json", ".json", ".log"))
    spec_path.write_text(json.dumps(spec))
    # The toolbox measured is the one of this checkout (HERE.parent), whatever is installed.
    path = os.pathsep.join(p for p in (str(HERE.parent), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "PYTHONPATH": path}
    start = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, str(JOB_SCRIPT), str(spec_path), str(result_path)],
                                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=HERE.parent)
    capped = None
    try:
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid == proc.pid:
                break
            if time.perf_counter() - start > cap:
                capped = f"capped at {cap:.0f} s"
            elif _rss_mb(proc.pid) > mem_limit_mb:
                capped = f"memory cap {mem_limit_mb:.0f} MB"
            if capped:
                proc.send_signal(signal.SIGKILL)
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.2)
    except BaseException:  # interrupted (Ctrl-C, SIGTERM): leave no job running
        proc.kill()
        proc.wait()
        raise
    proc.returncode = os.waitstatus_to_exitcode(status)
    result = json.loads(result_path.read_text()) if result_path.exists() else {}
    result.update(peak_rss_mb=usage.ru_maxrss / 1024, wall=time.perf_counter() - start)
    if capped:
        result.update(capped=True, success=False, status=f"{capped} ({result.get('phase', 'starting')})")
    elif proc.returncode != 0:
        tail = log_path.read_text().strip().splitlines()[-3:]
        result.update(success=False, error=True, status=result.get("status") or f"exit {proc.returncode}: {tail}")
    return result


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


# -- the workloads ------------------------------------------------------------------------------------
class Bench:
    """Runs the selected workloads, collects the rows and prints them as they come."""

    def __init__(self, args, workdir: Path):
        self.args, self.workdir = args, workdir
        self.rows: list[dict] = []
        self.toolbox: dict[tuple[int, int], dict] = {}  # (N, steps) -> toolbox row, reused by scaling/sweep
        self.other_starts: dict[tuple[int, int], list[dict]] = {}  # (N, steps) -> runs from random starts 1, 2, ...
        self.scaling: dict = {}
        self.sweep: dict = {}
        self.cross_checks: list[dict] = []
        print(_header())

    def job(self, kind: str, N: int, steps: int, cap: float, **extra) -> dict:
        spec = {"kind": kind, "N": N, "steps": steps, "T": T, **extra}
        return run_job(spec, cap, self.workdir, self.args.mem_limit_gb * 1024)

    def add(self, workload: str, runner: str, N: int, steps: int, result: dict, ratio: str = "") -> dict:
        row = {"workload": workload, "runner": runner, "N": N, "steps": steps, "T": T, "vs_toolbox": ratio, **result}
        self.rows.append(row)
        print(_format(row), flush=True)
        if runner == "toolbox" and isinstance(row.get("stats"), dict):
            print(f"{'':>18}phases: {_phases(row['stats'])}", flush=True)
            if row.get("unit_costs"):
                row["least"] = _least_time(row)
                print(f"{'':>18}{_unit_costs(row['unit_costs'])}\n{'':>18}{row['least']['text']}", flush=True)
            print(f"{'':>18}stats: {json.dumps(row['stats'], default=str)}", flush=True)
        return row

    def toolbox_run(self, workload: str, N: int, steps: int) -> dict:
        if (N, steps) in self.toolbox:
            return self.toolbox[(N, steps)]
        solution = self.workdir / f"toolbox_N{N}_s{steps}.npz"
        res = self.job("toolbox", N, steps, self.args.cap, save_solution=str(solution))
        # Only a converged solution is a reference (for the targets and the cross-checks).
        res["solution"] = str(solution) if res.get("success") and solution.exists() else None
        row = self.add(workload, "toolbox", N, steps, res)
        self.toolbox[(N, steps)] = row
        return row

    def to_target(self, tb: dict, N: int, steps: int) -> float | None:
        """The toolbox's time to the torch baselines' target (its own job, see ``scale_jobs.run_to_target``),
        printed with the L-BFGS iteration it was reached at; None unless the rerun matched the solve's
        L-BFGS phase and got there."""
        res = self.job("to_target", N, steps, self.args.cap, target=TARGET_SLACK * tb["cost"])
        lbfgs = ((tb.get("stats") or {}).get("presolve") or {}).get("lbfgs") or {}
        same = res.get("lbfgs_iterations") == lbfgs.get("iterations") and res.get("lbfgs_cost") == lbfgs.get("cost")
        reached = res["build"] + res["seconds"] if res.get("seconds") is not None else None
        total = reached if same else None
        tb["to_target"] = {**res, "same_iterates": same, "total": total}
        when = "not in the L-BFGS phase" if reached is None else (
            f"L-BFGS iteration {res['iteration']}, {res['seconds']:.2f} s + build {res['build']:.2f} s "
            f"= {reached:.2f} s")
        print(f"{'':>18}to the torch target (J <= {res.get('target', float('nan')):.6g}), in a job of its own: "
              f"{when} (the solve's L-BFGS iterates: {'same' if same else 'NOT the same'})", flush=True)
        return total

    def solve_workload(self, workload: str) -> None:
        N, steps = SOLVE_WORKLOADS[workload]
        tb = self.toolbox_run(workload, N, steps)
        to_target = self.to_target(tb, N, steps) if tb.get("solution") and set(self.args.baselines) - {"opti"} else None
        finished = "total" in tb and not tb.get("capped") and not tb.get("error")
        tb_time = tb["total"] if finished else None
        target = TARGET_SLACK * tb["cost"] if tb.get("solution") else None
        for runner in self.args.baselines:
            factor = self.args.opti_factor if runner == "opti" else self.args.factor
            budget = min(factor * tb_time, self.args.cap) if tb_time else self.args.cap
            extra = {"budget": budget, "reference": tb.get("solution")}
            if runner != "opti":
                extra.update(target=target, lr=ADAM_LR)
            res = self.job(runner, N, steps, budget + 30.0, **extra)  # 30 s of grace for imports and set-up
            res["budget_rule"] = (f"min({factor:g} x toolbox, cap {self.args.cap:g} s)" if tb_time
                                  else f"cap {self.args.cap:g} s (no toolbox time)")
            row = self.add(workload, runner, N, steps, res, _ratio(res, tb, runner))
            if runner != "opti" and to_target and res.get("reached"):
                row["vs_toolbox_to_target"] = res["total"] / to_target
                print(f"{'':>18}against the toolbox's time to the same target ({to_target:.2f} s): "
                      f"{row['vs_toolbox_to_target']:.1f}x", flush=True)
            if runner != "opti" and res.get("reached") and tb.get("least"):
                print(f"{'':>18}{TARGET_RATIO:g}x needs the toolbox's certified optimum in "
                      f"{res['total'] / TARGET_RATIO:.2f} s; the least time of its solve above is "
                      f"{tb['least']['total']:.2f} s", flush=True)
            if row.get("cross_check"):
                self.cross_checks.append({"workload": workload, "runner": runner, **row["cross_check"]})
                cc = row["cross_check"]
                print(f"{'':>18}cross-check: cost at the toolbox's solution {_first(cc):.12g} vs sol.cost "
                      f"{cc['toolbox_cost']:.12g}, relative difference {cc['relative_difference']:.2e}", flush=True)

    def scaling_workload(self) -> None:
        series = {"N": [(N, 100) for N in SCALING_N], "steps": [(200, s) for s in SCALING_STEPS]}
        for var, points in series.items():
            runs, stopped = [], None
            for N, steps in points:
                if stopped:
                    runs.append({"N": N, "steps": steps, "skipped": f"skipped: {stopped}"})
                    print(f"{'scaling':<9}{'toolbox':<9}{N:>6}{steps:>6}  skipped: {stopped}", flush=True)
                    continue
                row = self.toolbox_run("scaling", N, steps)
                if (N, steps) not in self.other_starts:  # (200, 100) is in both series
                    self.other_starts[(N, steps)] = [self.job("toolbox", N, steps, self.args.cap, start_seed=seed)
                                                     for seed in range(1, self.args.seeds)]
                by_seed = [row, *self.other_starts[(N, steps)]]
                totals = [r.get("total") if _finished(r) else None for r in by_seed]
                median = _median(totals)
                print(f"{'':>18}N = {N}, {steps} steps, random starts 0-{self.args.seeds - 1}: total "
                      f"{', '.join(_num(t, '.2f') for t in totals)} s; median {_num(median, '.2f')} s; L-BFGS "
                      f"{', '.join(str(_presolve(r, 'lbfgs')) for r in by_seed)} its, Newton "
                      f"{', '.join(str(_presolve(r, 'newton')) for r in by_seed)} its", flush=True)
                runs.append({"N": N, "steps": steps, "total": row.get("total"), "build": row.get("build"),
                             "solve": row.get("solve"), "success": row.get("success"), "capped": row.get("capped"),
                             "totals_by_seed": totals, "median_total": median})
                if row.get("capped") or row.get("error"):
                    stopped = f"a smaller {var} did not finish"
            medians = [r for r in runs if r.get("median_total")]
            exponent_median = _slope([r[var] for r in medians], [r["median_total"] for r in medians])
            self.scaling[var] = {"runs": runs, **_fit(runs, var), "exponent_median": exponent_median}
            fit = self.scaling[var]
            used = ", ".join(str(v) for v in fit["used"])
            print(f"scaling: total seconds ~ {var}^{_num(fit['exponent'], '.2f')} "
                  f"(fit of log time on log {var} over {var} = {used or 'none'}; build ~ {var}^"
                  f"{_num(fit['exponent_build'], '.2f')}, solve ~ {var}^{_num(fit['exponent_solve'], '.2f')}); "
                  f"median over {self.args.seeds} random starts ~ {var}^{_num(fit['exponent_median'], '.2f')}",
                  flush=True)

    def sweep_workload(self) -> None:
        N, steps = SOLVE_WORKLOADS["medium"]
        res = self.job("sweep", N, steps, 3 * self.args.cap, horizons=list(SWEEP_HORIZONS))
        per = res.get("horizons") or []
        longest = max((h["total"] for h in per), default=None)
        res["longest_single_seconds"] = longest
        res["ratio_to_longest"] = res["total"] / longest if longest and "total" in res else None
        for h in per:
            print(f"{'':>18}T = {h['T']:>4g}: {'ok' if h['success'] else 'NO':<3} cost {h['cost']:<10.6g} "
                  f"iter {h['iterations']!s:>5}  build {h['build']:7.2f} s  presolve {h['presolve']:7.2f} s  "
                  f"solve {h['solve']:7.2f} s  reused solver {h['reused_solver']}", flush=True)
        res.update(iterations=sum(h["iterations"] or 0 for h in per), steps=steps)
        self.add("sweep", "toolbox", N, steps, res)
        starts = [res, *(self.job("sweep", N, steps, 3 * self.args.cap, horizons=list(SWEEP_HORIZONS), start_seed=seed)
                         for seed in range(1, self.args.seeds))]
        cold = self.toolbox.get((N, steps))
        alone = self.job("toolbox", N, steps, self.args.cap, T=SWEEP_HORIZONS[-1])
        alone_total = alone.get("total") if alone.get("success") and not alone.get("capped") else None
        ratio_alone = res["total"] / alone_total if alone_total and "total" in res else None
        self.sweep = {"total": res.get("total"), "longest_single_in_sweep": longest,
                      "ratio_to_longest": res["ratio_to_longest"], "horizons": per, "status": res.get("status"),
                      "capped": res.get("capped", False), "longest_alone": alone, "ratio_to_longest_alone": ratio_alone,
                      "cold_medium_T5_total": cold.get("total") if cold else None,
                      **_over_starts(starts, alone_total), "other_starts": starts[1:]}
        print(f"sweep: {len(SWEEP_HORIZONS)} horizons in {_num(res.get('total'), '.1f')} s; longest single solve in "
              f"the sweep {_num(longest, '.1f')} s (build + presolve + solve): ratio "
              f"{_num(res['ratio_to_longest'], '.2f')} (target <= 3); T = {SWEEP_HORIZONS[-1]:g} solved alone "
              f"(cold, {alone.get('status')}, cost {_num(alone.get('cost'), '.6g')}) "
              f"{_num(alone.get('total'), '.1f')} s: ratio {_num(ratio_alone, '.2f')}"
              + (f"; a cold solve of the medium workload (T = 5) took {_num(cold.get('total'), '.1f')} s"
                 if cold else ""), flush=True)
        if len(starts) > 1:
            _print_starts("sweep", self.sweep)
        if self.args.sweep_workers > 1:
            self.sweep["pool"] = self.pool_sweeps(N, steps, alone_total)

    def pool_sweeps(self, N: int, steps: int, alone_total: float | None) -> dict:
        """The sweep's horizons on ``--sweep-workers`` processes, cold from each random start."""
        workers = self.args.sweep_workers
        runs = [self.job("pool_sweep", N, steps, 3 * self.args.cap, horizons=list(SWEEP_HORIZONS), workers=workers,
                         start_seed=seed) for seed in range(self.args.seeds)]
        res = runs[0]
        res.update(iterations=None, steps=steps)
        for h in res.get("horizons") or []:
            print(f"{'':>18}T = {h['T']:>4g}: {'ok' if h['success'] else 'NO':<3} cost {h['cost']:<10.6g} "
                  f"total {h['total']:7.2f} s (cold)", flush=True)
        self.add("sweep", f"{workers} procs", N, steps, res)
        pool = {"workers": workers, **_over_starts(runs, alone_total), "runs": runs}
        _print_starts(f"sweep on {workers} processes (turnpike.sweep, cold starts)", pool)
        return pool


# -- formatting ---------------------------------------------------------------------------------------
_COLUMNS = ("workload", "runner", "N", "steps", "build", "solve", "total", "iterations", "cost", "train_error",
            "peak_rss_mb", "success", "status", "vs_toolbox")


def _header() -> str:
    head = (f"{'workload':<9}{'runner':<9}{'N':>6}{'steps':>6}{'build s':>9}{'solve s':>9}{'total s':>9}"
            f"{'iter':>7}{'cost':>11}{'train err':>11}{'peak MB':>9}  {'ok':<4}{'status':<40}{'vs toolbox':>11}")
    return head + "\n" + "-" * len(head)


def _num(value, fmt: str) -> str:
    """``format(value, fmt)``, or a dash of the same width for a missing number."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        width = "".join(c for c in fmt.split(".")[0] if c.isdigit())
        return "—".rjust(int(width or 0))
    return format(value, fmt)


def _format(r: dict) -> str:
    ok = "yes" if r.get("success") else "no"
    return (f"{r['workload']:<9}{r['runner']:<9}{r['N']:>6}{r['steps']:>6}{_num(r.get('build'), '9.2f')}"
            f"{_num(r.get('solve'), '9.2f')}{_num(r.get('total'), '9.2f')}{_num(r.get('iterations'), '7d')}"
            f"{_num(r.get('cost'), '11.6g')}{_num(r.get('train_error'), '11.3g')}{_num(r.get('peak_rss_mb'), '9.0f')}"
            f"  {ok:<4}{str(r.get('status', ''))[:39]:<40}{r.get('vs_toolbox', ''):>11}")


def _first(cc: dict) -> float:
    return cc.get("torch_cost_at_toolbox_controls", cc.get("cost_at_toolbox_solution"))


def _ratio(res: dict, tb: dict, runner: str) -> str:
    """Baseline time over toolbox time, with >= / <= where a cap makes it a bound."""
    tb_done = "total" in tb and not tb.get("capped") and not tb.get("error")
    tb_time = tb.get("total") if tb_done else tb.get("wall")
    done = res.get("success") and not res.get("capped")
    time_ = res.get("total") if "total" in res else res.get("wall")
    if not tb_time or not time_ or res.get("error"):
        return "n/a"
    ratio = time_ / tb_time
    if done and tb_done:
        return f"{ratio:.1f}x"
    if tb_done and (res.get("capped") or res.get("status") == "budget"):
        return f">={ratio:.1f}x"
    if done and not tb_done:
        return f"<={ratio:.1f}x"
    if tb_done:  # stopped by itself without success: torch stalled above the target, or IPOPT failed
        return "never" if runner != "opti" else "failed"
    return "n/a"


def _phases(stats: dict) -> str:
    """Where a toolbox solve spent its time: the presolve's phases, then the NLP solver."""
    pre, parts = stats.get("presolve") or {}, [f"build {stats.get('build_seconds', 0.0):.2f} s"]
    for key, name in (("lbfgs", "L-BFGS-B"), ("newton", "Newton")):
        if key in pre:
            parts.append(f"{name} {pre[key]['iterations']} its {pre[key]['seconds']:.2f} s")
    if "newton" in pre:
        newton = pre["newton"]
        parts[-1] += (f" ({newton.get('hessians', newton['iterations'])} Hessians, "
                      f"{newton.get('negative_curvature', 0)} steps along negative curvature, last Hessian "
                      f"{'positive definite' if newton['positive_definite'] else 'indefinite'})")
    parts.append(f"IPOPT {stats.get('iterations')} its {stats.get('solve_seconds', 0.0):.2f} s")
    return ", ".join(parts)


def _unit_costs(costs: dict) -> str:
    cholesky = costs.get("cholesky_ms")
    return (f"unit costs at the solution: J and its gradient {costs['evaluation_ms']:.3f} ms (the compiled "
            f"ensemble loop {costs['ensemble_ms']:.3f} ms of it), Hessian {costs['hessian_ms']:.1f} ms, its Cholesky "
            + (f"{cholesky:.1f} ms" if cholesky is not None else "n/a (not positive definite)"))


def _least_time(row: dict) -> dict:
    """The least time each phase could have taken at the measured unit costs (``scale_jobs.unit_costs``):
    an evaluation per L-BFGS-B evaluation and Newton evaluation, a Hessian and one factorisation per
    Newton Hessian (a regularised one needs two or more), the build and IPOPT as measured."""
    stats, costs = row["stats"], row["unit_costs"]
    pre = stats.get("presolve") or {}
    lbfgs, newton = pre.get("lbfgs") or {}, pre.get("newton") or {}
    evaluation = costs["evaluation_ms"] / 1e3
    least_lbfgs = lbfgs.get("evaluations", 0) * evaluation
    least_newton = (newton.get("evaluations", 0) * evaluation
                    + newton.get("hessians", 0) * (costs["hessian_ms"] + (costs["cholesky_ms"] or 0.0)) / 1e3)
    fixed = stats.get("build_seconds", 0.0) + stats.get("solve_seconds", 0.0)
    least = fixed + least_lbfgs + least_newton
    text = (f"least time at these costs: L-BFGS-B {lbfgs.get('evaluations', 0)} evaluations {least_lbfgs:.2f} s "
            f"(took {lbfgs.get('seconds', 0.0):.2f} s), Newton {newton.get('evaluations', 0)} evaluations and "
            f"{newton.get('hessians', 0)} Hessians with a factorisation each {least_newton:.2f} s (took "
            f"{newton.get('seconds', 0.0):.2f} s); with the build and IPOPT as measured {least:.2f} s "
            f"(took {row['total']:.2f} s)")
    return {"lbfgs": least_lbfgs, "newton": least_newton, "total": least, "text": text}


def _finished(row: dict) -> bool:
    return bool(row.get("success")) and not row.get("capped") and not row.get("error") and bool(row.get("total"))


def _presolve(row: dict, phase: str):
    """The iterations of a toolbox run's presolve phase (``lbfgs`` or ``newton``), or a dash."""
    return ((row.get("stats") or {}).get("presolve") or {}).get(phase, {}).get("iterations", "—")


def _median(values: list) -> float | None:
    """The median of the runs' figures, or None if a run did not finish (its figure is None)."""
    return float(np.median(values)) if values and None not in values else None


def _over_starts(runs: list[dict], alone_total: float | None) -> dict:
    """A sweep's runs from random starts 0, 1, ...: each total, its ratio to the run's slowest horizon, the
    medians, and the median total over the longest horizon solved alone (``alone_total``)."""
    totals = [r.get("total") if _finished(r) else None for r in runs]
    ratios = [t / max(h["total"] for h in r["horizons"]) if t else None for t, r in zip(totals, runs, strict=True)]
    median_total = _median(totals)
    return {"totals_by_seed": totals, "ratios_to_longest_by_seed": ratios, "median_total": median_total,
            "median_ratio_to_longest": _median(ratios),
            "median_ratio_to_longest_alone": median_total / alone_total if median_total and alone_total else None}


def _print_starts(label: str, starts: dict) -> None:
    totals, ratios = starts["totals_by_seed"], starts["ratios_to_longest_by_seed"]
    print(f"{label} from random starts 0-{len(totals) - 1}: totals {', '.join(_num(t, '.1f') for t in totals)} s "
          f"(median {_num(starts['median_total'], '.1f')}); ratios to their slowest horizon "
          f"{', '.join(_num(r, '.2f') for r in ratios)} (median {_num(starts['median_ratio_to_longest'], '.2f')}); "
          f"median total over T = {SWEEP_HORIZONS[-1]:g} alone {_num(starts['median_ratio_to_longest_alone'], '.2f')}",
          flush=True)


def _slope(x: list, y: list) -> float | None:
    """Least-squares slope of log y on log x (None with fewer than 2 points or a y <= 0)."""
    y = np.array(y, dtype=float)
    if len(x) < 2 or not np.all(y > 0):
        return None
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def _fit(runs: list[dict], var: str) -> dict:
    """Slopes of log seconds (total, build, solve) on log ``var`` over the runs that converged uncapped."""
    ok = [r for r in runs if _finished(r)]
    x = [r[var] for r in ok]
    return {"used": x, **{key: _slope(x, [r[part] for r in ok]) for key, part in
                          (("exponent", "total"), ("exponent_build", "build"), ("exponent_solve", "solve"))}}


# -- provenance and files -----------------------------------------------------------------------------
def provenance() -> dict:
    """The commit, whether the code measured differs from it, and the machine."""

    def git(*cmd):
        return subprocess.run(["git", *cmd], capture_output=True, text=True, cwd=HERE.parent).stdout.strip()

    changed = git("status", "--porcelain", "--", "turnpike", "problems").splitlines()
    versions = {}
    for mod in ("casadi", "numpy", "scipy", "torch"):
        try:
            versions[mod] = __import__(mod).__version__
        except ImportError:
            versions[mod] = None
    return {"commit": git("rev-parse", "HEAD"), "commit_short": git("rev-parse", "--short", "HEAD"),
            "uncommitted_changes_in_toolbox": changed, "python": platform.python_version(),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores", "versions": versions,
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "load_average": os.getloadavg()}


def save(out: Path, payload: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(payload, indent=1, default=str))
    with open(out.with_suffix(".csv"), "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=[*_COLUMNS, "capped", "budget", "reached", "stats"],
                                extrasaction="ignore")
        writer.writeheader()
        for row in payload["rows"]:
            writer.writerow({**row, "stats": json.dumps(row.get("stats"), default=str) if row.get("stats") else ""})


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default=None, help=f"comma-separated workloads out of {','.join(WORKLOADS)}")
    p.add_argument("--quick", action="store_true", help="the small workload (unless --only), every run capped at 120 s")
    p.add_argument("--baselines", default=",".join(BASELINES), help="comma-separated out of opti,lbfgs,adam, or none")
    p.add_argument("--cap", type=float, default=600.0, help="seconds: hard cap of a toolbox run, and of any budget")
    p.add_argument("--seeds", type=int, default=5,
                   help="random starts per scaling point and of the sweep (the medians are reported too)")
    p.add_argument("--sweep-workers", type=int, default=2,
                   help="processes of the parallel sweep (turnpike.sweep); 1 skips it")
    p.add_argument("--factor", type=float, default=10.0, help="torch budget in multiples of the toolbox's time")
    p.add_argument("--opti-factor", type=float, default=25.0, help="Opti budget in multiples of the toolbox's time")
    p.add_argument("--mem-limit-gb", type=float, default=16.0, help="kill a run whose resident memory exceeds this")
    p.add_argument("--out", default=None, help="results path, no suffix (default benchmarks/results/scale[_WORKLOADS])")
    args = p.parse_args(argv)
    if args.seeds < 1:
        p.error(f"--seeds must be >= 1, got {args.seeds}")
    if args.quick:
        args.cap = min(args.cap, 120.0)
    selected = args.only.split(",") if args.only else (["small"] if args.quick else list(WORKLOADS))
    unknown = [w for w in selected if w not in WORKLOADS]
    if unknown:
        p.error(f"unknown workloads {unknown}; choose from {', '.join(WORKLOADS)}")
    args.workloads = [w for w in WORKLOADS if w in selected]  # in the canonical order
    args.baselines = [] if args.baselines == "none" else args.baselines.split(",")
    if any(b not in BASELINES for b in args.baselines):
        p.error(f"--baselines must be 'none' or a comma-separated subset of {','.join(BASELINES)}")
    if args.out is None:
        suffix = "" if args.workloads == list(WORKLOADS) else "_" + "_".join(args.workloads)
        args.out = str(HERE / "results" / f"scale{suffix}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that a killed benchmark stops its job too
    info = provenance()
    dirty = info["uncommitted_changes_in_toolbox"]
    print(f"turnpike scale benchmark on commit {info['commit_short']}"
          + (f" PLUS uncommitted changes in {len(dirty)} toolbox files" if dirty else " (toolbox files clean)")
          + f"; toolbox imported from {HERE.parent}\n{info['machine']}, python {info['python']}, "
            f"casadi {info['versions']['casadi']}, "
            f"torch {info['versions']['torch'] or 'not installed'}; OMP_NUM_THREADS=1, torch 1 thread, float64, "
            f"turnpike's ensemble loop {os.environ.get('TURNPIKE_THREADS', '1')} thread(s); "
            f"load average {', '.join(f'{v:.1f}' for v in info['load_average'])}")
    print(f"workloads {','.join(args.workloads)}; baselines {','.join(args.baselines) or 'none'}; cap {args.cap:g} s, "
          f"torch budget {args.factor:g}x toolbox, Opti budget {args.opti_factor:g}x toolbox, Adam lr {ADAM_LR:g}")
    if info["versions"]["torch"] is None and any(b in args.baselines for b in ("lbfgs", "adam")):
        print("note: PyTorch is not installed (pip install -e '.[bench]'): the torch baselines are skipped")
        args.baselines = [b for b in args.baselines if b == "opti"]
    with tempfile.TemporaryDirectory(prefix="bench_scale_") as tmp:
        bench = Bench(args, Path(tmp))
        for workload in args.workloads:
            if workload in SOLVE_WORKLOADS:
                bench.solve_workload(workload)
            elif workload == "scaling":
                bench.scaling_workload()
            else:
                bench.sweep_workload()
    print()
    print(f"summary (commit {info['commit_short']}{', toolbox files modified' if dirty else ''}):")
    print(_header())
    for row in bench.rows:
        print(_format(row))
    info["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    payload = {**info, "settings": {k: v for k, v in vars(args).items()}, "T": T, "rows": bench.rows,
               "scaling": bench.scaling, "sweep": bench.sweep, "cross_checks": bench.cross_checks}
    save(Path(args.out), payload)
    print(f"saved {args.out}.json and {args.out}.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
