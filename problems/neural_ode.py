"""Neural-ODE classification posed as finite-horizon optimal control (docs/mathematics.md §1).

Every data point ``x_i ∈ R^d`` (augmented by ``a`` zeros to ``R^D``, ``D = d + a``) flows by one
shared control ``u(t)`` (the weights):

* ``"inner"``:      ``f = w σ(A x + b)``,            ``u = (w, A, b) ∈ R^{D×D} × R^{D×D} × R^D``;
* ``"outer"``:      ``f = w σ(x) + b``,              ``u = (w, b)``, linear in u;
* ``"bottleneck"``: ``f = W2 σ(W1 x + b1) + b2``,    ``u = (W2, W1, b1, b2)``, hidden width ``hidden``.

Matrices are stored column-major in u (CasADi's ``reshape``); ``control_names`` say which entry is which.
Activations ``σ``: ``tanh``,
``sigmoid``, ``relu`` (``max(0, z)``: not twice differentiable, so an interior-point method with
exact Hessian may stall at the kinks) and ``softplus`` (``log(1 + e^z)``, the smooth ReLU that
turnpike recommends with IPOPT).

Classes. Two classes (labels ±1, or 0/1 read as -1/+1) have one score ``z = P x + b``, ``P: R^D -> R``
(default: the last coordinate, ``b = 0``), classified by its sign. K >= 3 classes (labels 0..K-1) have K
scores ``z = P x + b``, ``P ∈ R^{K×D}`` (default: the last K coordinates, augmenting the state when
``D < K``), classified by the largest. With ``output="trainable"`` the map and bias are learned with the
weights, controls constant in time appended to u (``θ = (P, b)``, charged by the control term like the
weights: ``λ ∫ |θ|² dt = λ T |θ|²``). Scores are optionally clipped by ``hardtanh(z) = max(-1, min(1, z))``
(``clip=True``, the output layer of the seed papers' trainer).

Losses of sample i, ``e_k`` the one-hot target of class k:

* ``"squared"``: ``(z_i - y_i)²`` (two classes), ``|z_i - e_{y_i}|²`` (K classes);
* ``"logistic"`` = ``"cross-entropy"`` for two classes: ``log(1 + e^{-y_i z_i})``;
* ``"cross-entropy"`` for K classes: ``log Σ_k e^{z_ik} - z_{i y_i}``, evaluated as
  ``m + log Σ_k e^{z_ik - m}`` with ``m = max_k z_ik`` (no overflow; the value and its derivatives are
  those of the plain formula).

The training error is ``E(x) = (1/N) Σ_i loss_i``.

Costs (every weight explicit; the per-sample terms are averaged over the N samples, as in
:class:`turnpike.Problem`; ``γ`` is ``terminal_weight``, default 1):

* ``"erm"`` (A):       ``γ E(x(T)) + λ ∫ |u|² dt``;
* ``"turnpike"`` (B):  ``γ E(x(T)) + ∫ (α E(x(t)) + λ |u|²) dt``;
* ``"tracking"``:      ``γ E(x(T)) + ∫ (α (1/N) Σ_i |x_i(t) - x̄_i|² + λ |u|²) dt`` with prescribed
  ``x̄`` (``tracking_target``, one row per sample, in the zero-training-error set; default
  :meth:`NeuralODEClassification.label_target`, the nearest point of that set);
* ``"sparse"`` (C):    ``∫ (E(x(t)) + λ |u(t)|_1) dt`` with ``|u(t)|_1 <= M`` (``l1_bound``), L1 exact
  through ``u = u⁺ - u⁻``.

Well posed means a minimiser exists: the control term (λ > 0) or a bounded control set gives that.
``weight=0`` is accepted with ``control_bound`` (a box) and for cost (C) (the L1 ball), refused otherwise;
``terminal_weight=0`` is accepted where a running loss remains (B, tracking).

With ``σ(0) = 0`` (tanh, ReLU) the control ``u = 0`` is a critical point of the inner model, so
:func:`turnpike.solve` starts from seeded random controls. With a trainable output map, ``u = 0, θ = 0`` is
one too, and on data symmetric about the origin (the two circles) a strict local minimiser that the default
start (``guess_scale=0.1``) falls into (J = ``(γ + αT) mean(y²)``, accuracy 50%); ``guess_scale=1``, a warm
start from a fixed map's solution, or :func:`turnpike.multistart` with that scale leaves it (measured: two
circles, inner field, T = 5, 50 steps, ``guess_scale=1``: J = 0.810, accuracy 1).
"""

