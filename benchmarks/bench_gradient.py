"""The compiled ensemble gradient and Hessian-vector product: their backward pass with the stage's tanh and exp
values kept, against CasADi's reverse mode of the stage (which evaluates the stage again), in the same run.

Run:  python benchmarks/bench_gradient.py           (one thread: TURNPIKE_THREADS=1 is set here)

:func:`turnpike.compiled.ensemble_gradient` computes J and ∇_u J of an ensemble by the discrete adjoint. Its
forward pass keeps the states and the values of the stage's tanh and exp operations, and its backward pass
reads them (``keep=True``, the default, see ``turnpike.compiled._reverse_mode``); ``keep=False`` keeps the
states only and evaluates CasADi's reverse mode of the stage, which evaluates the stage again. This script
times both loops (median of 5 runs of ``reps`` calls, after one warm-up call) and checks that they give the
same J and gradient (1e-12 relative); and so for the exact Hessian-vector product
(:func:`turnpike.hessian_vector.ensemble_hessian_vector`, forward over reverse mode over the integrator's
stages, ``keep`` likewise; a seeded direction; the same product to 1e-12) on the chessboard cases; on

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
from turnpike.compiled import _reverse_mode, ensemble_gradient  # noqa: E402
from turnpike.hessian_vector import ensemble_hessian_vector  # noqa: E402
from turnpike.reduced import recursion_stage, substep_recursion  # noqa: E402
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
    header = f"{'case':<34} {'nx':>3} {'nu':>5} {'kept':>5} {'values kept ms':>15} {'stage again ms':>15} {'ratio':>6}"
    print("gradient (J and its gradient, one call)\n" + header)
    for label, make, steps in CASES:
        prob = make()
        stage, terminal, _ = recursion_stage(prob, stage_function(prob, "rk4"))
        loops = {keep: ensemble_gradient(stage, terminal, keep) for keep in (True, False)}
        _row(label, prob, loops, (prob.x0_samples, *_controls(prob, steps)), _reverse_mode(stage)[0].nnz_out(2))
    print("\nHessian-vector product (J, its gradient and the product, one call)\n" + header)
    for label, make, steps in CASES:
        if label.startswith("chessboard"):
            prob = make()
            substep, terminal, z0, coefficients = substep_recursion(prob, "rk4")
            loops = {keep: ensemble_hessian_vector(substep, terminal, coefficients, keep) for keep in (True, False)}
            v = np.random.default_rng(1).standard_normal((steps, prob.nu))
            kept = coefficients.shape[0] * _reverse_mode(substep)[0].nnz_out(2)  # per interval: its stages' values
            _row(label, prob, loops, (z0, *_controls(prob, steps), v), kept)


def _controls(prob, steps: int) -> tuple:
    """Seeded controls, the data and the step: the arguments after the initial states."""
    u = 0.5 * np.random.default_rng(0).standard_normal((steps, prob.nu))
    return u, prob.data_values.reshape(prob.n_samples, prob.ny), 5.0 / steps


def _row(label: str, prob, loops: dict, args: tuple, kept: int) -> None:
    """Time both loops on ``args``, after checking they agree."""
    if any(loop is None for loop in loops.values()):
        raise SystemExit("no C compiler: nothing to compare (the interpreted path is used)")
    with_values, again = (loops[keep](*args) for keep in (True, False))
    for a, b in zip(with_values, again, strict=True):
        if np.max(np.abs(np.subtract(a, b))) > 1e-12 * np.max(np.abs(b)):
            raise SystemExit(f"{label}: the two loops disagree")
    reps = max(3, int(100_000 / (prob.n_samples * args[1].shape[0])))
    t = {keep: milliseconds(loops[keep], args, reps) for keep in (True, False)}
    print(f"{label:<34} {prob.nx:>3} {prob.nu:>5} {kept:>5} {t[True]:>15.3f} {t[False]:>15.3f} "
          f"{t[False] / t[True]:>6.2f}", flush=True)


if __name__ == "__main__":
    main()
