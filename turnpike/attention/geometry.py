"""Limit geometry of unnormalised self-attention with time-independent weights, by the spectrum of V.

Tokens ``x_i ∈ R^d``, ``dx_i/dt = Σ_j P_ij V x_j``, ``P_ij = softmax_j(β<Q x_i, K x_j>)``
(:class:`~turnpike.attention.Unnormalised`), followed in the rescaled variable ``z_i = e^{-tV} x_i``,
``dz_i/dt = V Σ_j P_ij (z_j - z_i)`` with P evaluated at ``x = e^{tV} z`` (Geshkovski, Letrouit,
Polyanskiy, Rigollet, *The emergence of clusters in self-attention dynamics*, NeurIPS 2023, arXiv
2305.05465). The kind of limit depends on V; ``docs/mathematics.md`` §3 states the results and what
is derived here. Two diagnostics read the limit off the last output time of a trajectory:

* :func:`limit_polytope` (``V = I``): the rescaled tokens converge to the vertices of a convex polytope
  K. The distinct limit points are the clusters of single linkage at Euclidean distance ``tol`` (their
  centres are the means of their tokens); K is their convex hull (``scipy.spatial.ConvexHull`` in
  their affine span, of dimension found from the singular values of the centred points at the same
  ``tol``). Reported: the vertices, the tokens on each, the tokens whose cluster is not a vertex with
  the distance of that cluster to the relative boundary of K, and the largest move of a token over the
  last ``window`` of time. A limit off the vertices is not generic (a token at 0 amid tokens symmetric
  about 0 attends to all alike and stays at their mean 0, an unstable equilibrium): it is reported as
  such, not assigned to a vertex. Two facts hold along the flow with ``V = I`` and are what the tests
  check: ``dz_i/dt = (Pz)_i - z_i`` points into ``conv{z_j}``, so the hull of the tokens never grows;
  and a limit point v keeps its tokens only if it attends to itself at least as much as to any other
  limit point w, ``<Qv, Kv> >= <Qv, Kw>`` (the logits grow like ``e^{2t}``).
* :func:`limit_hyperplanes` (a simple, real, positive eigenvalue ``λ1`` of V with the largest real
  part): with ``φ1`` its unit eigenvector and ``n`` the unit left eigenvector (``nᵀV = λ1 nᵀ``, sign
  with ``nᵀφ1 > 0``), the coordinate ``h_i = nᵀz_i`` obeys exactly ``dh_i/dt = λ1 Σ_j P_ij (h_j - h_i)``,
  so ``max_i h_i`` never increases and ``min_i h_i`` never decreases. The tokens converge to at most
  three parallel hyperplanes ``{z : nᵀz = c}`` (the theorem); the values ``h_i`` at the last time are
  grouped by single linkage at ``tol`` into levels c. To leading order the logits are
  ``β<Qx_i, Kx_j> ≈ β e^{2λ1 t} <Qφ1, Kφ1> a_i a_j`` with ``a_i = h_i/(nᵀφ1)``, so with
  ``<Qφ1, Kφ1> > 0`` a token with ``h_i > 0`` ends up attending to the tokens of largest h and one with
  ``h_i < 0`` to those of smallest h: generically two levels (one if all h have one sign), the limits
  of ``max h`` and ``min h``. Tokens with ``h_i → 0`` escape this argument; the theorem's bound is
  three. Inside a hyperplane the tokens need not converge: along an eigenvalue ``μ < 0`` of V the
  rescaled tokens repel (``dy_i/dt = -μ (y_i - Σ_j P_ij y_j)``) and z is unbounded. In ``d = 1`` the
  hyperplanes are points and the two levels are the *leaders* of :func:`~turnpike.attention.leaders`.

Both results report the hypotheses they check (``V = I`` and ``QᵀK`` positive definite; ``λ1 > |λ|`` for
the other eigenvalues and ``β<Qφ1, Kφ1> > 0``) and the geometry whether they hold or not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse.csgraph import connected_components
from scipy.spatial import ConvexHull

from ..errors import InputError, check_positive
from .dynamics import Unnormalised
from .integrate import Trajectory

__all__ = ["LimitPolytope", "LimitHyperplanes", "limit_polytope", "limit_hyperplanes", "leading_eigenpair"]


@dataclass(frozen=True)
class LimitPolytope:
    """The convex polytope spanned by the limits of the rescaled tokens (module docstring).

    ``vertices`` (m, d): the cluster centres that are vertices of the hull (counter-clockwise when the
    hull is planar; the two ends when it is a segment); ``vertex_tokens[k]``: the tokens within the
    cluster of vertex k; ``other_tokens``: the tokens of clusters that are not vertices,
    ``boundary_distance`` the distance of each one's cluster centre to the relative boundary of the
    hull; ``clusters``: the number of distinct limit points;
    ``dimension``: the affine dimension of the hull. ``motion``: ``max_i |z_i(t) - z_i(t - window)|``
    (Euclidean). ``hypotheses``: what holds of ``V = I``, ``QᵀK`` positive definite; ``theory``: both hold.
    """

    t: float
    tol: float
    window: float
    motion: float
    vertices: np.ndarray
    vertex_tokens: tuple[tuple[int, ...], ...]
    other_tokens: tuple[int, ...]
    boundary_distance: tuple[float, ...]
    clusters: int
    dimension: int
    hypotheses: str
    theory: bool

    @property
    def converged(self) -> bool:
        """Whether no token moved more than ``tol`` over the last ``window``."""
        return self.motion <= self.tol

    def summary(self) -> dict:
        return {"t": self.t, "tol": self.tol, "window": self.window, "motion": self.motion,
                "converged": self.converged, "vertices": self.vertices.tolist(),
                "vertex_tokens": [list(v) for v in self.vertex_tokens], "other_tokens": list(self.other_tokens),
                "boundary_distance": list(self.boundary_distance), "clusters": self.clusters,
                "dimension": self.dimension, "hypotheses": self.hypotheses, "theory_applies": self.theory}


@dataclass(frozen=True)
class LimitHyperplanes:
    """Parallel hyperplanes ``{z : nᵀz = c}`` holding the limits of the rescaled tokens (module docstring).

    ``eigenvalue`` λ1, ``eigenvector`` φ1 (unit), ``normal`` n (unit left eigenvector, ``nᵀφ1 > 0``);
    ``levels``: the offsets c, increasing; ``tokens[k]``: the tokens on level k; ``width``: the largest
    ``|h_i - c|`` over the tokens of a level; ``extent[k]``: the largest distance between two tokens of
    level k (0 when they sit at one point). ``motion``: ``max_i |h_i(t) - h_i(t - window)|``. ``gap``:
    ``λ1 - max |λ|`` over the other eigenvalues; ``alignment``: ``β<Qφ1, Kφ1>``. ``theory``: gap > 0 and
    alignment > 0 (the hypotheses checked, module docstring).
    """

    t: float
    tol: float
    window: float
    motion: float
    eigenvalue: float
    eigenvector: np.ndarray
    normal: np.ndarray
    levels: np.ndarray
    tokens: tuple[tuple[int, ...], ...]
    width: float
    extent: tuple[float, ...]
    gap: float
    alignment: float
    theory: bool

    @property
    def count(self) -> int:
        """The number of hyperplanes found."""
        return len(self.levels)

    @property
    def converged(self) -> bool:
        """Whether no ``h_i`` moved more than ``tol`` over the last ``window``."""
        return self.motion <= self.tol

    def summary(self) -> dict:
        return {"t": self.t, "tol": self.tol, "window": self.window, "motion": self.motion,
                "converged": self.converged, "count": self.count, "levels": self.levels.tolist(),
                "tokens": [list(k) for k in self.tokens], "width": self.width, "extent": list(self.extent),
                "eigenvalue": self.eigenvalue, "eigenvector": self.eigenvector.tolist(),
                "normal": self.normal.tolist(), "gap": self.gap, "alignment": self.alignment,
                "theory_applies": self.theory}


def _matrix_or_identity(M: np.ndarray | None, d: int) -> np.ndarray:
    return np.eye(d) if M is None else M


def _last_two(model, traj, tol: float, window: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Checked inputs: the rescaled tokens at the last output time and at the one nearest ``t - window``."""
    if not isinstance(model, Unnormalised):
        raise InputError(f"model must be an Unnormalised system, got {type(model).__name__}")
    if not isinstance(traj, Trajectory):
        raise InputError(f"traj must be a Trajectory (from simulate), got {type(traj).__name__}")
    check_positive("tol", tol)
    check_positive("window", window)
    x = np.asarray(traj.x)
    if x.ndim != 3 or x.shape[-1] != model.d:
        raise InputError(f"traj must hold one prompt of tokens in R^{model.d}, shape (time, n, {model.d}); "
                         f"got states of shape {x.shape[1:]}")
    t = np.asarray(traj.t)
    if t[-1] - t[0] < window:
        raise InputError(f"window={window!r} must not exceed the time span of traj, {t[-1] - t[0]:.4g}")
    k = int(np.argmin(np.abs(t - (t[-1] - window))))
    if k == len(t) - 1:
        raise InputError(f"traj has no output time before t = {t[-1]:.4g} within window={window!r}")
    return x[-1], x[k], float(t[-1])