from __future__ import annotations

import inspect

import casadi as ca
import numpy as np

import turnpike as tp
from turnpike.errors import InputError, check_choice, check_finite, check_nonnegative, check_positive
from turnpike.export import NeuralODE, split_weights, weight_shapes
from turnpike.transcription import stage_function

__all__ = ["NeuralODEClassification", "TrainedNetwork", "ACTIVATIONS", "FIELDS", "COSTS", "LOSSES", "class_labels"]

ACTIVATIONS = {
    "tanh": ca.tanh,
    "sigmoid": lambda z: 1 / (1 + ca.exp(-z)),
    "relu": lambda z: ca.fmax(z, 0),
    "softplus": lambda z: ca.log1p(ca.exp(-ca.fabs(z))) + ca.fmax(z, 0),
}
FIELDS = ("inner", "outer", "bottleneck")
COSTS = ("erm", "turnpike", "tracking", "sparse")
LOSSES = ("squared", "logistic", "cross-entropy")


class NeuralODEClassification(tp.Problem):
    """Classification by a neural ODE (two or more classes), as an ensemble optimal control problem.

    Arguments:
        points: data (N, d).
        labels: (N,) or (N, 1): two classes in {-1, +1} or {0, 1} (stored as ±1 in ``labels``), or K >= 3
            classes as integers 0..K-1 (stored as integers); see :func:`class_labels`.
        classes: K, when some class has no point here (default: read from the labels).
        field: ``"inner"``, ``"outer"`` or ``"bottleneck"``; activation: see ``ACTIVATIONS``.
        augment: number ``a`` of extra state coordinates, starting at 0 (default 0 for two classes,
            ``max(0, K - d)`` for K classes, so that the default output map exists).
        hidden: width of the bottleneck (required for it, an error for the other fields).
        output: the output map P, shape (D,) for two classes and (K, D) for K, default the last coordinate(s);
            or ``"trainable"``: P and a bias b learned, constant in time (not with cost "tracking", whose target
            is set by P, nor "sparse", whose L1 ball bounds the weights of each layer).
        clip: apply ``hardtanh`` to the scores ``P x`` before the loss (and in :meth:`outputs`).
        loss: ``"squared"``, ``"cross-entropy"``, or ``"logistic"`` (two classes, the same as cross-entropy).
        cost: ``"erm"`` (A), ``"turnpike"`` (B), ``"tracking"`` or ``"sparse"`` (C).
        weight: λ >= 0 of the control term (|u|² for A/B/tracking, |u|_1 for C); 0 only where the
            problem stays well posed (with ``control_bound``, or cost C).
        alpha: α >= 0 of the running term of B and tracking (default 1; an error for A and C).
        terminal_weight: γ >= 0 of the terminal loss of A, B and tracking (default 1; 0 only for B and
            tracking, where a running term remains; an error for C, which has none).
        l1_bound: M of cost C (required for it, an error for the others).
        tracking_target: x̄ (N, D) for the tracking cost; default the orthogonal projection of the
            (augmented) inputs onto the zero-error set ``{P x_i = y_i}`` (:meth:`label_target`).
        control_bound: optional box ``|u_j| <= bound`` on every control.

    Raises:
        InputError: a rejected value, or an argument that does not apply to the chosen field or cost.
    """

    def __init__(
        self,
        points,
        labels,
        *,
        field: str = "inner",
        activation: str = "tanh",
        augment: int | None = None,
        hidden: int | None = None,
        output=None,
        clip: bool = False,
        loss: str = "squared",
        cost: str = "turnpike",
        weight: float = 1e-2,
        alpha: float | None = None,
        terminal_weight: float | None = None,
        l1_bound: float | None = None,
        tracking_target=None,
        control_bound: float | None = None,
        classes: int | None = None,
        name: str = "neural-ode",
    ):
        points = check_finite("points", points)
        if points.ndim != 2:
            raise InputError(f"points must have shape (N, d), got shape {points.shape}")
        N, d = points.shape
        K, labels = class_labels(labels, N, classes)
        if len(np.unique(labels)) < 2:
            raise InputError(f"labels have one class only ({labels[0]!r}): a classifier needs two or more")
        self.classes = K
        self.field = check_choice("field", field, FIELDS)
        self.activation = check_choice("activation", activation, tuple(ACTIVATIONS))
        self.loss = check_choice("loss", loss, LOSSES)
        if self.loss == "logistic" and K > 2:
            raise InputError(f"loss='logistic' is for two classes, the labels have {K}: use loss='cross-entropy'")
        self.cost = check_choice("cost", cost, COSTS)
        _refuse_inapplicable(self.field, self.cost, hidden=hidden, alpha=alpha, terminal_weight=terminal_weight,
                             l1_bound=l1_bound, tracking_target=tracking_target)
        if not isinstance(clip, (bool, np.bool_)):
            raise InputError(f"clip must be True or False, got {clip!r}")
        self.clip = bool(clip)
        if augment is None:
            augment = max(0, K - d) if K > 2 and output is None else 0
        elif augment != 0:
            augment = check_positive("augment", augment, integer=True)
        D = d + augment
        self.d, self.augment, self.D = d, augment, D
        rows = 1 if K == 2 else K  # the number of scores
        shape = (D,) if K == 2 else (K, D)
        trainable = isinstance(output, str) and output == "trainable"
        if trainable and self.cost in ("tracking", "sparse"):
            raise InputError(f"output='trainable' does not apply to cost={self.cost!r}: "
                             + ("its target is set by a fixed P" if self.cost == "tracking" else
                                "its L1 ball bounds the weights of each layer") + "; give a fixed output map")
        if isinstance(output, str) and not trainable:
            raise InputError(f"output must be an array of shape {shape} or 'trainable', got {output!r}")
        if output is None and D < rows:
            raise InputError(f"the default output map reads the last {K} coordinates, and the state has D = {D}: "
                             f"give augment >= {K - d} or an output map of shape {shape}")
        P = (None if trainable else np.eye(D)[-rows:].reshape(shape) if output is None
             else check_finite("output", output, shape=shape))
        if P is not None and np.linalg.matrix_rank(np.atleast_2d(P)) < rows:
            what = f"a nonzero vector of shape ({D},)" if K == 2 else f"of full row rank {K}"
            raise InputError(f"output must be {what}, got {P!r}")
        self.output, self.trainable_output = P, trainable
        self.labels = labels
        weight = check_nonnegative("weight", weight)
        if weight == 0 and control_bound is None and self.cost != "sparse":
            raise InputError(f"weight=0 leaves cost {self.cost!r} without a minimiser in general (nothing bounds the "
                             "controls): give control_bound, or weight > 0")
        alpha = 1.0 if alpha is None else check_nonnegative("alpha", alpha)
        gamma = 1.0 if terminal_weight is None else check_nonnegative("terminal_weight", terminal_weight)
        if gamma == 0 and self.cost == "erm":
            raise InputError("terminal_weight=0 leaves cost 'erm' without a loss; cost='turnpike' has a running loss")
        self.weight, self.alpha, self.terminal_weight = weight, alpha, gamma

        # MX symbols: the field is a few matrix products and an activation, which turnpike.ensemble lifts
        # to all samples at once (its derivatives matrix products too); the per-sample paths expand it to SX.
        if self.field == "bottleneck":
            if hidden is None:
                raise InputError("hidden (the bottleneck width) is required for field='bottleneck'")
            hidden = check_positive("hidden", hidden, integer=True)
        x = ca.MX.sym("x", D)
        sigma = ACTIVATIONS[self.activation]
        shapes = weight_shapes(self.field, D, hidden)  # the layout of u, shared with turnpike.export
        u = ca.MX.sym("u", sum(int(np.prod(shape)) for shape in shapes.values()))
        W, names, start = {}, [], 0
        for key, shape in shapes.items():
            size = int(np.prod(shape))
            W[key] = ca.reshape(u[start : start + size], *shape) if len(shape) == 2 else u[start : start + size]
            names += _matrix_names(key, *shape) if len(shape) == 2 else _vector_names(key, size)
            start += size
        if self.field == "inner":
            f = W["w"] @ sigma(W["A"] @ x + W["b"])
        elif self.field == "outer":
            f = W["w"] @ sigma(x) + W["b"]
        else:
            f = W["W2"] @ sigma(W["W1"] @ x + W["b1"]) + W["b2"]
        self.hidden = hidden
        self.n_weights = u.numel()
        constant = []
        if trainable:  # θ = (P, b), constant in time, after the weights; P column-major (rows × D)
            theta = ca.MX.sym("theta", rows * D + rows)
            u, z = ca.vertcat(u, theta), ca.reshape(theta[: rows * D], rows, D) @ x + theta[rows * D :]
            constant = list(range(self.n_weights, self.n_weights + rows * D + rows))
            names += (_vector_names("P", D) + ["bias"] if K == 2 else _matrix_names("P", K, D)
                      + _vector_names("bias", K))
        else:
            z = ca.DM(np.atleast_2d(P)) @ x

        # the data of a sample: its label y (two classes) or its one-hot target (K classes)
        y = ca.MX.sym("y", rows)
        sample_loss = self._loss(self._clipped(z), y)
        data, values = y, self._targets()
        running, terminal, l2, l1, bound = 0, gamma * sample_loss, weight, 0.0, None
        if self.cost == "turnpike":
            running = alpha * sample_loss
        elif self.cost == "tracking":
            if tracking_target is None:
                target = _projection_onto_labels(np.hstack([points, np.zeros((N, augment))]), values, P)
            else:
                target = check_finite("tracking_target", tracking_target, shape=(N, D))
            self.tracking_target = target
            xbar = ca.MX.sym("xbar", D)
            data, values = ca.vertcat(y, xbar), np.column_stack([values, target])
            running = alpha * ca.sumsqr(x - xbar)
        elif self.cost == "sparse":
            if l1_bound is None:
                raise InputError("l1_bound (M) is required for cost='sparse'")
            running, terminal, l2, l1, bound = sample_loss, 0, 0.0, weight, l1_bound
        x0 = np.hstack([points, np.zeros((N, augment))])
        lo, hi = (None, None) if control_bound is None else (-control_bound, control_bound)
        super().__init__(
            state=x, control=u, dynamics=f, x0=x0, data=data, data_values=values,
            running_cost=running, terminal_cost=terminal, l2=l2, l1=l1, l1_bound=bound,
            control_lower=lo, control_upper=hi, name=name,
            state_names=[f"x{i + 1}" for i in range(D)], control_names=names, constant_controls=constant,
        )

    def _clipped(self, z):
        """``hardtanh(z)`` with ``clip``, else z (symbolic or numeric)."""
        if not self.clip:
            return z
        return ca.fmin(ca.fmax(z, -1), 1) if isinstance(z, (ca.SX, ca.MX)) else np.clip(z, -1.0, 1.0)

    def _loss(self, z, y):
        """The loss of one sample, symbolic: scores z and data y (its label, or its one-hot target)."""
        if self.loss == "squared":
            return ca.sumsqr(z - y)
        if self.classes == 2:
            return ca.log1p(ca.exp(-y * z))
        m = ca.mmax(z)
        return m + ca.log(ca.sum1(ca.exp(z - m))) - ca.dot(y, z)

    def _targets(self) -> np.ndarray:
        """The data of every sample (N, rows): the labels ±1 (two classes) or the one-hot targets (K classes)."""
        if self.classes == 2:
            return self.labels[:, None]
        return np.eye(self.classes)[self.labels]

    @classmethod
    def example(
        cls,
        *,
        dataset: str = "circles",
        n_points: int = 40,
        d: int = 2,
        noise: float = 0.0,
        seed: int = 0,
        field: str = "inner",
        activation: str = "tanh",
        augment: int | None = None,
        hidden: int | None = None,
        clip: bool = False,
        output=None,
        loss: str = "squared",
        cost: str = "turnpike",
        weight: float = 1e-2,
        alpha: float | None = None,
        terminal_weight: float | None = None,
        l1_bound: float | None = None,
        control_bound: float | None = None,
        **unknown,
    ) -> NeuralODEClassification:
        """Two circles of 20 points (radii 1, 2) in d = 2, inner tanh field, cost (B), λ = 1e-2, α = 1.

        Every keyword changes one ingredient (the catalogue entry ``neural-ode`` passes its parameters
        here): ``dataset`` one of :data:`problems.datasets.DATASETS` (``"circles"`` and ``"xor"`` take
        any ``d``; ``"moons"``, ``"spirals"``, ``"chessboard"`` and ``"rings"`` (three classes) only ``d = 2``),
        ``n_points``, ``noise`` and ``seed`` of the generator, and the model arguments of the class. ``l1_bound``
        M defaults to 1 for ``cost="sparse"``; the tracking target is :meth:`label_target`.

        Raises:
            InputError: an unknown keyword (named, with the accepted ones), or a rejected value.
        """
        if unknown:
            keywords = inspect.signature(cls.example).parameters.values()
            accepted = ", ".join(p.name for p in keywords if p.kind is p.KEYWORD_ONLY)
            names = ", ".join(repr(k) for k in sorted(unknown))
            raise InputError(f"NeuralODEClassification.example got unknown parameter(s) {names}; accepted: {accepted}")
        from .datasets import DATASETS

        check_choice("dataset", dataset, tuple(DATASETS))
        n_points = check_positive("n_points", n_points, integer=True)
        d = check_positive("d", d, integer=True)
        if dataset in ("circles", "xor"):
            points, labels = DATASETS[dataset](n_points, d, noise=noise, seed=seed)
        elif d != 2:
            raise InputError(f"dataset {dataset!r} is two-dimensional, got d={d!r} (use d=2)")
        else:
            points, labels = DATASETS[dataset](n_points, noise=noise, seed=seed)
        if cost == "sparse" and l1_bound is None:
            l1_bound = 1.0
        name = "two-circles" if (dataset, d) == ("circles", 2) else f"{dataset}-{d}d"
        return cls(points, labels, field=field, activation=activation, augment=augment, hidden=hidden, clip=clip,
                   output=output, loss=loss, cost=cost, weight=weight, alpha=alpha, terminal_weight=terminal_weight,
                   l1_bound=l1_bound, control_bound=control_bound, name=name)

    def label_target(self) -> np.ndarray:
        """The nearest point of the zero-error set to the inputs: ``x̄_i = x_i + P⁺(y_i - P x_i)``, ``P⁺`` the
        pseudo-inverse (``Pᵀ/|P|²`` for two classes), ``y_i`` the label or the one-hot target.

        Shape (N, D), augmented coordinates 0. ``P x̄_i = y_i``: zero squared loss (margin 1 for the
        logistic and cross-entropy losses, whose zero-error set is empty).
        """
        self._fixed_output("label_target")
        return _projection_onto_labels(self.x0_samples, self._targets(), self.output)

    # -- learning diagnostics ------------------------------------------------------------------
    def output_map(self, u=None) -> tuple[np.ndarray, float]:
        """``(P, b)``: the fixed map and 0, or with ``output="trainable"`` the map and bias held in controls ``u``
        (a solution's ``sol.u``, (steps, nu), or one interval's (nu,); they are the same on every interval).

        P has shape (D,) and b is a float for two classes; (K, D) and (K,) for K classes."""
        if not self.trainable_output:
            return self.output, (0.0 if self.classes == 2 else np.zeros(self.classes))
        if u is None:
            raise InputError("the output map is trainable: pass the controls u (sol.u) to read it")
        u = np.asarray(u, dtype=float)  # not checked finite: a diverged solution's outputs are drawn too
        if u.shape[-1:] != (self.nu,) or u.ndim > 2:
            raise InputError(f"u must have shape (steps, {self.nu}) or ({self.nu},), got shape {u.shape}")
        theta = u.reshape(-1, self.nu)[-1, self.n_weights:]
        if self.classes == 2:
            return theta[:-1], float(theta[-1])
        K, D = self.classes, self.D
        return theta[: K * D].reshape(D, K).T, theta[K * D :]  # P stored column-major

    def outputs(self, x, u=None) -> np.ndarray:
        """The scores ``z_i = P x_i + b`` (``hardtanh(z_i)`` with ``clip``) for states (..., N, D): shape (..., N)
        for two classes, (..., N, K) for K; ``u``: the controls, needed when the output map is trainable
        (:meth:`output_map`)."""
        P, b = self.output_map(u)
        return self._clipped(np.asarray(x) @ P.T + b)

    def training_error(self, x, u=None) -> np.ndarray:
        """``E(x) = (1/N) Σ loss(z_i, y_i)`` for states (..., N, D), e.g. every layer of ``sol.x`` (``u``: see
        :meth:`outputs`)."""
        z = self.outputs(x, u)
        if self.classes == 2:
            per = (z - self.labels) ** 2 if self.loss == "squared" else np.logaddexp(0.0, -self.labels * z)
        elif self.loss == "squared":
            per = ((z - self._targets()) ** 2).sum(axis=-1)
        else:  # log-sum-exp, shifted by the largest score
            m = z.max(axis=-1)
            picked = np.take_along_axis(z, np.broadcast_to(self.labels[:, None], z.shape[:-1] + (1,)), -1)[..., 0]
            per = m + np.log(np.exp(z - m[..., None]).sum(axis=-1)) - picked
        return per.mean(axis=-1)

    def predict_classes(self, x, u=None) -> np.ndarray:
        """The predicted label of states (..., N, D): ``sign(z_i)`` as ±1 (``z = 0`` read as +1) for two classes,
        ``argmax_k z_ik`` (the first on ties) for K (``u``: see :meth:`outputs`)."""
        z = self.outputs(x, u)
        if self.classes == 2:
            return np.where(z >= 0, 1.0, -1.0)
        return np.argmax(z, axis=-1)

    def accuracy(self, x, u=None) -> np.ndarray:
        """Share of samples whose predicted label (:meth:`predict_classes`) is theirs, for states (..., N, D)."""
        return (self.predict_classes(x, u) == self.labels).mean(axis=-1)

    def _fixed_output(self, what: str) -> None:
        if self.trainable_output:
            raise InputError(f"{what} is derived for a fixed output map, and this problem's is trainable")

    def linearised_rate(self, x) -> tuple[float, np.ndarray]:
        """The decay rate μ of ``|u(t)|`` under cost (B) predicted at a zero-error state x (N, D), and ``s_k(G)``.

        Near a state at rest ``x̄`` with ``P x̄_i = y_i`` and ``u = 0`` (every field has ``f(x, 0) = 0``), the
        output residuals ``r_i = P x_i - y_i`` obey ``dr/dt = G u`` to first order, ``G_ij = ∂(P f(x̄_i, u))/∂u_j``
        at ``u = 0`` (N × nu; with K classes ``r_i ∈ R^K`` and G is NK × nu, and "rank N" below reads "rank NK"),
        and cost (B) with the squared loss is ``∫ (α/N)|r|² + λ|u|²``. This LQ problem
        has Hamiltonian eigenvalues ``±√(α/(Nλ)) s_k(G)``; if ``rank G = N`` the optimal r and u decay like
        ``e^{-μt}``, ``μ = √(α/(Nλ)) s_min(G)``, and ``E = |r|²/N`` like ``e^{-2μt}`` (docs/mathematics.md §1,
        cost (B)).
        The value function is then ``V ≈ C E`` near the zero-error set, the hypothesis of the exponential
        estimate. If ``rank G < N`` (more samples than output parameters acting at first order: the outer field
        has ``D + 1``; the inner field with ``σ(0) = 0`` has ``G = 0``), μ = 0: no exponential rate is predicted.

        Returns:
            ``(μ, s)`` with s the singular values of G, largest first (N of them, NK for K classes).
        """
        self._fixed_output("linearised_rate")
        if self.loss != "squared" or self.clip:
            raise InputError("linearised_rate needs loss='squared' without clip (zero error at finite states where the "
                             f"loss is smooth), got loss={self.loss!r}, clip={self.clip!r}")
        N, D = self.n_samples, self.D
        x = check_finite("x", x, shape=(N, D))
        P = np.atleast_2d(self.output)  # (rows, D); K classes: r_i ∈ R^K and G is (N K) × nu
        xs, u, y = ca.SX.sym("x", D), ca.SX.sym("u", self.nu), ca.SX.sym("y", self.ny)
        row = ca.Function("G", [xs, u, y], [ca.jacobian(ca.DM(P) @ self.dynamics(xs, u, y), u)])
        G = np.asarray(row.map(N)(x.T, np.zeros(self.nu), self.data_values.T))
        G = G.reshape(len(P), N, self.nu).transpose(1, 0, 2).reshape(N * len(P), self.nu)
        s = np.linalg.svd(G, compute_uv=False)
        s = np.concatenate([s, np.zeros(G.shape[0] - s.size)])
        if s[0] == 0 or s[-1] <= 1e-10 * s[0]:
            return 0.0, s
        return float(np.sqrt(self.alpha / (N * self.weight)) * s[-1]), s

    def stopping_residual(self, x) -> float:
        """``|P| |Σ_i r_i (x_i, 1)| / N`` at states at rest x (N, D): the price test of u ≡ 0 for the inner tanh field.

        With ``σ(0) = 0``, ``σ'(0) = 1`` the inner field is bilinear near ``u = 0``: ``f ≈ w (A x + b)``. On a tail
        ``(t, T)`` with ``u = 0`` the states rest, ``∂J/∂x_i(s) = (α(T - s) + γ) (2/N) r_i P`` under cost (B) with
        the squared loss (γ the ``terminal_weight``), and the second variation of J at ``u = 0`` is
        ``∫ (α(T-s)+γ)(2/N) (wᵀP)·([A b] ξ) + λ(|w|² + |A|² + |b|²) ds`` with ``ξ = Σ_i r_i (x_i, 1)``. By
        ``|(wᵀP)·([A b]ξ)| <= |P||ξ| (|w|² + |[A b]|²)/2`` (equality attained) it is nonnegative iff
        ``(α(T - t) + γ) |P||ξ|/N <= λ``: the weight decay acts as an L1 price on the velocity, the control
        stops at T* with ``(α(T - T*) + γ) · stopping_residual(x(T)) = λ``, and the residual error decays
        like ``1/T²``, not exponentially (the analogue of ``r (T - T*) = λ`` for cost (C)).
        """
        self._fixed_output("stopping_residual")
        if self.classes > 2:
            raise InputError(f"stopping_residual is derived for two classes, this problem has {self.classes}")
        if self.field != "inner" or self.activation != "tanh" or self.loss != "squared" or self.clip:
            raise InputError("stopping_residual is derived for field='inner', activation='tanh', loss='squared', "
                             f"no clip, got {self.field!r}, {self.activation!r}, {self.loss!r}, clip={self.clip!r}")
        x = check_finite("x", x, shape=(self.n_samples, self.D))
        r = x @ self.output - self.labels
        xi = r @ np.column_stack([x, np.ones(self.n_samples)])
        return float(np.linalg.norm(self.output) * np.linalg.norm(xi) / self.n_samples)

    def flow(self, solution: tp.Solution, points, method: str | None = None) -> np.ndarray:
        """Push new points (M, d) through the network of ``solution`` with its integrator.

        Returns the states (steps+1, M, D) at every layer (augmented coordinates start at 0).
        """
        points = check_finite("points", points)
        if points.ndim != 2 or points.shape[1] != self.d:
            raise InputError(f"points must have shape (M, {self.d}), got shape {points.shape}")
        self._check_solution(solution)
        method = method or solution.stats.get("method", "rk4")
        M = points.shape[0]
        step = stage_function(self, method).map(M)
        X = np.hstack([points, np.zeros((M, self.augment))]).T
        y = np.zeros((self.ny, M))
        out = [X.T]
        for k in range(solution.steps):
            X = np.asarray(step(X, solution.u[k], y, solution.h)[0])
            out.append(X.T)
        return np.array(out)


    def network(self, solution: tp.Solution) -> TrainedNetwork:
        """The trained network of ``solution``: predictions and accuracy on new points (:class:`TrainedNetwork`)."""
        self._check_solution(solution)
        return TrainedNetwork(self, solution)

    def _check_solution(self, solution) -> None:
        if not isinstance(solution, tp.Solution):
            raise InputError(f"solution must be a turnpike.Solution of this problem, got {type(solution).__name__}")
        if solution.u.ndim != 2 or solution.u.shape[1] != self.nu:
            raise InputError(f"solution has controls of shape {solution.u.shape}, this problem {self.nu} per layer: "
                             "a solution of another problem")


