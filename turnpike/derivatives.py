"""Stage-wise first and second derivatives of the multiple-shooting NLP, for IPOPT.

CasADi's default is to differentiate the whole NLP graph (MX, stages ``map``-ped) when the
solver is built: slow to build (the Lagrangian Hessian of the graph) and slow to evaluate.
The NLP of :class:`~turnpike.transcription.MultipleShooting` is a sum of stage terms, so its
derivatives are block-structured and each block is a derivative of one stage. Here the stage
derivatives are taken once in SX, ``map``-ped over the stages, and their nonzeros placed into
one global sparse matrix by index arithmetic (no Python loop over stages).

With ``z_k = (X_k, V_k)``, ``p = (h, Y)``, the stage cost
``c(z_k) = q̄(X_k, u_k) + λ2 h|u_k|² + λ1 h Σ V_k`` (``q̄`` the sample mean of ``q``) and the
stage part of the constraints ``s(z_k) = (-F(X_k, u_k), [Σ V_k])`` (the bracket only with an L1
bound), the NLP is

.. math::

    J(w) = \\sum_k c(z_k) + Φ(X_n), \\qquad g_k(w) = s(z_k) + (X_{k+1}, [0]).

* ``grad_f``: ``(w, p) -> (J, ∇J)``, ``∇J = (∇c(z_0), ..., ∇c(z_{n-1}), ∇Φ(X_n))``.
* ``jac_g``: ``(w, p) -> (g, ∂g/∂w)``; block row k holds ``∂s/∂z_k`` in the columns of ``z_k``
  and the identity in those of ``X_{k+1}``.
* ``hess_lag``: ``(w, p, σ, λ) -> triu ∇²_w (σ J + λᵀ g)``, CasADi's Lagrangian and sign
  convention (``+λᵀ g``, with ``λ`` the ``lam_g`` that ``nlpsol`` returns). It is block diagonal:
  block k is ``∇²_{z_k}(σ c(z_k) + λ_kᵀ s(z_k))`` (the identity and the L1-bound row are linear
  and drop out), the last block ``σ ∇²Φ(X_n)``. Only the upper triangle is returned, as IPOPT
  expects.

These are passed to ``casadi.nlpsol("ipopt", ...)`` as its options ``grad_f``, ``jac_g`` and
``hess_lag``; they equal CasADi's own derivatives of the NLP to rounding.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import casadi as ca
import numpy as np

if TYPE_CHECKING:
    from .transcription import MultipleShooting

__all__ = ["stagewise_derivatives"]


def _triplets(sp: ca.Sparsity) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = sp.get_triplet()
    return np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)


def _blocks(sp: ca.Sparsity, copies: int, row_step: int, col_step: int) -> tuple[np.ndarray, np.ndarray]:
    """Triplets of ``copies`` copies of ``sp``, copy k shifted by ``(k row_step, k col_step)``.

    Their order is that of the nonzeros of ``copies`` horizontally concatenated copies (the output
    of a ``map``): copy by copy, column-major within each.
    """
    rows, cols = _triplets(sp)
    k = np.repeat(np.arange(copies), rows.size)
    return np.tile(rows, copies) + row_step * k, np.tile(cols, copies) + col_step * k


def _assemble(shape: tuple[int, int], rows: np.ndarray, cols: np.ndarray, values: ca.MX) -> ca.MX:
    """The sparse matrix with ``values[i]`` at ``(rows[i], cols[i])``, which must come in CasADi's column-major
    order (the blocks of a ``map`` along the diagonal do): the sparsity is built in compressed column form, with
    no reordering node in the graph (a triplet form, its sort and the reordering took 1 GB at 400 stages of 112
    variables while the solver was built)."""
    order_ok = rows.size == 0 or bool(np.all((np.diff(cols) > 0) | ((np.diff(cols) == 0) & (np.diff(rows) > 0))))
    if not order_ok:
        raise RuntimeError("stage-wise derivative blocks out of column-major order: the NLP layout is not the one "
                           "assumed")
    return ca.MX(_compressed(shape, rows, np.bincount(cols, minlength=shape[1])), values)


def _compressed(shape: tuple[int, int], rows: np.ndarray, per_column: np.ndarray) -> ca.Sparsity:
    """The sparsity with ``per_column[j]`` nonzeros in column j, at ``rows`` (column by column). Given as lists:
    CasADi converts a numpy array element by element (5.6 s for 2.5 M rows, against 0.2 s for a list)."""
    return ca.Sparsity(*shape, [0, *np.cumsum(per_column).tolist()], rows.tolist())


def _nonzeros(mapped: ca.MX) -> ca.MX:
    """The nonzeros of ``mapped`` as a column, in CasADi's (column-major) order."""
    return ca.vec(mapped.nz[:]) if mapped.nnz() > 0 else ca.MX(0, 1)  # nz of a row vector is a row