def _single_linkage(points: np.ndarray, tol: float) -> np.ndarray:
    """Cluster labels of points (n, d) joined when closer than ``tol`` (Euclidean), numbered by first token."""
    d2 = np.sum((points[:, None, :] - points[None, :, :]) ** 2, axis=-1)
    _, labels = connected_components(d2 < tol**2, directed=False)
    _, first = np.unique(labels, return_index=True)
    rank = np.empty(len(first), dtype=int)
    rank[np.argsort(first)] = np.arange(len(first))
    return rank[labels]


def _hull(points: np.ndarray, tol: float) -> tuple[list[int], np.ndarray, int]:
    """Vertices of conv(points), the distance of every point to its relative boundary, its affine dimension.

    The affine span is the span of the singular vectors of the centred points with singular value > tol.
    """
    if len(points) == 1:
        return [0], np.zeros(1), 0
    centred = points - points.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    dim = int(np.sum(s > tol))
    if dim == 0:
        return [0], np.zeros(len(points)), 0
    y = centred @ vt[:dim].T
    if dim == 1:
        lo, hi = int(np.argmin(y[:, 0])), int(np.argmax(y[:, 0]))
        return [lo, hi], np.minimum(y[:, 0] - y[lo, 0], y[hi, 0] - y[:, 0]), 1
    hull = ConvexHull(y)
    # equations: unit outer normals a and offsets b with a·y + b <= 0 inside
    dist = np.min(-(y @ hull.equations[:, :-1].T + hull.equations[:, -1]), axis=1)
    return [int(v) for v in hull.vertices], np.maximum(dist, 0.0), dim