class TrainedNetwork:
    """The network of a solution: new points flow through its layers (the integrator and steps it was trained
    with) and are classified by the scores ``z = P x(T) + b`` (clipped with ``clip``): by the sign for two classes
    (``z = 0`` read as +1), by the largest score for K.

    Made by :meth:`NeuralODEClassification.network`; ``problem`` and ``solution`` are kept as given.
    :meth:`model` is the same network as plain arrays, for :mod:`turnpike.export`.
    """

    def __init__(self, problem: NeuralODEClassification, solution: tp.Solution):
        self.problem, self.solution = problem, solution

    def scores(self, points) -> np.ndarray:
        """The scores of the last layer for points (M, d): (M,) for two classes, (M, K) for K."""
        return self.problem.outputs(self.problem.flow(self.solution, points)[-1], self.solution.u)

    def predict(self, points) -> np.ndarray:
        """Labels of points (M, d): ±1 for two classes, 0..K-1 for K (as
        :meth:`NeuralODEClassification.predict_classes`)."""
        return self.problem.predict_classes(self.problem.flow(self.solution, points)[-1], self.solution.u)

    def accuracy(self, points, labels) -> float:
        """The share of points (M, d) whose predicted label is ``labels`` (M,) or (M, 1), as :func:`class_labels`
        reads them (two classes: ±1 or 0/1)."""
        predicted = self.predict(points)
        return float(np.mean(predicted == class_labels(labels, predicted.shape[0], self.problem.classes)[1]))

    def model(self, *, input_shift=None, input_scale=None):
        """The trained network as a :class:`turnpike.export.NeuralODE`: its weights per layer under their names, the
        step, integrator and output map. ``input_shift`` and ``input_scale`` (d,) record a standardisation of the
        raw features, ``(p - shift) / scale``, that the exported network applies first."""
        problem, sol = self.problem, self.solution
        P, b = problem.output_map(sol.u)
        d = problem.d
        return NeuralODE(
            field=problem.field, activation=problem.activation,
            weights=split_weights(sol.u, problem.field, problem.D, problem.hidden), step=sol.h,
            method=sol.stats.get("method", "rk4"), augment=problem.augment, output=np.atleast_2d(P),
            bias=np.atleast_1d(b).astype(float), clip=problem.clip, classes=problem.classes,
            input_shift=np.zeros(d) if input_shift is None else input_shift,
            input_scale=np.ones(d) if input_scale is None else input_scale,
        )


