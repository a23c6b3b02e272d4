"""The ensemble as one state matrix: a sample's MX function lifted to all samples at once.

In ensemble form (:class:`~turnpike.Problem` with N samples) every sample obeys the same
dynamics ``dx_i/dt = f(x_i, u, y_i)`` with one shared control u. Stack the samples as the
columns of ``X = (x_1, …, x_N) ∈ R^{nx×N}`` and ``Y = (y_1, …, y_N)``. When ``f`` is written
with CasADi **MX** symbols from matrix products and elementwise functions, e.g. the bottleneck
field ``f = W2 σ(W1 x + b1) + b2`` with the weights reshaped from u, the same expression
evaluated on X is a few matrix products and elementwise operations on ``R^{h×N}``:

.. math::  F(X, u, Y) = W_2\\, σ(W_1 X + b_1 1ᵀ) + b_2 1ᵀ .

:func:`lift` builds F from f by rewriting f's MX graph operation by operation. Each value of the
graph is either *shared* (it depends on u, h and constants only: kept as it is, e.g. ``W1``) or
*per sample* (it depends on x or y: a vector or scalar per sample, stored as the matrix
``(numel, N)`` of its values, one column per sample). The rules:

* elementwise operations act on the stored matrices, shared vectors repeated over the columns
  and per-sample scalars over the rows;
* ``A x`` with A shared is the product ``A X`` (one GEMM); ``xᵀ B`` is ``Bᵀ X``; ``xᵀ z`` and
  ``dot(x, z)`` are column sums of ``X ∘ Z``; norms likewise;
* operations that only move or select entries (indexing, concatenation, reshapes and transposes
  of vectors, splits) are linear maps with constant 0/1 matrices S, lifted as ``S X``.

An operation with no rule (a per-sample matrix, a call of another function, ...) raises
:class:`NotLiftable`; the caller then keeps the sample-by-sample path. The lifted function's
derivatives are CasADi's MX derivatives of it: matrix products again (e.g. the reverse mode of
``W1 X`` is ``Λ Xᵀ`` for W1 and ``W1ᵀ Λ`` for X), so one gradient or one Hessian-vector product
costs a few GEMMs per stage whatever the width, and nothing is ever unrolled into scalars.
"""

from __future__ import annotations

import casadi as ca
import numpy as np

from .transcription import integrator_step, stage_function

__all__ = ["EnsembleObjective", "NotLiftable", "lift", "matrix_stage"]

_UNARY = {getattr(ca, f"OP_{name}") for name in (
    "NEG", "EXP", "LOG", "SQRT", "SQ", "TWICE", "SIN", "COS", "TAN", "ASIN", "ACOS", "ATAN", "NOT", "FLOOR",
    "CEIL", "FABS", "SIGN", "ERF", "INV", "SINH", "COSH", "TANH", "ASINH", "ACOSH", "ATANH", "ERFINV", "LOG1P",
    "EXPM1")}
_BINARY = {getattr(ca, f"OP_{name}") for name in (
    "ADD", "SUB", "MUL", "DIV", "POW", "CONSTPOW", "LT", "LE", "EQ", "NE", "AND", "OR", "FMOD", "COPYSIGN",
    "IF_ELSE_ZERO", "FMIN", "FMAX", "ATAN2", "HYPOT", "REMAINDER")}
# Operations that keep the entries of a vector in their order.
_REORDERING = {ca.OP_RESHAPE, ca.OP_TRANSPOSE}


class NotLiftable(ValueError):
    """A function whose graph has an operation :func:`lift` has no matrix rule for."""


def _is_vector(shape: tuple[int, int]) -> bool:
    return min(shape) <= 1