def limit_polytope(model: Unnormalised, traj: Trajectory, *, tol: float = 1e-3, window: float = 1.0) -> LimitPolytope:
    """The limit polytope of the rescaled tokens ``z = e^{-tV} x`` at the last output time of ``traj``.

    Arguments:
        model: the :class:`Unnormalised` system that produced ``traj`` (its V, Q, K decide the hypotheses).
        traj: a run of ``model`` (:func:`simulate`), states ``z`` of shape (time, n, d).
        tol: Euclidean scale in z of the single-linkage clusters, of the affine dimension of the hull and
            of convergence (``motion <= tol``).
        window: the time over which ``motion`` is measured (the output time nearest ``t - window``).

    Returns:
        A :class:`LimitPolytope`; its ``theory`` says whether ``V = I``, ``QᵀK`` is positive definite and β > 0.
    """
    z, z_before, t_end = _last_two(model, traj, tol, window)
    labels = _single_linkage(z, tol)
    centres = np.array([z[labels == k].mean(axis=0) for k in range(labels.max() + 1)])
    vert, dist, dim = _hull(centres, tol)
    d = model.d
    V = _matrix_or_identity(model.V, d)
    A = _matrix_or_identity(model.Q, d).T @ _matrix_or_identity(model.K, d)
    smallest = float(np.linalg.eigvalsh((A + A.T) / 2).min())
    identity = bool(np.array_equal(V, np.eye(d)))
    hypotheses = (f"V {'=' if identity else '!='} I; smallest eigenvalue of the symmetric part of QᵀK: "
                  f"{smallest:.4g}")
    others = tuple(int(i) for i in np.flatnonzero(~np.isin(labels, vert)))
    return LimitPolytope(
        t=t_end, tol=float(tol), window=float(window), motion=float(np.max(np.linalg.norm(z - z_before, axis=-1))),
        vertices=centres[vert], vertex_tokens=tuple(tuple(int(i) for i in np.flatnonzero(labels == k)) for k in vert),
        other_tokens=others, boundary_distance=tuple(float(dist[labels[i]]) for i in others),
        clusters=len(centres), dimension=dim, hypotheses=hypotheses,
        theory=identity and smallest > 0 and model.beta > 0,
    )


