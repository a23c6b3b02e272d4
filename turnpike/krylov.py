"""Second order without a Hessian matrix: trust-region Newton–CG and Lanczos, on Hessian-vector products.

When the reduced problem has ``n = steps·n_v`` variables in the thousands (a network of width 50
with 16 layers: 5648), the dense Hessian (``n²`` numbers, ``O(n³)`` to factorise) is out of reach,
but a Hessian-vector product ``∇²J v`` costs a few gradients (:class:`turnpike.ensemble.EnsembleObjective`).
Both methods here use only such products and vectors of length n.

* :func:`newton_cg`: the trust-region Newton method whose steps are computed by conjugate
  gradients, truncated at the trust-region boundary or at a direction of non-positive curvature
  (Steihaug–Toint; Nocedal & Wright, *Numerical Optimization*, Algorithm 7.2). A direction of
  negative curvature is followed to the boundary, so the iteration leaves saddle points. With a
  preconditioner M (e.g. :class:`BlockDiagonal`), conjugate gradients are preconditioned by M and the
  trust region is the ellipsoid ``‖d‖_M <= Δ`` (Nocedal & Wright, Section 7.2, "scaling"): where the
  Hessian's eigenvalues spread over many decades, M gathers them and a step takes fewer products.
* :func:`smallest_eigenvalues`: the smallest eigenvalues of the Hessian by Lanczos with full
  reorthogonalisation, and :func:`second_order_verdict`, which turns them into "local minimum",
  "saddle point" or "not determined".
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from scipy.linalg import cho_factor, cho_solve, eigh_tridiagonal

__all__ = ["BlockDiagonal", "NewtonCGResult", "SecondOrder", "newton_cg", "second_order_verdict",
           "smallest_eigenvalues"]

_ROUND_OFF = 1e3 * np.finfo(float).eps  # a predicted decrease of J below this (relative to |J|) is round-off
VERDICT_RTOL = 1e-8  # second_order_verdict: eigenvalues within this times the largest in magnitude count as 0


@dataclass(frozen=True)
class NewtonCGResult:
    """The point reached by :func:`newton_cg` and what it cost.

    ``converged``: ``‖∇J‖∞ <= gtol``. ``iterations``: trust-region steps tried; ``products``:
    Hessian-vector products; ``evaluations``: evaluations of J and ∇J; ``negative_curvature``: steps
    that ended on a direction of negative curvature; ``preconditioners``: preconditioners built, in
    ``preconditioner_seconds``.
    """

    converged: bool
    x: np.ndarray
    cost: float
    gradient_norm: float
    iterations: int
    products: int
    evaluations: int
    negative_curvature: int
    seconds: float
    message: str
    preconditioners: int = 0
    preconditioner_seconds: float = 0.0

    def summary(self) -> dict:
        return {"method": "trust-region Newton-CG (Hessian-vector products)", "converged": self.converged,
                "cost": self.cost, "gradient_norm": self.gradient_norm, "iterations": self.iterations,
                "products": self.products, "evaluations": self.evaluations,
                "negative_curvature": self.negative_curvature, "preconditioners": self.preconditioners,
                "preconditioner_seconds": self.preconditioner_seconds, "seconds": self.seconds,
                "message": self.message}


class _SteihaugPath:
    """The conjugate-gradient path of :func:`_steihaug`: its iterates ``d_0 = 0, d_1, ...``, their products
    ``H d_j`` and their images ``M d_j`` under the preconditioner, ending at the step taken. Along the path the
    norm ``‖d_j‖_M = (d_jᵀ M d_j)^½`` increases (Steihaug's theorem; Nocedal & Wright, Theorem 7.3), and the
    iterates do not depend on the radius until the boundary is crossed, so the step for a smaller radius is where
    the path crosses it (:meth:`at`): what conjugate gradients would compute again, at no product. ``products``:
    spent; ``negative``: the path ended along a direction of non-positive curvature."""

    def __init__(self, g: np.ndarray):
        self.points, self.products_of_points, self.metric_points = ([np.zeros_like(g)] for _ in range(3))
        self.products, self.negative = 0, False

    def add(self, d: np.ndarray, Hd: np.ndarray, Md: np.ndarray) -> None:
        self.points.append(d)
        self.products_of_points.append(Hd)
        self.metric_points.append(Md)

    @property
    def end(self):
        """The step, its product and its image ``(d, Hd, Md)``."""
        return self.points[-1], self.products_of_points[-1], self.metric_points[-1]

    def at(self, radius: float):
        """``(d, Hd, ‖d‖_M, negative)`` where the path leaves the ball ``‖d‖_M <= radius`` (its end if it stays
        inside); ``negative``: that point is on the path's last segment, along a direction of non-positive
        curvature."""
        last = len(self.points) - 1
        for j in range(1, last + 1):
            if _norm(self.points[j], self.metric_points[j]) >= radius:
                d, p = self.points[j - 1], self.points[j] - self.points[j - 1]
                Md, Mp = self.metric_points[j - 1], self.metric_points[j] - self.metric_points[j - 1]
                Hd, Hp = self.products_of_points[j - 1], self.products_of_points[j] - self.products_of_points[j - 1]
                tau = _to_boundary(d, p, Md, Mp, radius)
                return d + tau * p, Hd + tau * Hp, radius, self.negative and j == last
        d, Hd, Md = self.end
        return d, Hd, _norm(d, Md), self.negative


class BlockDiagonal:
    """The preconditioner ``M = diag(M_0, ..., M_{n-1})`` of symmetric positive definite blocks of one size m
    (``n·m`` variables, the blocks in order), factorised by Cholesky once; calling it on r gives ``M⁻¹ r``, in
    ``O(n m²)``. A block that is not positive definite is an error (:class:`numpy.linalg.LinAlgError`)."""

    def __init__(self, blocks):
        self.blocks = [np.asarray(B, dtype=float) for B in blocks]
        self.factors = [cho_factor(B, lower=True) for B in self.blocks]

    def __call__(self, r: np.ndarray) -> np.ndarray:
        R = np.asarray(r, dtype=float).reshape(len(self.blocks), -1)
        return np.concatenate([cho_solve(f, row) for f, row in zip(self.factors, R, strict=True)])


def _norm(d: np.ndarray, Md: np.ndarray) -> float:
    """``‖d‖_M = (dᵀ M d)^½`` from d and its image ``M d``."""
    return float(np.sqrt(max(float(d @ Md), 0.0)))


def _steihaug(hvp, g: np.ndarray, radius: float, max_products: int, stop=None, precondition=None) -> _SteihaugPath:
    """Approximately minimise ``m(d) = gᵀd + dᵀHd/2`` over ``‖d‖_M <= radius`` by conjugate gradients
    preconditioned by M, given by ``precondition(r) = M⁻¹ r`` (M symmetric positive definite; without it the
    identity, and the 2-norm). The images ``M d`` of the iterates follow from the recurrences (``M z = r``), so M
    itself is never applied.

    Stops at the boundary, on a direction p with ``pᵀHp <= 0`` (followed to the boundary), when the
    residual ``‖Hd + g‖₂`` is below ``min(0.5, ‖g‖₂^½) ‖g‖₂`` (superlinear convergence), after
    ``max_products`` products, or when ``stop()`` gives a reason (asked after every product from the second;
    each iterate decreases m). Returns the path (:class:`_SteihaugPath`), which ends at the step.
    """
    solve = precondition if precondition is not None else np.copy
    path = _SteihaugPath(g)
    d, Hd, Md = path.end
    r = g.copy()
    z = solve(r)
    p, Mp = -z, -r  # M p = -M M⁻¹ r
    g_norm = float(np.linalg.norm(g))
    tolerance = min(0.5, np.sqrt(g_norm)) * g_norm
    rz = float(r @ z)
    for products in range(1, max_products + 1):
        if products > 1 and stop is not None and stop():
            return path
        path.products = products
        Hp = hvp(p)
        curvature = float(p @ Hp)
        alpha = rz / curvature if curvature > 0 else np.inf
        if curvature <= 0 or _norm(d + alpha * p, Md + alpha * Mp) >= radius:
            tau = _to_boundary(d, p, Md, Mp, radius)
            path.add(d + tau * p, Hd + tau * Hp, Md + tau * Mp)
            path.negative = curvature <= 0
            return path
        d, Hd, Md, r = d + alpha * p, Hd + alpha * Hp, Md + alpha * Mp, r + alpha * Hp
        path.add(d, Hd, Md)
        if np.linalg.norm(r) <= tolerance:
            return path
        z = solve(r)
        rz_new = float(r @ z)
        beta = rz_new / rz
        p, Mp = -z + beta * p, -r + beta * Mp
        rz = rz_new
    return path


def _to_boundary(d: np.ndarray, p: np.ndarray, Md: np.ndarray, Mp: np.ndarray, radius: float) -> float:
    """The τ >= 0 with ``‖d + τ p‖_M = radius`` (``‖d‖_M < radius``), from the images ``M d`` and ``M p``."""
    a, b, c = float(p @ Mp), 2 * float(d @ Mp), float(d @ Md) - radius**2
    return (-b + np.sqrt(max(b * b - 4 * a * c, 0.0))) / (2 * a)


def newton_cg(value_and_gradient, hessian_vector, x: np.ndarray, *, gtol: float = 1e-10, max_iter: int = 500,
              max_cg: int = 100, radius: float = 1.0, preconditioner=None, refresh: int = 10, stop=None,
              callback=None, verbose: bool = False) -> NewtonCGResult:
    """Minimise J from ``x`` by trust-region Newton–CG (see the module docstring).

    Arguments:
        value_and_gradient: ``x -> (J, ∇J)``; hessian_vector: ``(x, v) -> ∇²J(x) v``.
        x: the start (a flat array).
        gtol: stop when ``‖∇J‖∞ <= gtol`` (converged).
        max_iter: trust-region steps at most; max_cg: Hessian-vector products per step at most.
        radius: the first trust-region radius (``‖d‖_M``; the 2-norm without a preconditioner).
        preconditioner: ``x -> (r -> M⁻¹ r)`` for a symmetric positive definite M (e.g. a :class:`BlockDiagonal`),
            built at the start and again every ``refresh`` accepted steps: conjugate gradients are preconditioned
            by M and the trust region is the ellipsoid ``‖d‖_M <= radius``. None (given, or returned by it): the
            identity (the 2-norm).
        stop: asked before every step and after every Hessian-vector product from a step's second (``stop()``: a
            reason or None); with a reason the step so far is tried, and the iteration stops, not converged.
        callback: called as ``callback(x, J, ‖∇J‖∞)`` after every accepted step.
        verbose: one line per step.

    A step d is accepted when ``ρ = (J(x) - J(x + d)) / (m(0) - m(d)) > 0.1``; the radius becomes
    a quarter of ``‖d‖`` when ρ < 1/4 and doubles when ρ > 3/4 with the step on the boundary. Near
    the optimum the predicted decrease falls below the round-off of J (``1e3 eps |J|``); there a step
    is accepted if it halves ``‖∇J‖∞``; otherwise the iteration stops if the step was an interior
    (full) Newton step, and the radius shrinks if the trust region had cut it short. A rejected step's
    conjugate-gradient path is kept: the next step from the same point is where that path crosses the smaller
    radius (:class:`_SteihaugPath`), with no new product (from the end of 3000 L-BFGS-B iterations on the tanh
    chessboard of ``benchmarks/bench_width.py``, the first step, 153 products to the radius 1, was rejected).
    """
    start = time.perf_counter()
    x = np.asarray(x, dtype=float).copy()
    J, g = value_and_gradient(x)
    evaluations, products, curved, iterations = 1, 0, 0, 0
    path = None  # the conjugate-gradient path at x, kept while steps from x are rejected
    metric, accepted_steps, built, building = None, 0, 0, 0.0  # the preconditioner, steps accepted since, builds
    message = f"stopped: {max_iter} iterations"
    while iterations < max_iter:
        g_max = float(np.max(np.abs(g)))
        if not (np.isfinite(J) and np.isfinite(g_max)):
            message = "stopped: non-finite cost or gradient"
            break
        if g_max <= gtol:
            message = "converged"
            break
        if stop is not None and (why := stop()):
            message = f"stopped: {why}"
            break
        spent = 0
        if path is None:
            if preconditioner is not None and (metric is None or accepted_steps >= refresh):
                clock = time.perf_counter()
                metric, accepted_steps = preconditioner(x), 0
                building += time.perf_counter() - clock
                if metric is None:  # none to be had: go on without
                    preconditioner = None
                else:
                    built += 1
            path = _steihaug(lambda v, x=x: hessian_vector(x, v), g, radius, max_cg, stop, metric)
            spent = path.products
        d, Hd, step, negative = path.at(radius)
        products, iterations = products + spent, iterations + 1
        predicted = -(float(g @ d) + 0.5 * float(d @ Hd))
        J_new, g_new = value_and_gradient(x + d)
        evaluations += 1
        if not np.isfinite(predicted):
            message = "stopped: non-finite Hessian-vector product"
            break
        if predicted <= 0.5 * _ROUND_OFF * max(1.0, abs(J)):  # J cannot tell: the step must halve ‖∇J‖∞
            accepted = bool(np.isfinite(J_new) and np.max(np.abs(g_new)) <= 0.5 * g_max)
            if not accepted and step < 0.99 * radius:  # a full Newton step, not one cut short by the radius
                message = "stopped: J and its gradient at round-off level"
                break
            rho = 1.0 if accepted else 0.0
        else:
            rho = (J - J_new) / predicted if np.isfinite(J_new) else -np.inf
            accepted = rho > 0.1
        if rho < 0.25:
            radius = 0.25 * step
        elif rho > 0.75 and step >= 0.99 * radius:
            radius = 2 * radius
        if verbose:
            print(f"newton-cg {iterations:4d}  J {J:.10e}  |g|inf {g_max:.2e}  CG {spent:3d}  rho {rho:.2f}  "
                  f"radius {radius:.2e}{'  negative curvature' if negative else ''}", flush=True)
        if accepted:
            x, J, g, path = x + d, J_new, g_new, None
            accepted_steps += 1
            curved += negative
            if callback is not None:
                callback(x, J, float(np.max(np.abs(g))))
        if radius < 1e-14 * max(1.0, float(np.linalg.norm(x))):
            message = "stopped: the trust region shrank to round-off"
            break
    g_max = float(np.max(np.abs(g)))
    converged = bool(g_max <= gtol)
    return NewtonCGResult(converged, x, float(J), g_max, iterations, products, evaluations, curved,
                          time.perf_counter() - start, "converged" if converged else message, built, building)


@dataclass(frozen=True)
class SecondOrder:
    """Second-order information at a point, from Lanczos on Hessian-vector products.

    ``eigenvalues``: the smallest eigenvalues found (ascending; Ritz values); ``residuals``: their
    residual norms ``‖Hv - θv‖``; ``largest``: the eigenvalue of largest magnitude (the scale);
    ``converged``: their residuals all reached the tolerance; ``products``: Hessian-vector
    products spent; ``verdict``: see :func:`second_order_verdict`.
    """

    verdict: str
    eigenvalues: tuple[float, ...]
    residuals: tuple[float, ...]
    largest: float
    converged: bool
    products: int
    seconds: float

    def summary(self) -> dict:
        return {"verdict": self.verdict, "smallest_eigenvalues": list(self.eigenvalues),
                "residuals": list(self.residuals), "largest_eigenvalue": self.largest, "converged": self.converged,
                "products": self.products, "seconds": self.seconds}


def smallest_eigenvalues(hessian_vector, n: int, *, k: int = 3, max_products: int = 300, tol: float = 1e-6,
                         seed: int = 0) -> SecondOrder:
    """The ``k`` smallest eigenvalues of the symmetric ``n×n`` operator ``v -> hessian_vector(v)`` by Lanczos.

    The Lanczos process with full reorthogonalisation from a seeded random unit vector: after m
    products the Ritz values (the eigenvalues of the m×m tridiagonal matrix) approximate the extreme
    eigenvalues of the operator from inside the spectrum; each has a residual ``‖Hy - θy‖ = β_m |s_m|``
    (the last entry of its eigenvector s of the tridiagonal matrix, times the next off-diagonal entry).
    It stops once the ``k`` smallest Ritz values have residuals below ``tol`` times the largest Ritz
    value in magnitude (the scale) and the smallest one's residual decides the sign the verdict reads
    (``θ - ‖r‖ > 1e-8 s`` or ``θ < -1e-8 s``, :func:`second_order_verdict`), when the Krylov space is invariant
    (then they are exact), or after ``max_products`` products; the smallest Ritz value is then an upper bound of
    the smallest
    eigenvalue, and the Rayleigh quotient of its Ritz vector, whatever the convergence (see
    :func:`second_order_verdict`). Memory: ``max_products`` vectors of length n.
    """
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    m_max = max(1, min(max_products, n))
    Q = np.empty((m_max, n))
    alphas, betas = [], []
    q = rng.standard_normal(n)
    q /= np.linalg.norm(q)
    values, residuals, beta = np.array([]), np.array([]), 0.0
    for j in range(m_max):
        Q[j] = q
        w = np.asarray(hessian_vector(q), dtype=float).reshape(-1)
        alphas.append(float(q @ w))
        for _ in range(2):  # full reorthogonalisation, twice ("twice is enough")
            w -= Q[: j + 1].T @ (Q[: j + 1] @ w)
        beta = float(np.linalg.norm(w))
        invariant = beta <= 1e-14 * max(1.0, max(abs(a) for a in alphas))
        if invariant or j == m_max - 1 or (j + 1) % 10 == 0:
            values, vectors = eigh_tridiagonal(np.array(alphas), np.array(betas))
            residuals = 0.0 if invariant else beta * np.abs(vectors[-1, :])
            residuals = np.broadcast_to(residuals, values.shape)
            scale = float(np.max(np.abs(values)))
            if invariant or (j + 1 >= k and np.all(residuals[:k] <= tol * scale)
                             and _sign_decided(values[0], residuals[0], scale)):
                break
        betas.append(beta)
        q = w / beta
    products = len(alphas)
    k = min(k, values.size)
    converged = bool(np.all(residuals[:k] <= tol * np.max(np.abs(values))))
    largest = float(values[np.argmax(np.abs(values))])
    verdict = second_order_verdict(values[:k], residuals[:k], largest, converged)
    return SecondOrder(verdict, tuple(float(v) for v in values[:k]), tuple(float(r) for r in residuals[:k]), largest,
                       converged, products, time.perf_counter() - start)


def _sign_decided(theta: float, residual: float, scale: float, rtol: float = VERDICT_RTOL) -> bool:
    """Whether a Ritz value ``theta`` with this ``residual`` decides :func:`second_order_verdict`: below ``-rtol
    scale`` (a saddle), or above it by more than its residual (an eigenvalue lies within the residual of θ).
    At the measured width-16 chessboard's end (N = 200, tanh) the residual ``1e-6 s`` of the three smallest Ritz
    values was reached after 60 products with ``θ = 1.0e-4`` and ``‖r‖ = 1.8e-4`` (s = 713): not decided."""
    return theta < -rtol * scale or theta - residual > rtol * scale


def second_order_verdict(eigenvalues, residuals, largest: float, converged: bool,
                         rtol: float = VERDICT_RTOL) -> str:
    """``"saddle point"``, ``"local minimum"`` or ``"not determined"`` from the smallest eigenvalues.

    With the scale ``s = |largest|``: a Ritz value ``θ < -rtol s`` is the curvature ``vᵀHv`` along its
    unit Ritz vector v, so the point is a saddle whatever the convergence; a converged smallest
    eigenvalue with ``θ - ‖r‖ > rtol s`` (an eigenvalue lies within the residual ‖r‖ of θ) is taken
    to mean that the Hessian is positive definite: with a zero gradient, a strict local minimum
    (second-order sufficient condition). That is Lanczos's estimate, not a proof: an eigenvalue
    whose eigenvector is nearly orthogonal to the Krylov space can be missed. Anything else (no
    convergence, an eigenvalue within ``rtol s`` of 0) is not determined by second-order information.
    """
    if len(eigenvalues) == 0 or not np.isfinite(largest):
        return "not determined"
    scale = max(abs(largest), np.finfo(float).tiny)
    if eigenvalues[0] < -rtol * scale:
        return "saddle point"
    if converged and eigenvalues[0] - residuals[0] > rtol * scale:
        return "local minimum"
    return "not determined"