def class_labels(labels, n: int, classes: int | None = None) -> tuple[int, np.ndarray]:
    """The number of classes K and the labels as stored: ``(2, ±1 floats)`` or ``(K, integers 0..K-1)``.

    ``labels`` has shape (n,) or (n, 1). Two classes are ±1 or 0/1 (0 read as -1); K >= 3 classes are the
    integers 0..K-1, K = ``classes`` or, when not given, one more than the largest label, every class then
    having a point.

    Raises:
        InputError: a wrong shape, a non-finite or non-integer label, a label outside 0..K-1, a class without
            a point (when ``classes`` is not given), or ``classes`` < 2.
    """
    y = check_finite("labels", labels)
    if y.shape == (n, 1):
        y = y[:, 0]
    if y.shape != (n,):
        raise InputError(f"labels must have shape ({n},) or ({n}, 1), one per point, got shape {y.shape}")
    if classes is not None:
        classes = check_positive("classes", classes, integer=True)
        if classes < 2:
            raise InputError(f"classes must be >= 2, got {classes}")
    values = set(np.unique(y).tolist())
    if classes in (None, 2) and values <= {-1.0, 1.0}:
        return 2, y
    if classes in (None, 2) and values <= {0.0, 1.0}:
        return 2, 2 * y - 1
    if np.any(y != np.round(y)) or y.min() < 0:
        odd = sorted(v for v in values if v != round(v) or v < 0)[:3]
        raise InputError(f"labels must be -1/+1, 0/1, or the integers 0..K-1, got values {odd}")
    K = classes or int(y.max()) + 1
    if y.max() >= K:
        raise InputError(f"label {int(y.max())} is out of range for classes={K}: labels are 0..{K - 1}")
    missing = sorted(set(range(K)) - values)
    if classes is None and missing:
        raise InputError(f"labels 0..{K - 1}: class(es) {missing[:5]} have no point; give classes={K} if that is "
                         "meant, or renumber the labels")
    if K == 2:
        return 2, 2 * y - 1
    return K, y.astype(int)


