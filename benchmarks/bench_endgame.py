"""The endgame of a wide network: why the chessboard network is not certified in five minutes, and the
Hessian-vector product's library compiled during L-BFGS-B.

Run (one core: ``OMP_NUM_THREADS=1``, ``TURNPIKE_THREADS=1``)::

    python benchmarks/bench_endgame.py                      # both parts (about 8 minutes)
    python benchmarks/bench_endgame.py --only curvature      # part 1
    python benchmarks/bench_endgame.py --only background    # part 2

Part 1, ``curvature``: the chessboard of ``bench_width.py`` (2397 training points, bottleneck of width 50, 16
RK4 steps, T = 5, cost (B)) with tanh. L-BFGS-B (the presolve's settings: memory 20, no relative-decrease
stop) from ``turnpike.solve``'s seeded start for ``--iterations`` iterations, printing ``‖∇J‖∞`` every 500;
then, at its end point, conjugate gradients on ``H d = -∇J`` (exact Hessian-vector products), plain and
preconditioned by L-BFGS-B's own inverse-Hessian approximation (its last 20 pairs), until a direction of
non-positive curvature ``pᵀHp <= 0`` or 300 products: the products spent and the quadratic model
``gᵀd + dᵀHd/2`` every 50.

Part 2, ``background``: width 200, N = 1000 of the same data, a fresh compilation cache (a temporary
directory): the build of ``ReducedSpace``, then ``--background-iterations`` L-BFGS-B iterations inside
``ReducedSpace.hessian_vector_compiling`` (the product's library compiling meanwhile), the wait at the block's
end, and the first Hessian-vector product after it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TURNPIKE_THREADS", "1")

import numpy as np  # noqa: E402
from scipy.optimize import minimize  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from bench_width import STEPS, T, chessboard_problem  # noqa: E402

from turnpike.reduced import ReducedSpace  # noqa: E402
from turnpike.solve import _random_controls  # noqa: E402


def conjugate_gradients(product, g: np.ndarray, precondition, max_products: int = 300) -> None:
    """CG (preconditioned by ``precondition``) on ``H d = -g`` until ``pᵀHp <= 0`` or ``max_products``; prints."""
    d, r = np.zeros_like(g), g.copy()
    z = precondition(r)
    p, rz = -z, float(r @ z)
    start = time.perf_counter()
    for k in range(1, max_products + 1):
        Hp = product(p)
        curvature = float(p @ Hp)
        if curvature <= 0:
            print(f"    non-positive curvature pᵀHp = {curvature:.2e} at product {k} "
                  f"({time.perf_counter() - start:.0f} s)")
            return
        alpha = rz / curvature
        d, r = d + alpha * p, r + alpha * Hp
        z = precondition(r)
        rz_new = float(r @ z)
        p, rz = -z + (rz_new / rz) * p, rz_new
        if k % 50 == 0:
            model = float(g @ d + 0.5 * d @ product(d))
            print(f"    product {k}: |d| {np.linalg.norm(d):.3e}, model {model:.3e}, "
                  f"residual/|g| {np.linalg.norm(r) / np.linalg.norm(g):.2e}", flush=True)
    print(f"    no non-positive curvature in {max_products} products")


def curvature_part(iterations: int) -> None:
    problem, _, _ = chessboard_problem("tanh", 50)
    rs = ReducedSpace(problem, STEPS, "rk4")
    p, shape = rs.parameters(T), (STEPS, rs.n_v)
    print(f"chessboard, tanh, width 50, {problem.n_samples} points: L-BFGS-B for {iterations} iterations", flush=True)
    count, start = [0], time.perf_counter()

    def watch(intermediate_result):  # scipy passes its OptimizeResult to a parameter of this name
        count[0] += 1
        if count[0] % 500 == 0:
            g = rs._value_and_gradient(np.array(intermediate_result.x), p)[1]
            print(f"  iteration {count[0]}: J {intermediate_result.fun:.10f}, |grad J|inf {np.abs(g).max():.2e}, "
                  f"{time.perf_counter() - start:.0f} s", flush=True)

    u0 = _random_controls(problem, STEPS, 0, 0.1).reshape(-1)
    res = minimize(lambda v: rs._value_and_gradient(v, p), u0, jac=True, method="L-BFGS-B", callback=watch,
                   options={"maxiter": iterations, "ftol": 0.0, "gtol": 1e-10, "maxcor": 20})
    g = rs._value_and_gradient(res.x, p)[1]

    def product(v):
        return rs.hessian_vector(res.x.reshape(shape), p, v.reshape(shape)).reshape(-1)

    for name, precondition in (("plain", lambda r: r), ("preconditioned by L-BFGS-B's pairs", res.hess_inv.matvec)):
        print(f"  conjugate gradients on H d = -grad J, {name}:")
        conjugate_gradients(product, g, precondition)


def background_part(iterations: int) -> None:
    with tempfile.TemporaryDirectory() as cache:
        os.environ["TURNPIKE_CACHE"] = cache
        problem, _, _ = chessboard_problem("tanh", 200, 1000)
        start = time.perf_counter()
        rs = ReducedSpace(problem, STEPS, "rk4")
        built = time.perf_counter()
        print(f"width 200, N = 1000, fresh cache: build {built - start:.1f} s", flush=True)
        u0 = _random_controls(problem, STEPS, 0, 0.1).reshape(-1)
        p = rs.parameters(T)
        with rs.hessian_vector_compiling():
            written = time.perf_counter()
            minimize(lambda v: rs._value_and_gradient(v, p), u0, jac=True, method="L-BFGS-B",
                     options={"maxiter": iterations, "ftol": 0.0, "gtol": 1e-10, "maxcor": 20})
            descended = time.perf_counter()
        waited = time.perf_counter()
        rs.hessian_vector(u0.reshape(STEPS, -1), p, np.ones((STEPS, rs.n_v)))
        first = time.perf_counter()
        print(f"  product's code written {written - built:.2f} s; {iterations} L-BFGS-B iterations "
              f"{descended - written:.1f} s; wait at the block's end {waited - descended:.2f} s; first product "
              f"{first - waited:.2f} s ({rs.hessian_vector_method})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="curvature,background", help="parts: curvature, background")
    parser.add_argument("--iterations", type=int, default=3000, help="L-BFGS-B iterations of part 1")
    parser.add_argument("--background-iterations", type=int, default=250, help="L-BFGS-B iterations of part 2")
    args = parser.parse_args()
    parts = args.only.split(",")
    if "curvature" in parts:
        curvature_part(args.iterations)
    if "background" in parts:
        background_part(args.background_iterations)


if __name__ == "__main__":
    main()
