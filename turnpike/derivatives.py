"""Stage-wise first and second derivatives of the multiple-shooting NLP, for IPOPT.

CasADi's default is to differentiate the whole NLP graph (MX, stages ``map``-ped) when the
solver is built: slow to build (the Lagrangian Hessian of the graph) and slow to evaluate.
The NLP of :class:`~turnpike.transcription.MultipleShooting` is a sum of stage terms, so its
derivatives are block-structured and each block is a derivative of one stage. Here the gradient is the
stage's SX gradient, ``map``-ped over the stages. The constraint Jacobian and the Lagrangian Hessian go one
level further down: the samples of an ensemble are independent given the controls, so their blocks are
first and second derivatives of one sample's stage (:class:`SampleDerivatives`), evaluated over all
sample-stages in one call (compiled where that pays, :data:`COMPILE_WORK`) and placed into the sparse
matrices in numpy (:func:`constraint_jacobian`, :func:`lagrangian_hessian`).

With ``z_k = (X_k, u_k, [V_k])`` (the split ``V_k = (u⁺_k, u⁻_k)`` only with an L1 term or bound),
``p = (h, Y)``, the stage cost ``c(z_k) = q̄(X_k, u_k) + λ2 h|u_k|² + λ1 h Σ V_k`` (``q̄`` the sample mean of
``q``) and the stage part of the constraints ``s(z_k) = (-F(X_k, u_k), [u_k - u⁺_k + u⁻_k], [Σ V_k])`` (the
brackets with the split, and with an L1 bound), the NLP is

.. math::

    J(w) = \\sum_k c(z_k) + Φ(X_n), \\qquad g_k(w) = s(z_k) + (X_{k+1}, [0]).

* ``grad_f``: ``(w, p) -> (J, ∇J)``, ``∇J = (∇c(z_0), ..., ∇c(z_{n-1}), ∇Φ(X_n))``.
* ``jac_g``: ``(w, p) -> (g, ∂g/∂w)``; block row k holds ``∂s/∂z_k`` in the columns of ``z_k``
  and the identity in those of ``X_{k+1}``.
* ``hess_lag``: ``(w, p, σ, λ) -> triu ∇²_w (σ J + λᵀ g)``, CasADi's Lagrangian and sign
  convention (``+λᵀ g``, with ``λ`` the ``lam_g`` that ``nlpsol`` returns). It is block diagonal:
  block k is ``∇²_{z_k}(σ c(z_k) + λ_kᵀ s(z_k))`` in ``(X_k, u_k)`` (the identity, the split's ties and
  the L1 terms are linear and drop out: nothing in the columns of ``V_k``), the last block ``σ ∇²Φ(X_n)``.
  Only the upper triangle is returned, as IPOPT expects.

These are passed to ``casadi.nlpsol("ipopt", ...)`` as its options ``grad_f``, ``jac_g`` and
``hess_lag``; they equal CasADi's own derivatives of the NLP to rounding.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import casadi as ca
import numpy as np

from .compiled import compiled, lanes_map, threads

if TYPE_CHECKING:
    from .transcription import MultipleShooting

__all__ = ["COMPILE_WORK", "Batch", "NumpyFunction", "SampleDerivatives", "constraint_jacobian", "lagrangian_hessian",
           "sample_blocks", "stagewise_derivatives"]


class NumpyFunction(ca.Callback):
    """A CasADi Function evaluated by a Python function on numpy arrays (for IPOPT's options).

    ``fn`` receives the inputs' nonzeros as flat arrays and returns the outputs' nonzeros
    (column-major); they are copied into CasADi's buffers, with no DM in between (a DM costs
    about 100 ns per value: 60 ms for a 1000 x 1000 Hessian). With ``writes``, ``fn`` instead receives
    the output arrays (views of CasADi's buffers, or new arrays for outputs not asked for) as a last
    argument and writes into them: no copy of a large output. With ``gradient`` (a Function
    ``(x, p) -> (f, ∇_x f)`` of a scalar ``fn``) it has a reverse mode, which nlpsol needs to build.
    """

    def __init__(self, name: str, fn, names_in, sparsity_in, names_out, sparsity_out, gradient=None, writes=False):
        ca.Callback.__init__(self)
        self._fn, self._gradient, self._writes = fn, gradient, writes
        self._in, self._out = list(zip(names_in, sparsity_in, strict=True)), list(
            zip(names_out, sparsity_out, strict=True)
        )
        self.construct(name, {})

    def get_n_in(self):
        return len(self._in)

    def get_n_out(self):
        return len(self._out)

    def get_name_in(self, i):
        return self._in[i][0]

    def get_name_out(self, i):
        return self._out[i][0]

    def get_sparsity_in(self, i):
        return self._in[i][1]

    def get_sparsity_out(self, i):
        return self._out[i][1]

    def has_eval_buffer(self):
        return True

    def has_reverse(self, nadj):
        return self._gradient is not None and nadj == 1

    def get_reverse(self, nadj, name, inames, onames, opts):
        """The reverse mode of a scalar function of ``(x, p)`` whose ``gradient(x, p) -> (f, ∇_x f)`` is known:
        ``x̄ = f̄ ∇_x f``; ``p̄`` is not known and is NaN (IPOPT is built with ``calc_lam_p`` off)."""
        x, p, f, f_bar = (ca.MX.sym(n, self.sparsity_in(i) if i < 2 else self.sparsity_out(0))
                          for i, n in enumerate(inames))
        return ca.Function(name, [x, p, f, f_bar], [f_bar * self._gradient(x, p)[1], ca.MX.nan(p.sparsity())],
                           inames, onames, opts)

    def eval_buffer(self, arg, res):
        inputs = (np.zeros(self._in[i][1].nnz()) if a is None else np.frombuffer(a, dtype=np.float64)
                  for i, a in enumerate(arg))  # None: an input not given, which is zero
        if self._writes:
            self._fn(*inputs, [np.empty(self._out[i][1].nnz()) if b is None else np.frombuffer(b, dtype=np.float64)
                               for i, b in enumerate(res)])
            return 0
        values = self._fn(*inputs)
        for buffer, value in zip(res, values, strict=True):
            if buffer is not None:
                np.frombuffer(buffer, dtype=np.float64)[:] = value
        return 0


class Batch:
    """``fn`` evaluated on numpy arrays through CasADi's buffer interface (no DM conversions).

    Inputs are broadcast to ``fn``'s input shapes; outputs are new Fortran-ordered arrays of
    ``fn``'s output shapes. A function with sparse inputs or outputs (structural zeros) is wrapped once in one
    with dense ones, since the buffers hold every entry.
    """

    def __init__(self, fn: ca.Function):
        sparse = [fn.sparsity_in(i) for i in range(fn.n_in())] + [fn.sparsity_out(i) for i in range(fn.n_out())]
        if not all(s.is_dense() for s in sparse):
            args = [ca.MX.sym(fn.name_in(i), fn.size_in(i)) for i in range(fn.n_in())]
            fn = ca.Function(fn.name(), args, [ca.densify(out) for out in fn.call(args)])
        self.fn = fn
        self.buffer, self.evaluate = fn.buffer()

    def __call__(self, *args) -> list[np.ndarray]:
        fn = self.fn
        # CasADi reads and writes the column-major nonzeros as flat, C-contiguous buffers.
        flat = [np.broadcast_to(np.asarray(a, dtype=float), fn.size_in(i)).ravel(order="F")
                for i, a in enumerate(args)]
        out = [np.empty(fn.nnz_out(i)) for i in range(fn.n_out())]
        for i, a in enumerate(flat):
            self.buffer.set_arg(i, memoryview(a))
        for i, o in enumerate(out):
            self.buffer.set_res(i, memoryview(o))
        self.evaluate()
        if self.buffer.ret() != 0:
            raise RuntimeError(f"evaluation of {fn.name()} failed")
        return [o.reshape(fn.size_out(i), order="F") for i, o in enumerate(out)]


class SampleDerivatives:
    """One sample's stage and terminal cost, differentiated once in SX and evaluated over many sample-stages.

    ``step`` is ``(x, u, y, h) -> (F, q)``, one interval of one sample (``x_{k+1} = F(x_k, u_k)``, ``q`` the
    running cost's quadrature), and ``terminal`` is ``(x, y) -> φ``. Three SX functions of one sample, dense
    outputs (read as flat arrays):

    * ``"first"``: ``(x, u, y, h) -> (vec ∂F/∂x, vec ∂F/∂u, ∇_x q, ∇_u q)``;
    * ``"second"``: ``(x, u, y, h, σ, λ) -> (vec Q, vec S, vec R)``, the blocks of the Hessian of the stage
      Lagrangian ``ℓ = σ q + λᵀ F`` in ``(x, u)``: ``Q = ∇²_{xx} ℓ`` (nx, nx), ``S = ∇²_{ux} ℓ`` (nu, nx),
      ``R = ∇²_{uu} ℓ`` (nu, nu); ``R`` is summed over each group of consecutive items (the samples of a
      stage, which share ``u``);
    * ``"terminal"``: ``(x, y) -> (φ, ∇φ, vec ∇²φ)``;
    * ``"gauss_newton"``: ``(x, u, y, h, s) -> (∂(sᵀF)/∂x, ∂(sᵀF)/∂u)``, the rows ``sᵀ ∂F/∂(x, u)`` for a seed s (one
      reverse sweep: 42 k instructions for the width-200 bottleneck, where the Jacobian ``∂F/∂(x, u)`` has 139 k),
      and ``"running_curvature"``: ``(x, u, y, h) -> vec ∇²_{xx} q``; what the Gauss–Newton blocks of the reduced
      Hessian read (:meth:`turnpike.reduced.ReducedSpace.gauss_newton`).

    :meth:`mapped` evaluates one of them over ``M`` items (sample-stages) in one call: as vectorised C when
    asked to and a compiler is there (:func:`~turnpike.compiled.lanes_map`, compiled once per
    machine), else by CasADi's ``map`` (its SX virtual machine, or a compiled external where possible).
    The reduced Hessian (:mod:`turnpike.reduced`) and the multiple-shooting Hessian
    (:func:`lagrangian_hessian`) are both assembled from these blocks.
    """

    #: Per function: the inputs that are one number for every item (h, σ), and the outputs summed over each group (R).
    _SHARED = {"first": {3}, "second": {3, 4}, "gauss_newton": {3}, "running_curvature": {3}}
    _SUMMED = {"second": {2}}

    def __init__(self, step: ca.Function, terminal: ca.Function):
        self.nx, self.nu, self.ny = step.size1_in(0), step.size1_in(1), step.size1_in(2)
        x, u, y, h = (ca.SX.sym(n, k) for n, k in (("x", self.nx), ("u", self.nu), ("y", self.ny), ("h", 1)))
        self._symbols = (step, terminal, x, u, y, h)
        self._functions: dict[str, ca.Function] = {}
        self._lanes: dict[str, object] = {}
        self._maps: dict[tuple, Batch] = {}

    def function(self, name: str) -> ca.Function:
        """The SX function ``name`` (see the class docstring), built on first use."""
        if name not in self._functions:
            step, terminal, x, u, y, h = self._symbols
            x_next, q = step(x, u, y, h)
            if name == "first":
                out = [ca.jacobian(x_next, x), ca.jacobian(x_next, u), ca.gradient(q, x), ca.gradient(q, u)]
                args = [x, u, y, h]
            elif name == "second":
                sigma, lam = ca.SX.sym("sigma"), ca.SX.sym("lam", self.nx)
                H = ca.hessian(sigma * q + ca.dot(lam, x_next), ca.vertcat(x, u))[0]
                out = [H[: self.nx, : self.nx], H[self.nx :, : self.nx], H[self.nx :, self.nx :]]
                args = [x, u, y, h, sigma, lam]
            elif name == "gauss_newton":
                seed = ca.SX.sym("s", self.nx)
                out = [ca.gradient(ca.dot(seed, x_next), x), ca.gradient(ca.dot(seed, x_next), u)]
                args = [x, u, y, h, seed]
            elif name == "running_curvature":
                out, args = [ca.hessian(q, x)[0]], [x, u, y, h]
            elif name == "terminal":
                phi = terminal(x, y)
                out, args = [phi, ca.gradient(phi, x), ca.hessian(phi, x)[0]], [x, y]
            else:
                raise ValueError(f"no sample derivative {name!r}: 'first', 'second', 'gauss_newton', "
                                 "'running_curvature' or 'terminal'")
            self._functions[name] = ca.Function(f"sample_{name}", args, [ca.densify(ca.vec(e)) for e in out])
        return self._functions[name]

    def lanes(self, name: str):
        """The lane code of the function ``name`` other than ``"terminal"`` (see :func:`~turnpike.compiled.lanes_map`),
        or None (no compiler, or an operation the lane code does not write)."""
        if name not in self._lanes:
            self._lanes[name] = lanes_map(self.function(name), shared=self._SHARED[name],
                                          summed=self._SUMMED.get(name, set()))
        return self._lanes[name]

    def mapped(self, name: str, copies: int, group: int = 1, *, compile: bool = True):
        """``name`` evaluated over ``copies`` items: a call ``(*inputs) -> outputs``, each input ``(nnz, copies)``
        or one column broadcast (``h`` and ``σ`` are scalars), each output ``(nnz, copies)``, except ``R`` of
        ``"second"``, summed over each ``group`` of consecutive items: ``(nnz, copies / group)``. With ``compile``
        false, CasADi's ``map`` of the SX function (no compilation)."""
        lanes = self.lanes(name) if compile and name != "terminal" else None
        if lanes is not None:
            return lambda *args: lanes(copies, group, *args)
        key = (name, copies, group, threads(), compile)
        if key not in self._maps:
            fn = fast = self.function(name)
            if compile and name != "terminal":
                fast = compiled(fn)
            fn = fn if fast is None else fast
            if group > 1:
                fn = fn.map(f"{fn.name()}_group", "serial", group, [], sorted(self._SUMMED.get(name, ())))
            self._maps[key] = Batch(fn if copies == group else fn.map(copies // group, "thread", key[3]))
        return self._maps[key]


def _compressed(shape: tuple[int, int], rows: np.ndarray, per_column: np.ndarray) -> ca.Sparsity:
    """The sparsity with ``per_column[j]`` nonzeros in column j, at ``rows`` (column by column). Given as lists:
    CasADi converts a numpy array element by element (5.6 s for 2.5 M rows, against 0.2 s for a list)."""
    return ca.Sparsity(*shape, [0, *np.cumsum(per_column).tolist()], rows.tolist())


#: The multiple-shooting Jacobian and Hessian compile the sample-stage's first- and second-order functions (lane
#: code, once per machine) when one evaluation runs at least this many of the function's SX instructions
#: (``n_instructions · N · steps``); below, CasADi's virtual machine evaluates it (about 5 ns an instruction: 50 ms
#: here), which needs no compiler and no wait. On the sparse example's instance (N = 8, nx = 7, nu = 56, RK4) the
#: first-order function has 7.8 k instructions (its lane code compiled in 3.8 s) and the second-order one 52 k
#: (76 s): the Jacobian is compiled from 160 steps, the Hessian from 24. At 200 steps one Jacobian took 58 ms in
#: the virtual machine and 12 ms compiled; at 100 steps one Hessian 0.43 s from the ensemble's SX Hessian, 33 ms
#: compiled (2026-12-03/04).
COMPILE_WORK = 10_000_000


def sample_blocks(samples: SampleDerivatives, name: str, items: int, group: int = 1, calls: int = 1):
    """``samples.mapped(name, items, group)``, compiled when ``calls`` evaluations of it (those that one use of the
    result makes) run at least :data:`COMPILE_WORK` of its instructions, and how it is evaluated (``"compiled lane
    code"`` or ``"CasADi map"``)."""
    compile = samples.function(name).n_instructions() * items * calls >= COMPILE_WORK
    how = "compiled lane code" if compile and samples.lanes(name) is not None else "CasADi map"
    return samples.mapped(name, items, group, compile=compile), how


def lagrangian_hessian(ms: MultipleShooting, samples: SampleDerivatives) -> NumpyFunction:
    """IPOPT's ``hess_lag`` for ``ms.nlp`` (the upper triangle), assembled in numpy from the blocks of each sample
    and stage (:class:`SampleDerivatives` of one sample's stage and terminal cost).

    Block k of the Hessian (see the module docstring) is ``∇²_{z_k}`` of ``σ c(z_k) + λ_kᵀ s(z_k)``. Per sample i,
    with ``F_i`` its step and ``q_i`` its running cost, the part of the Lagrangian that is not linear is
    ``ℓ_{ik} = (σ/N) q_i - ν_{ik}ᵀ F_i`` (``ν_{ik}`` the multipliers of sample i's gaps), whose Hessian in
    ``(x_i, u)`` has the blocks ``Q_{ik}, S_{ik}, R_{ik}``; the control cost adds ``2σλ2h I`` in u. So block k has
    ``Q_{ik}`` on the diagonal of the states, ``S_{ik}`` between sample i's states and the controls, and
    ``Σ_i R_{ik} + 2σλ2h I`` in the controls ``u_k`` (the split's columns ``V_k`` are empty). The terminal block
    is ``(σ/N) ∇²φ(x_{n,i})`` per sample. The pattern is these blocks, dense: the nonzeros the SX Hessian of
    the whole ensemble stage had on the neural-ODE fields.
    """
    P, lay, steps = ms.problem, ms.layout, ms.steps
    N, nx, nu, ny = P.n_samples, P.nx, P.nu, P.ny
    n_state, n_stage, n_g, M = lay.n_state, lay.n_stage, ms.n_g_stage, steps * N
    (second, how), terminal = sample_blocks(samples, "second", M, N), samples.mapped("terminal", N)

    # One stage's pattern: per column (ascending), its rows, and where each value sits in the stage's values
    # (Q of every sample, S of every sample, then R; each column-major).
    o_S, o_R = N * nx * nx, N * nx * nx + N * nu * nx
    rows, index, counts = [], [], []
    for i in range(N):  # the state columns of sample i: its own states, upper triangle
        for b in range(nx):
            a = np.arange(b + 1)
            rows.append(i * nx + a), index.append(i * nx * nx + a + nx * b)
            counts.append(b + 1)
    states = np.arange(n_state)
    for c in range(nu):  # a column of u_k: every state, then the controls up to this one
        i, b = states // nx, states % nx
        upto = np.arange(c + 1)
        rows.append(np.concatenate([states, n_state + upto]))
        index.append(np.concatenate([o_S + i * nu * nx + c + nu * b, o_R + upto + nu * c]))
        counts.append(n_state + c + 1)
    counts += [0] * (lay.n_control - nu)  # the split's columns
    rows, index = np.concatenate(rows), np.concatenate(index)
    term_cols = [(i, b) for i in range(N) for b in range(nx)]
    term_rows = np.concatenate([i * nx + np.arange(b + 1) for i, b in term_cols])
    term_index = np.concatenate([i * nx * nx + np.arange(b + 1) + nx * b for i, b in term_cols])
    all_rows = np.concatenate([(rows[None, :] + n_stage * np.arange(steps)[:, None]).ravel(),
                               steps * n_stage + term_rows])
    per_column = np.concatenate([np.tile(counts, steps), [b + 1 for _, b in term_cols]])
    pattern = _compressed((lay.n_w, lay.n_w), all_rows, per_column)
    diagonal = np.arange(nu) * (nu + 1)

    def hess_lag(w, p, lam_f, lam_g, out):
        sigma, h, Y = lam_f[0], p[0], p[1:].reshape(N, ny).T
        stages = w[: steps * n_stage].reshape(steps, n_stage)
        u = stages[:, n_state: n_state + nu]
        nu_gap = lam_g.reshape(steps, n_g)[:, :n_state]
        Q, S, R = second(stages[:, :n_state].reshape(M, nx).T, np.repeat(u, N, axis=0).T, np.tile(Y, steps), h,
                         sigma / N, -nu_gap.reshape(M, nx).T)
        R = R.T.copy()
        R[:, diagonal] += 2 * sigma * P.l2 * h
        values = np.hstack([Q.T.reshape(steps, o_S), S.T.reshape(steps, o_R - o_S), R])
        phi_xx = terminal(w[steps * n_stage:].reshape(N, nx).T, Y)[2].T.reshape(-1)
        blocks = out[0][: steps * index.size].reshape(steps, index.size)  # written in place: 41 MB at 400 stages
        np.take(values, index, axis=1, out=blocks, mode="clip")  # "raise" would go through a temporary
        np.multiply(phi_xx[term_index], sigma / N, out=out[0][steps * index.size:])

    dense = ca.Sparsity.dense
    fn = NumpyFunction("hess_lag", hess_lag, ["x", "p", "lam_f", "lam_g"],
                       [dense(lay.n_w), dense(1 + ny * N), dense(1), dense(n_g * steps)], ["hess_gamma_x_x"], [pattern],
                       writes=True)
    fn.evaluation = how
    return fn


def constraint_jacobian(ms: MultipleShooting, samples: SampleDerivatives) -> NumpyFunction:
    """IPOPT's ``jac_g`` for ``ms.nlp``: ``(w, p) -> (g, ∂g/∂w)``, assembled in numpy from the blocks of each sample
    and stage (``A_{ik} = ∂F/∂x``, ``B_{ik} = ∂F/∂u`` of :class:`SampleDerivatives`).

    Block row k (the gaps ``X_{k+1} - F(X_k, u_k)`` of stage k, then with the split its ties
    ``u_k - u⁺_k + u⁻_k``, then its L1-bound row ``Σ V_k``, if any) has ``-A_{ik}`` in the columns of sample i's
    states ``x_{ik}``, ``-B_{ik}`` in those of ``u_k``, the identity in those of ``X_{k+1}``, and constants in
    the ties (``I, -I, I`` in the columns of ``u_k, u⁺_k, u⁻_k``) and the L1 row (ones in those of ``V_k``). The
    gaps' values ``g`` come from the ensemble stage (``ms.dynamics``), mapped over the stages.
    """
    P, lay, steps = ms.problem, ms.layout, ms.steps
    N, nx, nu, ny = P.n_samples, P.nx, P.nu, P.ny
    n_state, n_stage, n_g, M = lay.n_state, lay.n_stage, ms.n_g_stage, steps * N
    split, bound = lay.split, P.l1_bound is not None
    first, how = sample_blocks(samples, "first", M)
    dynamics = Batch(ms.dynamics.map(steps))

    # One stage k >= 1: per column, its rows relative to block row k, and where each value sits in the stage's
    # values (A of every sample, then B; each column-major) with its factor; an index of -1 is the constant factor.
    o_B = N * nx * nx
    rows, index, factor, counts, identity = [], [], [], [], []
    for i in range(N):  # the columns of x_ik: the identity of gap k - 1, then -A_ik in sample i's gaps
        for b in range(nx):
            a = np.arange(nx)
            rows += [[i * nx + b - n_g], i * nx + a]
            index += [[-1], i * nx * nx + a + nx * b]
            factor += [[1.0], -np.ones(nx)]
            identity += [[True], np.zeros(nx, dtype=bool)]
            counts.append(nx + 1)
    states = np.arange(n_state)
    for c in range(nu):  # the columns of u_k: -B_ik in every gap, then its tie
        i, a = states // nx, states % nx
        rows += [states, [n_state + c] * split]
        index += [o_B + i * nx * nu + a + nx * c, [-1] * split]
        factor += [-np.ones(n_state), [1.0] * split]
        identity += [np.zeros(n_state, dtype=bool), [False] * split]
        counts.append(n_state + split)
    for c in range(lay.n_control - nu):  # the columns of u⁺_k, then u⁻_k: the tie, then the L1 row
        rows += [[n_state + c % nu], [n_state + nu] * bound]
        index += [[-1], [-1] * bound]
        factor += [[-1.0 if c < nu else 1.0], [1.0] * bound]
        identity += [[False], [False] * bound]
        counts.append(1 + bound)
    rows, index = (np.concatenate(v).astype(np.int64) for v in (rows, index))
    factor, identity = np.concatenate(factor), np.concatenate(identity).astype(bool)
    constant = index < 0
    index[constant] = 0
    keep0 = ~identity  # stage 0 has no gap before it
    all_rows = np.concatenate([rows[keep0], (rows[None, :] + n_g * np.arange(1, steps)[:, None]).ravel(),
                               (steps - 1) * n_g + states])
    per_column = np.concatenate([np.asarray(counts) - np.r_[np.ones(n_state, int), np.zeros(lay.n_control, int)],
                                 np.tile(counts, steps - 1), np.ones(n_state, int)])
    pattern = _compressed((n_g * steps, lay.n_w), all_rows, per_column)
    n0 = int(keep0.sum())

    def jac_g(w, p, out):
        h, Y = p[0], p[1:].reshape(N, ny).T
        X, u, V = lay.parts(w[: steps * n_stage].reshape(steps, n_stage).T)
        A, B, _, _ = first(X.T.reshape(M, nx).T, np.repeat(u.T, N, axis=0).T, np.tile(Y, steps), h)
        values = np.hstack([A.T.reshape(steps, o_B), B.T.reshape(steps, N * nx * nu)])
        body = out[1][n0: n0 + (steps - 1) * index.size].reshape(steps - 1, index.size)
        np.take(values[1:], index, axis=1, out=body, mode="clip")
        body *= factor
        body[:, constant] = factor[constant]
        head = out[1][:n0]
        head[:] = values[0, index[keep0]] * factor[keep0]
        head[constant[keep0]] = factor[keep0][constant[keep0]]
        out[1][n0 + (steps - 1) * index.size:] = 1.0
        X_next = dynamics(X, u, p[1:, None], h)[0]  # (n_state, steps)
        rows = [np.hstack([X[:, 1:], w[steps * n_stage:][:, None]]) - X_next]
        if split:
            rows.append(u - V[:nu] + V[nu:])
        if bound:
            rows.append(V.sum(axis=0, keepdims=True))
        out[0][:] = np.vstack(rows).T.reshape(-1)

    dense = ca.Sparsity.dense
    fn = NumpyFunction("jac_g", jac_g, ["x", "p"], [dense(lay.n_w), dense(1 + ny * N)], ["g", "jac_g_x"],
                       [dense(n_g * steps), pattern], writes=True)
    fn.evaluation = how
    return fn


def stagewise_derivatives(ms: MultipleShooting) -> dict[str, ca.Function]:
    """``{"grad_f", "jac_g", "hess_lag"}`` for ``ms.nlp``, in the layout of ``casadi.nlpsol`` options.

    See the module docstring for the mathematics. ``grad_f`` is an MX graph that maps the SX gradient of the
    ensemble stage over the ``steps`` stages; ``jac_g`` and ``hess_lag`` are :func:`constraint_jacobian` and
    :func:`lagrangian_hessian`, from the derivatives of one sample's stage.
    """
    P, lay, steps = ms.problem, ms.layout, ms.steps
    n_state, n_stage = lay.n_state, lay.n_stage

    # One stage of the ensemble, SX: z = (X, u, [V]) -> its cost c and the gradient.
    X = ca.SX.sym("X", n_state)
    u = ca.SX.sym("u", P.nu)
    V = ca.SX.sym("V", lay.n_control - P.nu)  # the split (u⁺, u⁻), or nothing
    Y = ca.SX.sym("Y", P.ny * P.n_samples)
    h = ca.SX.sym("h")
    _, q = ms.dynamics(X, u, Y, h)
    c = q[0] + P.l2 * q[1] + P.l1 * h * ca.sum1(V)
    stage_grad = ca.Function("stage_grad", [X, u, V, Y, h], [c, ca.gradient(c, ca.vertcat(X, u, V))])

    phi = ms.terminal(X, Y)
    term_grad = ca.Function("terminal_grad", [X, Y], [phi, ca.gradient(phi, X)])

    # The NLP's variables, sliced stage-wise exactly as in MultipleShooting.
    w = ca.MX.sym("x", lay.n_w)
    p = ca.MX.sym("p", 1 + P.ny * P.n_samples)
    hp, Yp = p[0], p[1:]
    stages = ca.reshape(w[: steps * n_stage], n_stage, steps)
    Xk, Uk = stages[:n_state, :], stages[n_state : n_state + P.nu, :]
    X_end = w[steps * n_stage :]

    ck, gk = stage_grad.map(steps)(Xk, Uk, stages[n_state + P.nu :, :], Yp, hp)
    phi_n, grad_n = term_grad(X_end, Yp)
    # IPOPT reads the gradient and g as dense vectors: structural zeros must be stored.
    grad = ca.densify(ca.vertcat(ca.vec(gk), grad_n))
    grad_f = ca.Function("grad_f", [w, p], [ca.sum2(ck) + phi_n, grad], ["x", "p"], ["f", "grad_f_x"])

    x, y = ca.SX.sym("x", P.nx), ca.SX.sym("y", P.ny)
    samples = SampleDerivatives(ms.sample_stage, ca.Function("phi", [x, y], [P.terminal_cost(x, 0, y)]))
    return {"grad_f": grad_f, "jac_g": constraint_jacobian(ms, samples), "hess_lag": lagrangian_hessian(ms, samples)}