def lift(fn: ca.Function, per_sample: set[int], N: int) -> ca.Function:
    """``fn`` evaluated on N samples at once, as matrix operations (see the module docstring).

    Arguments:
        fn: an MX function; its inputs in ``per_sample`` are one sample's vectors.
        per_sample: indices of the inputs that differ between samples (x, y).
        N: the number of samples.

    Returns:
        A function with the same inputs, except that input j in ``per_sample`` of size n is the
        matrix ``(n, N)`` of the samples' values, and every output of size m is ``(m, N)`` (an output
        that depends on no per-sample input is repeated over the columns).

    Raises:
        NotLiftable: ``fn`` is not an MX function, a per-sample input or output is not a vector, or
            an operation has no rule; the message names it.
    """
    if not fn.is_a("MXFunction"):
        raise NotLiftable(f"{fn.name()} is {fn.class_name()}, not an MX function (write it with casadi.MX symbols)")
    inputs = []
    for j in range(fn.n_in()):
        shape = fn.size_in(j)
        if j in per_sample:
            if not _is_vector(shape):
                raise NotLiftable(f"input {fn.name_in(j)} of {fn.name()} is a {shape} matrix, not a vector")
            inputs.append(ca.MX.sym(fn.name_in(j), shape[0] * shape[1], N))
        else:  # the function's own symbol: shared nodes are then used as they are
            inputs.append(fn.mx_in(j))
    ones = ca.DM.ones(1, N)
    work: dict[int, tuple[ca.MX, bool]] = {}  # slot -> (value, per sample?)
    pieces: list[list[ca.MX]] = [[] for _ in range(fn.n_out())]  # an output may be written in pieces
    for k in range(fn.n_instructions()):
        op, slots_in, slots_out = fn.instruction_id(k), fn.instruction_input(k), fn.instruction_output(k)
        if op == ca.OP_INPUT:  # an input, or one segment of an input written as a concatenation of symbols
            j, symbol = slots_in[0], fn.instruction_MX(k)
            if j in per_sample:
                offset = int(symbol.info()["offset"])
                work[slots_out[0]] = (inputs[j][offset : offset + symbol.numel(), :], True)
            else:  # the symbol itself, a part of the function's own input
                work[slots_out[0]] = (symbol, False)
            continue
        if op == ca.OP_OUTPUT:  # the output's pieces come in order, each a vector per sample or shared
            value, lifted = work[slots_in[0]]
            pieces[slots_out[0]].append(ca.densify(value) if lifted else
                                        ca.densify(ca.reshape(value, value.numel(), 1)) @ ones)
            continue
        node = fn.instruction_MX(k)
        deps = [work[s] for s in slots_in]
        if not any(lifted for _, lifted in deps):  # shared: the node's own expression of u, h, constants
            if len(slots_out) == 1:
                work[slots_out[0]] = (node, False)
            else:
                for slot, value in zip(slots_out, _split(op, node, deps[0][0]), strict=True):
                    work[slot] = (value, False)
            continue
        if len(slots_out) > 1:  # a split of a per-sample vector: slices of its rows
            for slot, value in zip(slots_out, _split(op, node, deps[0][0], lifted=True), strict=True):
                work[slot] = (value, True)
            continue
        if not _is_vector(node.shape):
            raise NotLiftable(f"{fn.name()} computes a matrix per sample ({node})")
        work[slots_out[0]] = (_lifted(op, node, deps, ones, fn.name()), True)
    outputs = [ca.vertcat(*parts) if parts else ca.MX(fn.numel_out(j), N) for j, parts in enumerate(pieces)]
    for j, out in enumerate(outputs):
        if out.size1() != fn.numel_out(j):
            raise NotLiftable(f"output {fn.name_out(j)} of {fn.name()} was not assembled from vector pieces")
    return ca.Function(f"{fn.name()}_lifted", inputs, outputs, fn.name_in(), fn.name_out())