def _refuse_inapplicable(field: str, cost: str, **given) -> None:
    """An error for an argument given (not None) that the chosen field or cost does not use."""
    uses = {"hidden": field == "bottleneck", "alpha": cost in ("turnpike", "tracking"),
            "terminal_weight": cost != "sparse", "l1_bound": cost == "sparse", "tracking_target": cost == "tracking"}
    for name, value in given.items():
        if value is not None and not uses[name]:
            choice = f"field={field!r}" if name == "hidden" else f"cost={cost!r}"
            shown = f"{name}={value!r}" if np.ndim(value) == 0 else f"{name} (an array)"
            raise InputError(f"{shown} does not apply to {choice}: leave it out or choose another "
                             f"{'field' if name == 'hidden' else 'cost'}")


def _projection_onto_labels(x: np.ndarray, targets: np.ndarray, P: np.ndarray) -> np.ndarray:
    """``x_i + P⁺(y_i - P x_i)`` for states (N, D) and targets (N, rows): the orthogonal projection onto
    ``{P x_i = y_i}`` (P of full row rank; ``P⁺ = Pᵀ/|P|²`` for a single row)."""
    P = np.atleast_2d(P)
    return x + (targets - x @ P.T) @ np.linalg.pinv(P).T


def _matrix_names(name: str, rows: int, cols: int) -> list[str]:
    """Names of a matrix stored column-major in u (CasADi's reshape), 1-based: ``w[i,j]``."""
    return [f"{name}[{i + 1},{j + 1}]" for j in range(cols) for i in range(rows)]


def _vector_names(name: str, size: int) -> list[str]:
    return [f"{name}[{i + 1}]" for i in range(size)]
