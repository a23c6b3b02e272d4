"""The optimal control problem: what to solve, never how it is discretised.

A :class:`Problem` is

.. math::

    \\min_{u}\\; \\int_0^T \\Big( \\frac1N \\sum_{i=1}^N L(x_i, u, y_i)
        + \\lambda_2 |u|_2^2 + \\lambda_1 |u|_1 \\Big)\\,dt
        + \\frac1N \\sum_{i=1}^N \\varphi(x_i(T), y_i)

    \\text{s.t.}\\quad \\dot x_i = f(x_i, u, y_i),\\quad x_i(0) = x_{0,i},\\quad
        u_{lo} \\le u(t) \\le u_{hi},\\quad |u(t)|_1 \\le M .

``N = 1`` is an ordinary control system. ``N > 1`` is the *ensemble* form: N copies of
the state (one per data sample, with per-sample data ``y_i`` such as a label) share one
control. This is how neural-ODE learning is posed: the control is the weights, the
samples are the data points. The per-sample terms are averaged, so the control terms
``λ2 |u|²`` and ``λ1 |u|_1`` (and any control term written into ``L``) are counted once.

Components of u listed in ``constant_controls`` are constant in time: parameters ``θ`` shared by every
time and every sample (a trainable output map and its bias, for instance). They stay components of u
everywhere (in f, L, φ, the bounds and the control terms, so ``∫ λ2 |θ|² dt = λ2 T |θ|²``); only the
transcription differs: one value per solve instead of one per interval.

The L1 term is exact: the transcription splits ``u = u⁺ - u⁻`` with ``u± >= 0`` and
charges ``λ1 Σ (u⁺ + u⁻)``, so the solver sees a smooth problem.

The *static problem* uses the same data: ``min (1/N) Σ L(x_i, u, y_i) + λ2|u|² + λ1|u|_1``
subject to ``f(x_i, u, y_i) = 0`` for every i and the same bounds (one static state per
sample, one shared static control).
"""

from __future__ import annotations

import casadi as ca
import numpy as np

from .errors import InputError, check_finite, check_nonnegative

__all__ = ["Problem"]


def _symbol_size(name: str, symbol) -> int:
    if not isinstance(symbol, (ca.SX, ca.MX)) or not symbol.is_valid_input():
        raise InputError(
            f"{name} must be a CasADi symbol (e.g. casadi.SX.sym('x', 2)), got {symbol!r}"
        )
    if symbol.size2() != 1:
        raise InputError(f"{name} must be a column vector symbol, got shape {symbol.shape}")
    return symbol.size1()


def _expression(name: str, value, size: int, symbol_type) -> ca.SX | ca.MX:
    expr = symbol_type(value) if not isinstance(value, (ca.SX, ca.MX)) else value
    if expr.numel() == size and size > 0:
        expr = ca.reshape(expr, size, 1)
    if expr.shape != (size, 1):
        raise InputError(f"{name} must have {size} entries, got shape {expr.shape}")
    return expr