def _split(op: int, node: ca.MX, value: ca.MX, lifted: bool = False) -> list[ca.MX]:
    """The outputs of a vertical or horizontal split of ``value`` at ``node``'s offsets; of a per-sample
    vector (``lifted``), slices of the rows of its ``(numel, N)`` matrix."""
    offsets = [int(i) for i in node.info()["offset"]]
    if op not in (ca.OP_VERTSPLIT, ca.OP_HORZSPLIT):
        raise NotLiftable(f"no matrix rule for the operation {node} with several outputs (CasADi operation {op})")
    if lifted:
        if not _is_vector(node.dep(0).shape):
            raise NotLiftable(f"a split of a matrix per sample ({node})")
        return [value[a:b, :] for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
    return (ca.vertsplit if op == ca.OP_VERTSPLIT else ca.horzsplit)(value, offsets)


def _per_sample(value: ca.MX, lifted: bool, numel: int, ones: ca.DM) -> ca.MX:
    """A dependency as a ``(numel, N)`` matrix: per-sample values as stored (a per-sample scalar
    repeated over the rows when numel > 1), a shared value repeated over the columns."""
    if lifted:
        return value if value.size1() == numel else ca.repmat(value, numel, 1)
    return ca.densify(ca.reshape(value, value.numel(), 1)) @ ones if value.numel() > 1 else value


def _lifted(op: int, node: ca.MX, deps: list[tuple[ca.MX, bool]], ones: ca.DM, name: str) -> ca.MX:
    """The output of one operation with at least one per-sample dependency, as a ``(numel, N)`` matrix."""
    numel = node.numel()
    if op in _UNARY:
        return ca.MX.unary(op, deps[0][0])
    if op in _BINARY:
        a, b = (_per_sample(v, lifted, numel, ones) if (lifted or v.numel() > 1) else v for v, lifted in deps)
        return ca.MX.binary(op, a, b)
    if op == ca.OP_MTIMES:  # z + x y, dependencies (z, x, y)
        (z, z_lifted), (x, x_lifted), (y, y_lifted) = deps
        sx, sy = node.dep(1).shape, node.dep(2).shape
        if not x_lifted and sy[1] == 1:  # shared matrix times a column per sample
            product = ca.densify(x) @ y
        elif not y_lifted and sx[0] == 1:  # a row per sample times a shared matrix: (xᵀ B)ᵀ = Bᵀ x
            product = ca.densify(y).T @ x
        elif x_lifted and y_lifted and sx[0] == 1 and sy[1] == 1:  # row times column: a scalar per sample
            product = ca.sum1(x * y)
        elif x_lifted and y_lifted and (sx == (1, 1) or sy == (1, 1)):  # a per-sample scalar times a vector
            product = _per_sample(x, True, numel, ones) * _per_sample(y, True, numel, ones)
        else:
            raise NotLiftable(f"{name}: no matrix rule for the product {node} of per-sample matrices")
        return product + _per_sample(z, z_lifted, numel, ones) if z.nnz() else product
    if op == ca.OP_DOT:
        (a, a_lifted), (b, b_lifted) = deps
        n = node.dep(0).numel()
        return ca.sum1(_per_sample(a, a_lifted, n, ones) * _per_sample(b, b_lifted, n, ones))
    if op in (ca.OP_NORM2, ca.OP_NORMF):
        return ca.sqrt(ca.sum1(deps[0][0] ** 2))
    if op == ca.OP_NORM1:
        return ca.sum1(ca.fabs(deps[0][0]))
    if op in (ca.OP_VERTCAT, ca.OP_HORZCAT):  # of vectors: their entries one after the other
        return ca.vertcat(*(_per_sample(v, lifted, node.dep(j).numel(), ones) for j, (v, lifted) in enumerate(deps)))
    if op in _REORDERING:  # of a vector into a vector: the same entries in the same order
        return deps[0][0]
    if op == ca.OP_GETNONZEROS:
        return _selection(node) @ deps[0][0]
    raise NotLiftable(f"{name}: no matrix rule for the operation {node} (CasADi operation {op})")


def _selection(node: ca.MX) -> ca.DM:
    """The constant 0/1 matrix taking the dense entries of a vector to those of ``node``, a selection of
    its nonzeros (CasADi's GetNonzeros, whose indices count the dependency's nonzeros)."""
    info = node.info()
    if "nz" in info:
        nz = np.asarray(info["nz"], dtype=int)
    elif "slice" in info:
        nz = np.arange(info["slice"]["start"], info["slice"]["stop"], info["slice"]["step"])
    else:
        inner, outer = info["inner"], info["outer"]
        nz = (np.arange(outer["start"], outer["stop"], outer["step"])[:, None]
              + np.arange(inner["start"], inner["stop"], inner["step"])[None, :]).reshape(-1)
    source = np.asarray(node.dep(0).sparsity().find())  # dense index of each nonzero of the dependency
    target = np.asarray(node.sparsity().find())
    keep = nz >= 0  # -1 marks a structural zero of the result
    rows, cols = target[keep], source[nz[keep]]
    order = np.lexsort((rows, cols))
    sp = ca.Sparsity.triplet(node.numel(), node.dep(0).numel(), rows[order].tolist(), cols[order].tolist())
    return ca.DM(sp, 1.0)


def matrix_stage(problem, method: str) -> tuple[ca.Function, ca.Function]:
    """The integrator step and the terminal cost of all samples at once, by :func:`lift`.

    Returns ``step: (X, u, Y, h) -> (X_next, q)`` with ``X`` (nx, N), ``Y`` (ny, N), ``q`` (1, N) the
    samples' running-cost quadratures (the step of :func:`~turnpike.transcription.integrator_step`,
    the same numbers as :func:`~turnpike.transcription.stage_function` for each sample), and
    ``terminal: (X, u, Y) -> (1, N)``.

    Raises:
        NotLiftable: the problem's functions are not MX, or have an operation with no matrix rule.
    """
    N = problem.n_samples
    f = lift(problem.dynamics, {0, 2}, N)
    L = lift(problem.running_cost, {0, 2}, N)
    terminal = lift(problem.terminal_cost, {0, 2}, N)
    X, Y = ca.MX.sym("X", problem.nx, N), ca.MX.sym("Y", problem.ny, N)
    u, h = ca.MX.sym("u", problem.nu), ca.MX.sym("h")
    X_next, q = integrator_step(lambda Z: (f(Z, u, Y), L(Z, u, Y)), X, h, method)
    step = ca.Function("matrix_step", [X, u, Y, h], [X_next, q], ["X", "u", "Y", "h"], ["X_next", "q"])
    return step, terminal


class EnsembleObjective:
    """The ensemble terms of the reduced objective, their gradient and exact Hessian-vector products.

    On the grid of :mod:`turnpike.transcription` (``h = T/steps``, ``u_k`` on interval k, one step
    ``X_{k+1} = F(X_k, u_k)`` of the integrator for all samples, quadratures ``q_k``)

    .. math::  J(u) = \\frac1N \\Big( \\sum_k \\sum_i q_{k,i} + \\sum_i φ(x_{n,i}, u_{n-1}, y_i) \\Big)

    without the control costs. ``∇J`` is CasADi's reverse mode of this graph (the discrete adjoint)
    and ``∇²J v`` its forward mode over the reverse mode, exact to round-off. The graph calls one
    stage function per interval, so its derivatives keep only the states ``X_k`` between stages
    and evaluate each stage again inside (memory ``O(N steps nx)`` plus one stage's work).

    The stage is :func:`matrix_stage` (``path == "matrix"``: matrix products on ``(·, N)``
    matrices, its derivatives matrix products too) when the problem's functions lift, else each
    sample's SX step mapped over the samples (``path == "per sample"``; ``reason`` says why).
    """

    def __init__(self, problem, steps: int, method: str):
        N = problem.n_samples
        try:
            step, terminal = matrix_stage(problem, method)
            self.path, self.reason = "matrix", ""
        except NotLiftable as exc:
            self.path, self.reason = "per sample", str(exc)
            step = stage_function(problem, method).map(N)
            terminal = problem.terminal_cost.map(N, [False, True, False], [False])  # u shared
        U = ca.MX.sym("U", problem.nu, steps)
        Y, h = ca.MX.sym("Y", problem.ny, N), ca.MX.sym("h")
        # E_k is added to X_{k+1} (E = 0 in every evaluation): ∂J/∂E_k = ∂J/∂x_{k+1} is the adjoint.
        E = ca.MX.sym("E", problem.nx, N * steps)
        X, total = ca.MX(ca.DM(problem.x0_samples.T)), 0
        for k in range(steps):
            X, q = step(X, U[:, k], Y, h)
            X += E[:, k * N:(k + 1) * N]
            total += ca.sum2(q)
        J = (total + ca.sum2(terminal(X, U[:, -1], Y))) / N  # φ reads the constant controls of u_{n-1}
        grad = ca.gradient(J, U)
        V = ca.MX.sym("V", problem.nu, steps)
        self._value_and_gradient = ca.Function("ensemble_gradient", [U, Y, h, E], [J, grad])
        self._adjoint = ca.Function("ensemble_adjoint", [U, Y, h, E], [ca.gradient(J, E)])
        self._hessian_vector = ca.Function("ensemble_hessian_vector", [U, Y, h, E, V], [ca.jtimes(grad, U, V)])
        self.N, self.nx, self.steps = N, problem.nx, steps

    def value_and_gradient(self, u: np.ndarray, y: np.ndarray, h: float) -> tuple[float, np.ndarray]:
        """``J`` and ``∇_u J`` (steps, nu) at controls ``u`` (steps, nu), data ``y`` (N, ny), step ``h``."""
        J, g = self._value_and_gradient(np.asarray(u, dtype=float).T, np.asarray(y, dtype=float).T, h, 0)
        return float(J), np.asarray(g).T

    def hessian_vector(self, u: np.ndarray, y: np.ndarray, h: float, v: np.ndarray) -> np.ndarray:
        """``∇²_u J v`` (steps, nu) at controls ``u`` in the direction ``v`` (both (steps, nu))."""
        Hv = self._hessian_vector(np.asarray(u, dtype=float).T, np.asarray(y, dtype=float).T, h, 0,
                                  np.asarray(v, dtype=float).T)
        return np.asarray(Hv).T

    def adjoint(self, u: np.ndarray, y: np.ndarray, h: float) -> np.ndarray:
        """The discrete adjoint ``∂J/∂x_{i,k}`` at ``t_1, …, t_n``, shape (steps, N, nx): ``p_{i,k}/N`` in the
        notation of :mod:`turnpike.reduced` (``p_n = ∇φ``, ``p_k = ∇_x q_k + F_xᵀ p_{k+1}`` per sample)."""
        dE = self._adjoint(np.asarray(u, dtype=float).T, np.asarray(y, dtype=float).T, h, 0)
        return np.asarray(dE).reshape(self.nx, self.N, self.steps, order="F").transpose(2, 1, 0)