def stagewise_derivatives(ms: MultipleShooting) -> dict[str, ca.Function]:
    """``{"grad_f", "jac_g", "hess_lag"}`` for ``ms.nlp``, in the layout of ``casadi.nlpsol`` options.

    See the module docstring for the mathematics. The stage derivatives are SX; the three
    functions are MX graphs that map them over the ``steps`` stages.
    """
    P, lay, steps = ms.problem, ms.layout, ms.steps
    n_state, n_stage, n_g = lay.n_state, lay.n_stage, ms.n_g_stage

    # One stage, SX: z = (X, V) -> cost c, constraint part s, their derivatives.
    X = ca.SX.sym("X", n_state)
    V = ca.SX.sym("V", lay.n_v)
    Y = ca.SX.sym("Y", P.ny * P.n_samples)
    h = ca.SX.sym("h")
    sigma = ca.SX.sym("sigma")
    z = ca.vertcat(X, V)
    x_next, q = ms.stage(X, V, Y, h)
    c = q[0] + P.l2 * q[1] + P.l1 * q[2]
    s = ca.vertcat(-x_next, ca.sum1(V)) if P.l1_bound is not None else -x_next
    lam = ca.SX.sym("lam", n_g)
    args = [X, V, Y, h]
    stage_grad = ca.Function("stage_grad", args, [c, ca.gradient(c, z)])
    stage_jac = ca.Function("stage_jac", args, [s, ca.jacobian(s, z)])
    stage_lagrangian = sigma * c + ca.dot(lam, s)
    stage_hess = ca.Function("stage_hess", [*args, sigma, lam], [ca.triu(ca.hessian(stage_lagrangian, z)[0])])

    phi = ms.terminal(X, Y)
    term_grad = ca.Function("terminal_grad", [X, Y], [phi, ca.gradient(phi, X)])
    term_hess = ca.Function("terminal_hess", [X, Y, sigma], [ca.triu(ca.hessian(sigma * phi, X)[0])])

    # The NLP's variables, sliced stage-wise exactly as in MultipleShooting.
    w = ca.MX.sym("x", lay.n_w)
    p = ca.MX.sym("p", 1 + P.ny * P.n_samples)
    lam_f = ca.MX.sym("lam_f")
    lam_g = ca.MX.sym("lam_g", n_g * steps)
    hp, Yp = p[0], p[1:]
    stages = ca.reshape(w[: steps * n_stage], n_stage, steps)
    Xk, Vk = stages[:n_state, :], stages[n_state:, :]
    X_end = w[steps * n_stage :]
    X_next = ca.horzcat(Xk[:, 1:], X_end)

    ck, gk = stage_grad.map(steps)(Xk, Vk, Yp, hp)
    phi_n, grad_n = term_grad(X_end, Yp)
    # IPOPT reads the gradient and g as dense vectors: structural zeros must be stored.
    grad = ca.densify(ca.vertcat(ca.vec(gk), grad_n))
    grad_f = ca.Function("grad_f", [w, p], [ca.sum2(ck) + phi_n, grad], ["x", "p"], ["f", "grad_f_x"])

    sk, dsk = stage_jac.map(steps)(Xk, Vk, Yp, hp)
    g = ca.densify(ca.vec(sk + ca.vertcat(X_next, ca.MX(n_g - n_state, steps))))
    rows, cols = _blocks(stage_jac.sparsity_out(1), steps, n_g, n_stage)
    shape = (n_g * steps, lay.n_w)
    # The X_{k+1} of each gap: the identity at (block row k, columns of X_{k+1}), a constant added to the blocks.
    eye = np.arange(steps * n_state)
    stage_of = eye // n_state
    gap = np.bincount((stage_of + 1) * n_stage + eye % n_state, minlength=lay.n_w)
    identity = ca.DM(_compressed(shape, stage_of * n_g + eye % n_state, gap), 1.0)
    jac = _assemble(shape, rows, cols, _nonzeros(dsk)) + identity
    jac_g = ca.Function("jac_g", [w, p], [g, jac], ["x", "p"], ["g", "jac_g_x"])

    hk = stage_hess.map(steps)(Xk, Vk, Yp, hp, lam_f, ca.reshape(lam_g, n_g, steps))
    hn = term_hess(X_end, Yp, lam_f)
    rows, cols = _blocks(stage_hess.sparsity_out(0), steps, n_stage, n_stage)
    r_n, c_n = _triplets(term_hess.sparsity_out(0))
    offset = steps * n_stage
    rows, cols = np.concatenate([rows, r_n + offset]), np.concatenate([cols, c_n + offset])
    hess = _assemble((lay.n_w, lay.n_w), rows, cols, ca.vertcat(_nonzeros(hk), _nonzeros(hn)))
    hess_lag = ca.Function(
        "hess_lag", [w, p, lam_f, lam_g], [hess], ["x", "p", "lam_f", "lam_g"], ["hess_gamma_x_x"]
    )
    return {"grad_f": grad_f, "jac_g": jac_g, "hess_lag": hess_lag}
