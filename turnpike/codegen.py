"""C source of an SX function evaluated on several samples at once, for the compiler to vectorise.

CasADi's code generator writes one evaluation per call. The ensemble gradient evaluates the same
stage function for every sample, so :func:`lanes_function` writes it for ``TP_LANES`` samples
("lanes") at a time instead: the function's straight-line code becomes the body of one loop over
the lanes marked ``#pragma omp simd``, and the compiler turns every operation into a vector
instruction over the lanes (and, with :data:`VECTOR_MATH` declared, every ``tanh``, ``exp``, ... into
a call of glibc's vector math library libmvec, 4 values per call with AVX2).

Layout: an input or output with ``n`` nonzeros is ``n * TP_LANES`` doubles, nonzero-major, so the lanes
of one nonzero are contiguous; an input marked *shared* (a control, the step) is its ``n`` nonzeros,
the same for every lane, read before the loop (the vectoriser's dependence analysis then does not see
them: its memory grows like the square of the loop's memory references, and the controls are most of
them in the second-order stages of wide networks). Each operation is the scalar C operation CasADi's own code generator
writes, so a lane's values are those of a scalar evaluation up to the libm/libmvec difference in
transcendentals (libmvec's are within 4 ulp).

Only elementwise scalar operations are written; a function with anything else (embedded calls,
``erfinv``, ...) gives None and the caller keeps another path. So does a function with more than
:data:`MAX_INSTRUCTIONS` instructions: the compiler's time and memory grow faster than the code.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import casadi as ca

__all__ = ["LIBM_CALLS", "MAX_INSTRUCTIONS", "VECTOR_MATH", "LaneFunction", "lanes_function", "symbolic_key"]

#: The largest SX function (in CasADi instructions) that is written as C for the compiler. Measured with
#: gcc 12 on the lane code of the bottleneck field's stage reverse mode (16 RK4 steps, D = 3): 10.7 k
#: instructions (width 50) compile in 5 s (-O2), 42 k (width 200) in 23 s with 0.53 GB (a large loop:
#: -O1, vectorised, see turnpike.compiled.lanes_library); the bottleneck's second-order stage of width 16
#: (243 k instructions) took gcc past 22 GB, that of width 50 (1.9 M) crashed it.
MAX_INSTRUCTIONS = 60_000

_BINARY = {
    ca.OP_ADD: "({0}+{1})", ca.OP_SUB: "({0}-{1})", ca.OP_MUL: "({0}*{1})", ca.OP_DIV: "({0}/{1})",
    ca.OP_POW: "pow({0},{1})", ca.OP_CONSTPOW: "pow({0},{1})", ca.OP_ATAN2: "atan2({0},{1})",
    ca.OP_HYPOT: "hypot({0},{1})", ca.OP_FMOD: "fmod({0},{1})", ca.OP_COPYSIGN: "copysign({0},{1})",
    # fmin, fmax (a NaN argument loses) and the logical operations, without branches, so they vectorise
    ca.OP_FMIN: "((({1}!={1})|({0}<{1}))?{0}:{1})", ca.OP_FMAX: "((({1}!={1})|({0}>{1}))?{0}:{1})",
    ca.OP_LT: "({0}<{1})", ca.OP_LE: "({0}<={1})", ca.OP_EQ: "({0}=={1})", ca.OP_NE: "({0}!={1})",
    ca.OP_AND: "(({0}!=0.)&({1}!=0.))", ca.OP_OR: "(({0}!=0.)|({1}!=0.))", ca.OP_IF_ELSE_ZERO: "({0}?{1}:0.)",
}
_UNARY = {
    ca.OP_ASSIGN: "{0}", ca.OP_NEG: "(-{0})", ca.OP_SQ: "({0}*{0})", ca.OP_TWICE: "({0}+{0})",
    ca.OP_INV: "(1./{0})", ca.OP_NOT: "(!{0})", ca.OP_FABS: "fabs({0})", ca.OP_SQRT: "sqrt({0})",
    ca.OP_FLOOR: "floor({0})", ca.OP_CEIL: "ceil({0})",
    ca.OP_SIGN: "({0}>0.?1.:({0}<0.?-1.:{0}))",  # CasADi's sign: sign(0) = 0, sign(nan) = nan
}
# Transcendentals, written as the libm call of the same name. libmvec (glibc >= 2.35, x86_64) has a
# vector version of each.
VECTOR_MATH = ("exp", "log", "sin", "cos", "tan", "asin", "acos", "atan", "sinh", "cosh", "tanh", "asinh",
               "acosh", "atanh", "erf", "log1p", "expm1", "pow", "atan2", "hypot")
_TEMPLATES = {**_BINARY, **_UNARY, **{getattr(ca, f"OP_{name.upper()}"): f"{name}({{0}})" for name in VECTOR_MATH
                                      if name not in ("pow", "atan2", "hypot")}}
#: The operations written as a call of a :data:`VECTOR_MATH` function (the transcendentals), and that function.
LIBM_CALLS = {op: t.partition("(")[0] for op, t in _TEMPLATES.items() if t.partition("(")[0] in VECTOR_MATH}


def _literal(value: float) -> str:
    if math.isnan(value):
        return "NAN"
    if math.isinf(value):
        return "INFINITY" if value > 0 else "(-INFINITY)"
    return repr(value)


def symbolic_key(fn: ca.Function) -> str:
    """What determines ``fn``'s generated code, without generating it: CasADi's serialisation of ``fn`` (its
    instructions, constants and sparsity patterns) and the CasADi version (a cache key for compiled code)."""
    return f"casadi {ca.__version__}\n{fn.serialize()}"


# The source of this module: a compiled library's cache key includes it, so a change in how code is written
# is a new library.
_WRITER = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()


@dataclass(frozen=True)
class LaneFunction:
    """A function :func:`lanes_function` can write: its C source is produced on demand (:attr:`source`), and
    :attr:`key` identifies it without producing it (a cached library needs no source)."""

    fn: ca.Function
    name: str
    shared: frozenset[int]
    calls: frozenset[str]  # the libm functions the code calls (VECTOR_MATH declarations are limited to them)
    references: int  # the inputs read and the outputs written (shared inputs included): its interface's size
    loop_references: int  # those the lane loop makes (shared inputs are read before it): what GCC's vectoriser sees

    @property
    def key(self) -> str:
        return f"{_WRITER} {self.name} {sorted(self.shared)}\n{symbolic_key(self.fn)}"

    @property
    def source(self) -> str:
        """C source of ``static void name(const double* const* in, double* const* out)``."""
        return _write(self.fn, self.name, self.shared)


def lanes_function(fn: ca.Function, name: str, shared: set[int] = frozenset()) -> LaneFunction | None:
    """``fn`` (an SX function) as ``static void name(const double* const* in, double* const* out)`` on
    ``TP_LANES`` lanes, the inputs in ``shared`` the same for every lane (source written on demand).

    None if ``fn`` has an operation not written here or more than :data:`MAX_INSTRUCTIONS` instructions
    (decided from its instruction codes, without writing code).
    """
    if not fn.is_a("SXFunction") or fn.n_instructions() > MAX_INSTRUCTIONS:
        return None
    calls, references, invariant = set(), 0, 0
    for k in range(fn.n_instructions()):
        op = fn.instruction_id(k)
        if op in LIBM_CALLS:
            calls.add(LIBM_CALLS[op])
        elif op in (ca.OP_INPUT, ca.OP_OUTPUT):
            references += 1
            invariant += op == ca.OP_INPUT and fn.instruction_input(k)[0] in shared
        elif op not in _TEMPLATES and op != ca.OP_CONST:
            return None
    return LaneFunction(fn, name, frozenset(shared), frozenset(calls), references, references - invariant)


def _write(fn: ca.Function, name: str, shared: frozenset[int]) -> str:
    lines, invariants = [], []
    for k in range(fn.n_instructions()):
        op, args, res = fn.instruction_id(k), fn.instruction_input(k), fn.instruction_output(k)
        if op == ca.OP_INPUT:
            i, nz = args
            if i in shared:  # read before the loop: a loop invariant, not one of the loop's memory references
                invariants.append(f"const double s{i}_{nz} = in{i}[{nz}];")
                lines.append(f"w{res[0]} = s{i}_{nz};")
            else:
                lines.append(f"w{res[0]} = in{i}[{nz} * TP_LANES + l];")
        elif op == ca.OP_OUTPUT:
            o, nz = res
            lines.append(f"out{o}[{nz} * TP_LANES + l] = w{args[0]};")
        elif op == ca.OP_CONST:
            lines.append(f"w{res[0]} = {_literal(float(fn.instruction_constant(k)))};")
        else:
            lines.append(f"w{res[0]} = {_TEMPLATES[op].format(*(f'w{i}' for i in args))};")
    pointers = [f"const double* in{i} = in[{i}];" for i in range(fn.n_in())]
    pointers += [f"double* out{o} = out[{o}];" for o in range(fn.n_out())] + invariants
    work = ", ".join(f"w{i}" for i in range(fn.sz_w())) or "w0"
    body = "\n    ".join(lines)
    source = (f"static void {name}(const double* const* in, double* const* out) {{\n  " + "\n  ".join(pointers)
              + "\n#pragma omp simd\n  for (int l = 0; l < TP_LANES; ++l) {\n"
              + f"    double {work};\n    {body}\n  }}\n}}\n")
    return source