class Problem:
    """A continuous-time optimal control problem, possibly in ensemble form.

    Arguments:
        state: CasADi symbol ``x`` of one sample's state, shape (nx, 1).
        control: CasADi symbol ``u`` of the control, shape (nu, 1).
        dynamics: expression of ``f(x, u[, y])``, nx entries.
        running_cost: expression of ``L(x, u[, y])`` (scalar), default 0.
        terminal_cost: expression of ``φ(x[, y])`` (scalar), default 0; must not depend on u, except on its
            ``constant_controls`` (the property :attr:`terminal_cost` is the function ``φ(x, u, y)``).
        x0: initial state, shape (nx,), or (N, nx) for an ensemble of N samples.
        data: optional CasADi symbol ``y`` of per-sample data (labels, targets), shape (ny, 1).
        data_values: values of ``y`` per sample, shape (N, ny) (or (ny,) when N = 1).
        control_lower, control_upper: bounds on u, shape (nu,) or scalar; default ∓inf.
        l2: weight λ2 >= 0 of ``λ2 |u|_2^2`` in the running cost.
        l1: weight λ1 >= 0 of the exact ``λ1 |u|_1`` in the running cost.
        l1_bound: optional M > 0 for the path constraint ``|u(t)|_1 <= M``.
        name: a short name used in files and figures.
        state_names, control_names: labels of the components, for figures.
        constant_controls: indices (0-based) of the components of u that are constant in time; default none.
            The terminal cost may depend on them (on them only among the controls).

    Raises:
        InputError: on wrong shapes, non-finite data, negative weights or bounds that exclude 0
            when the L1 split is needed.
    """

    def __init__(
        self,
        *,
        state,
        control,
        dynamics,
        x0,
        running_cost=0.0,
        terminal_cost=0.0,
        data=None,
        data_values=None,
        control_lower=None,
        control_upper=None,
        l2: float = 0.0,
        l1: float = 0.0,
        l1_bound: float | None = None,
        name: str = "problem",
        state_names: list[str] | None = None,
        control_names: list[str] | None = None,
        constant_controls=(),
    ):
        nx = _symbol_size("state", state)
        nu = _symbol_size("control", control)
        sym = type(state)
        if data is None:
            if data_values is not None:
                raise InputError("data_values was given without the data symbol `data`")
            data = sym.sym("y", 0)
        ny = _symbol_size("data", data)

        f = _expression("dynamics", dynamics, nx, sym)
        L = _expression("running_cost", running_cost, 1, sym)
        phi = _expression("terminal_cost", terminal_cost, 1, sym)
        declared = {"state": state, "control": control, "data": data}
        _only_declared("dynamics", f, declared)
        _only_declared("running_cost", L, declared)
        _only_declared("terminal_cost", phi, declared)  # a control in it is refused below, with its own message
        constant = _constant_controls(constant_controls, nu)
        if any(read and j not in constant for j, read in enumerate(ca.which_depends(phi, control, 1, False))):
            raise InputError("terminal_cost must not depend on the control" + (
                " (other than its constant_controls)" if constant else ""))

        x0 = check_finite("x0", x0)
        if x0.ndim == 1:
            ensemble = False
            x0_samples = x0.reshape(1, -1)
        elif x0.ndim == 2:
            ensemble = True
            x0_samples = x0
        else:
            raise InputError(f"x0 must have shape (nx,) or (N, nx), got shape {x0.shape}")
        if x0_samples.shape[1] != nx:
            raise InputError(
                f"x0 must have nx = {nx} entries per sample (the size of `state`), "
                f"got shape {x0.shape}"
            )
        n_samples = x0_samples.shape[0]
        if n_samples < 1:
            raise InputError(f"x0 must hold at least one sample, got shape {x0.shape}")

        if ny == 0:
            values = np.zeros((n_samples, 0))
        else:
            if data_values is None:
                raise InputError(f"data_values is required when `data` is given (shape ({n_samples}, {ny}))")
            values = check_finite("data_values", data_values)
            if not ensemble and values.shape == (ny,):
                values = values.reshape(1, ny)
            if values.shape != (n_samples, ny):
                raise InputError(
                    f"data_values must have shape ({n_samples}, {ny}) (one row per sample of x0), "
                    f"got shape {values.shape}"
                )

        lower = _bound("control_lower", control_lower, nu, -np.inf)
        upper = _bound("control_upper", control_upper, nu, np.inf)
        if np.any(lower > upper):
            raise InputError(f"control_lower must be <= control_upper, got {lower} and {upper}")

        l2 = check_nonnegative("l2", l2)
        l1 = check_nonnegative("l1", l1)
        if l1_bound is not None:
            l1_bound = check_nonnegative("l1_bound", l1_bound)
            if l1_bound == 0:
                raise InputError("l1_bound must be > 0 (use control bounds to fix u = 0)")
        if (l1 > 0 or l1_bound is not None) and (np.any(lower > 0) or np.any(upper < 0)):
            raise InputError(
                "l1 and l1_bound split u = u+ - u- and need control bounds that contain 0, "
                f"got control_lower={lower}, control_upper={upper}"
            )

        self._name = str(name)
        self._nx, self._nu, self._ny = nx, nu, ny
        self._ensemble = ensemble
        self._x0 = x0_samples
        self._x0.flags.writeable = False
        self._data_values = values
        self._data_values.flags.writeable = False
        self._lower, self._upper = lower, upper
        self._lower.flags.writeable = False
        self._upper.flags.writeable = False
        self._l2, self._l1, self._l1_bound = l2, l1, l1_bound
        self._state_names = _names("state_names", state_names, nx, "x")
        self._control_names = _names("control_names", control_names, nu, "u")
        self._constant = constant

        # Built once: one sample's dynamics, running cost and terminal cost.
        self._f = ca.Function("f", [state, control, data], [f], ["x", "u", "y"], ["f"])
        self._L = ca.Function("L", [state, control, data], [L], ["x", "u", "y"], ["L"])
        self._phi = ca.Function("phi", [state, control, data], [phi], ["x", "u", "y"], ["phi"])

    # -- what the problem is -------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._name

    @property
    def nx(self) -> int:
        """State dimension of one sample."""
        return self._nx

    @property
    def nu(self) -> int:
        """Control dimension."""
        return self._nu

    @property
    def ny(self) -> int:
        """Dimension of the per-sample data."""
        return self._ny

    @property
    def n_samples(self) -> int:
        """N, the number of state copies sharing the control (1 for an ordinary system)."""
        return self._x0.shape[0]

    @property
    def ensemble(self) -> bool:
        """Whether x0 was given per sample, shape (N, nx)."""
        return self._ensemble

    @property
    def state_shape(self) -> tuple[int, ...]:
        """Shape of the state at one time: (nx,) or (N, nx) for an ensemble."""
        return (self.n_samples, self.nx) if self._ensemble else (self.nx,)

    @property
    def control_shape(self) -> tuple[int, ...]:
        return (self.nu,)

    @property
    def x0(self) -> np.ndarray:
        """Initial state, shaped like ``state_shape``."""
        return self._x0.reshape(self.state_shape)

    @property
    def x0_samples(self) -> np.ndarray:
        """Initial state, shape (N, nx) whether or not the problem is an ensemble."""
        return self._x0

    @property
    def data_values(self) -> np.ndarray:
        """Per-sample data, shape (N, ny)."""
        return self._data_values

    @property
    def control_lower(self) -> np.ndarray:
        return self._lower

    @property
    def control_upper(self) -> np.ndarray:
        return self._upper

    @property
    def l2(self) -> float:
        return self._l2

    @property
    def l1(self) -> float:
        return self._l1

    @property
    def l1_bound(self) -> float | None:
        return self._l1_bound

    @property
    def constant_controls(self) -> tuple[int, ...]:
        """Indices of the components of u that are constant in time (sorted; empty for none)."""
        return self._constant

    @property
    def split_control(self) -> bool:
        """Whether the transcription splits u = u⁺ - u⁻ (exact L1 term or L1 bound)."""
        return self._l1 > 0 or self._l1_bound is not None

    def control_variable_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Bounds of the control variables ``V``: ``u``'s own, or for the split ``V = (u⁺, u⁻)``
        ``0 <= u⁺ <= max(u_hi, 0)`` and ``0 <= u⁻ <= max(-u_lo, 0)``."""
        lo, hi = self._lower, self._upper
        if self.split_control:
            return np.zeros(2 * self._nu), np.concatenate([np.maximum(hi, 0), np.maximum(-lo, 0)])
        return lo, hi

    @property
    def state_names(self) -> list[str]:
        return list(self._state_names)

    @property
    def control_names(self) -> list[str]:
        return list(self._control_names)

    # -- the functions, built once -------------------------------------------------------
    @property
    def dynamics(self) -> ca.Function:
        """``f(x, u, y) -> dx/dt`` for one sample."""
        return self._f

    @property
    def running_cost(self) -> ca.Function:
        """``L(x, u, y)`` for one sample, without the λ2/λ1 control terms."""
        return self._L

    @property
    def terminal_cost(self) -> ca.Function:
        """``φ(x, u, y)`` for one sample; it depends on u through :attr:`constant_controls` only (the
        terminal time has no control of its own: give it the last interval's)."""
        return self._phi

    def control_cost(self, u) -> float:
        """``λ2 |u|_2^2 + λ1 |u|_1`` for a numeric control ``u`` (nu,)."""
        u = np.asarray(u, dtype=float)
        return float(self._l2 * u @ u + self._l1 * np.abs(u).sum())

    def __repr__(self) -> str:
        extra = f", N={self.n_samples}" if self._ensemble else ""
        return f"<{type(self).__name__} {self._name!r}: nx={self.nx}, nu={self.nu}{extra}>"


def _only_declared(name: str, expression, declared: dict) -> None:
    """An :class:`InputError` naming the symbols of ``expression`` that are none of ``declared``'s (CasADi decides
    which are free; the names are for the message)."""
    try:
        ca.Function("check", list(declared.values()), [expression])
    except RuntimeError as exc:
        if "free" not in str(exc):
            raise
        names = {s.name() for symbol in declared.values() for s in ca.symvar(symbol)}
        foreign = sorted({s.name() for s in ca.symvar(expression)} - names)
        what = (f"the symbol(s) {', '.join(foreign)}, which are not declared" if foreign else
                "a symbol that is not declared (a new symbol with the name of a declared one)")
        listed = ", ".join(f"{k} ({', '.join(s.name() for s in ca.symvar(v)) or 'none'})" for k, v in declared.items())
        raise InputError(f"{name} uses {what}; it may use: {listed}") from None


def _constant_controls(value, nu: int) -> tuple[int, ...]:
    """Sorted distinct indices in ``range(nu)``."""
    try:
        given = list(value) if not isinstance(value, (str, bytes)) else None
        indices = [int(j) for j in given if isinstance(j, (int, np.integer)) and not isinstance(j, (bool, np.bool_))]
        complete = len(indices) == len(given)
    except TypeError:
        complete = False
    if not complete or len(set(indices)) != len(indices) or any(not 0 <= j < nu for j in indices):
        raise InputError(f"constant_controls must be distinct indices of the control's components, 0 to {nu - 1}, "
                         f"got {value!r}")
    return tuple(sorted(indices))


def _bound(name: str, value, n: int, default: float) -> np.ndarray:
    """A control bound as an array (n,): scalar or (n,), NaN refused, ±inf allowed."""
    if value is None:
        return np.full(n, default)
    try:
        arr = np.array(value, dtype=float)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} must be numeric, got {value!r}") from exc
    if arr.shape not in ((), (n,)):
        raise InputError(f"{name} must be a scalar or have shape ({n},), got shape {arr.shape}")
    if np.any(np.isnan(arr)):
        raise InputError(f"{name} must not contain NaN, got {arr!r}")
    return np.broadcast_to(arr, (n,)).copy()


def _names(name: str, names, n: int, prefix: str) -> tuple[str, ...]:
    if names is None:
        return tuple(f"{prefix}{i + 1}" for i in range(n)) if n > 1 else (prefix,)
    names = tuple(str(s) for s in names)
    if len(names) != n:
        raise InputError(f"{name} must have {n} entries, got {len(names)}")
    return names
