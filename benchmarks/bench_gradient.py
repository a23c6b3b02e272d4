"""The compiled ensemble gradient: its backward pass with the stage's tanh and exp values kept, against CasADi's
reverse mode of the stage (which evaluates the stage again), in the same run.

Run:  python benchmarks/bench_gradient.py           (one thread: TURNPIKE_THREADS=1 is set here)

:func:`turnpike.compiled.ensemble_gradient` computes J and ∇_u J of an ensemble by the discrete adjoint. Its
forward pass keeps the states and the values of the stage's tanh and exp operations, and its backward pass
reads them (``keep=True``, the default, see ``turnpike.compiled._reverse_mode``); ``keep=False`` keeps the
states only and evaluates CasADi's reverse mode of the stage, which evaluates the stage again. This script
times both loops (median of 5 runs of ``reps`` calls, after one warm-up call) and checks that they give the
same J and gradient (1e-12 relative), on

* the two-circles data with the inner tanh field (cost (B), RK4, T = 5, seeded controls), d = 2, 3, 4, 8;
* the chessboard network of ``bench_width.py`` (2397 points, the bottleneck field ``W2 σ(W1 x + b1) + b2``,
  one augmented coordinate, RK4, T = 5, 16 steps), tanh at widths 16, 50 and 200, and softplus and ReLU at
  width 50 (softplus is ``log(1 + exp(z))``: its exp is kept; ReLU has no transcendental to keep).
"""

from __future__ import annotations

import os

os.environ.setdefault("TURNPIKE_THREADS", "1")

import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_width import chessboard_problem  # noqa: E402

from problems.neural_ode import NeuralODEClassification  # noqa: E402
from turnpike.compiled import ensemble_gradient  # noqa: E402
from turnpike.reduced import recursion_stage  # noqa: E402
from turnpike.transcription import stage_function  # noqa: E402

# (label, problem factory, steps)
CASES = [(f"two circles, d = {d}, N = {N}", lambda N=N, d=d: NeuralODEClassification.example(n_points=N, d=d), steps)
         for N, steps, d in [(40, 100, 2), (40, 100, 3), (40, 100, 4), (40, 100, 8), (1000, 200, 2)]]
CASES += [(f"chessboard, {activation}, width {width}", lambda a=activation, w=width: chessboard_problem(a, w)[0], 16)
          for activation, width in [("tanh", 16), ("tanh", 50), ("tanh", 200), ("softplus", 50), ("relu", 50)]]


def milliseconds(fn, args, reps: int) -> float:
    fn(*args)
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(reps):
            fn(*args)
        runs.append((time.perf_counter() - start) / reps * 1e3)
    return float(np.median(runs))


def main() -> None:
    print(f"{'case':<34} {'nx':>3} {'nu':>5} {'kept':>5} {'values kept ms':>15} {'stage again ms':>15} {'ratio':>6}")
    for label, make, steps in CASES:
        prob = make()
        stage, terminal, _ = recursion_stage(prob, stage_function(prob, "rk4"))
        loops = {keep: ensemble_gradient(stage, terminal, keep) for keep in (True, False)}
        if any(loop is None for loop in loops.values()):
            raise SystemExit("no C compiler: nothing to compare (the interpreted path is used)")
        u = 0.5 * np.random.default_rng(0).standard_normal((steps, prob.nu))
        N = prob.n_samples
        args = (prob.x0_samples, u, prob.data_values.reshape(N, prob.ny), 5.0 / steps)
        (J1, g1), (J0, g0) = (loops[keep](*args) for keep in (True, False))
        if abs(J1 - J0) > 1e-12 * abs(J0) or np.max(np.abs(g1 - g0)) > 1e-12 * np.max(np.abs(g0)):
            raise SystemExit(f"{label}: the two loops disagree (J {J1} against {J0})")
        reps = max(3, int(100_000 / (N * steps)))
        t = {keep: milliseconds(loops[keep], args, reps) for keep in (True, False)}
        kept = _kept_values(stage)
        print(f"{label:<34} {prob.nx:>3} {prob.nu:>5} {kept:>5} {t[True]:>15.3f} {t[False]:>15.3f} "
              f"{t[False] / t[True]:>6.2f}", flush=True)


def _kept_values(stage) -> int:
    """How many values per sample and step the forward pass keeps besides the state."""
    from turnpike.compiled import _reverse_mode

    return _reverse_mode(stage)[0].nnz_out(2)


if __name__ == "__main__":
    main()