def leading_eigenpair(V) -> tuple[float, np.ndarray, np.ndarray]:
    """``(λ1, φ1, n)``: the eigenvalue of V with the largest real part, its unit eigenvector and unit left
    eigenvector (``nᵀφ1 > 0``; φ1's largest entry in modulus positive).

    Raises:
        InputError: λ1 is not real, not positive or not simple (relative separation 1e-9 from the others).
    """
    V = np.atleast_2d(np.asarray(V, dtype=float))
    lam, R = np.linalg.eig(V)
    k = int(np.argmax(lam.real))
    scale = max(1.0, float(np.max(np.abs(lam))))
    others = np.delete(lam, k)
    if abs(lam[k].imag) > 1e-12 * scale or lam[k].real <= 0 or (
            others.size and np.min(np.abs(others - lam[k])) <= 1e-9 * scale):
        raise InputError(f"V must have a simple, real, positive eigenvalue of largest real part; its eigenvalues "
                         f"are {np.round(lam, 6).tolist()}")
    phi = R[:, k].real / np.linalg.norm(R[:, k].real)
    phi *= np.sign(phi[np.argmax(np.abs(phi))])
    lam_left, L = np.linalg.eig(V.T)
    left = L[:, int(np.argmin(np.abs(lam_left - lam[k])))].real
    normal = left / np.linalg.norm(left)
    return float(lam[k].real), phi, normal * np.sign(normal @ phi)


def limit_hyperplanes(model: Unnormalised, traj: Trajectory, *, tol: float = 1e-3,
                      window: float = 1.0) -> LimitHyperplanes:
    """The parallel hyperplanes holding the rescaled tokens at the last output time of ``traj``.

    Arguments:
        model: the :class:`Unnormalised` system that produced ``traj``; its V must have a simple, real,
            positive eigenvalue of largest real part (:func:`leading_eigenpair`).
        traj: a run of ``model`` (:func:`simulate`), states ``z`` of shape (time, n, d).
        tol: the scale of the levels in ``h = nᵀz`` (single linkage: sorted values split at gaps > tol)
            and of convergence (``motion <= tol``).
        window: the time over which ``motion`` is measured.

    Returns:
        A :class:`LimitHyperplanes`.
    """
    z, z_before, t_end = _last_two(model, traj, tol, window)
    d = model.d
    lam, phi, normal = leading_eigenpair(_matrix_or_identity(model.V, d))
    h = z @ normal
    order = np.argsort(h)
    groups = np.split(order, np.flatnonzero(np.diff(h[order]) > tol) + 1)
    levels = np.array([h[g].mean() for g in groups])
    eig = np.linalg.eigvals(_matrix_or_identity(model.V, d))
    rest = np.delete(eig, int(np.argmin(np.abs(eig - lam))))
    gap = float(lam - np.max(np.abs(rest))) if rest.size else float(lam)
    alignment = float(model.beta * (_matrix_or_identity(model.Q, d) @ phi) @ (_matrix_or_identity(model.K, d) @ phi))
    extent = tuple(float(np.max(np.linalg.norm(z[g][:, None] - z[g][None], axis=-1))) for g in groups)
    return LimitHyperplanes(
        t=t_end, tol=float(tol), window=float(window), motion=float(np.max(np.abs(h - z_before @ normal))),
        eigenvalue=lam, eigenvector=phi, normal=normal, levels=levels,
        tokens=tuple(tuple(int(i) for i in np.sort(g)) for g in groups),
        width=float(max(np.max(np.abs(h[g] - c)) for g, c in zip(groups, levels, strict=True))),
        extent=extent, gap=gap, alignment=alignment, theory=gap > 0 and alignment > 0,
    )
