"""C source of an SX function evaluated on several samples at once, for the compiler to vectorise.

CasADi's code generator writes one evaluation per call. The ensemble gradient evaluates the same
stage function for every sample, so :func:`lanes_function` writes it for ``TP_LANES`` samples
("lanes") at a time instead: the function's straight-line code becomes the body of one loop over
the lanes marked ``#pragma omp simd``, and the compiler turns every operation into a vector
instruction over the lanes (and, with :data:`VECTOR_MATH` declared, every ``tanh``, ``exp``, ... into
a call of glibc's vector math library libmvec, 4 values per call with AVX2).

Layout: an input or output with ``n`` nonzeros is ``n * TP_LANES`` doubles, nonzero-major, so the lanes
of one nonzero are contiguous; an input marked *shared* (a control, the step) is its ``n`` nonzeros,
the same for every lane. Each operation is the scalar C operation CasADi's own code generator
writes, so a lane's values are those of a scalar evaluation up to the libm/libmvec difference in
transcendentals (libmvec's are within 4 ulp).

Only elementwise scalar operations are written; a function with anything else (embedded calls,
``erfinv``, ...) gives None and the caller keeps another path. So does a function with more than
:data:`MAX_INSTRUCTIONS` instructions: the compiler's time and memory grow faster than the code.
"""

from __future__ import annotations

import math

import casadi as ca

__all__ = ["LIBM_CALLS", "MAX_INSTRUCTIONS", "VECTOR_MATH", "lanes_function"]

#: The largest SX function (in CasADi instructions) that is written as C for the compiler. Measured with
#: gcc 12 -O2 on the lane code of the bottleneck field's stage reverse mode (16 RK4 steps, D = 3): 10.7 k
#: instructions (width 50) compile in 5 s, 42 k (width 200) in 27 s with 0.46 GB; the bottleneck's second-order stage
#: of width 16 (243 k instructions) took gcc past 22 GB, that of width 50 (1.9 M) crashed it.
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


def lanes_function(fn: ca.Function, name: str, shared: set[int] = frozenset()) -> tuple[str, set[str]] | None:
    """C source of ``static void name(const double* const* in, double* const* out)``: ``fn`` (an SX
    function) on ``TP_LANES`` lanes, the inputs in ``shared`` the same for every lane.

    Returns the source and the libm functions it calls (so :data:`VECTOR_MATH` declarations can be
    limited to them), or None if ``fn`` has an operation not written here or more than
    :data:`MAX_INSTRUCTIONS` instructions.
    """
    if not fn.is_a("SXFunction") or fn.n_instructions() > MAX_INSTRUCTIONS:
        return None
    lines, calls = [], set()
    for k in range(fn.n_instructions()):
        op, args, res = fn.instruction_id(k), fn.instruction_input(k), fn.instruction_output(k)
        if op == ca.OP_INPUT:
            i, nz = args
            lines.append(f"w{res[0]} = in{i}[{nz}];" if i in shared else f"w{res[0]} = in{i}[{nz} * TP_LANES + l];")
        elif op == ca.OP_OUTPUT:
            o, nz = res
            lines.append(f"out{o}[{nz} * TP_LANES + l] = w{args[0]};")
        elif op == ca.OP_CONST:
            lines.append(f"w{res[0]} = {_literal(float(fn.instruction_constant(k)))};")
        elif op in _TEMPLATES:
            if op in LIBM_CALLS:
                calls.add(LIBM_CALLS[op])
            lines.append(f"w{res[0]} = {_TEMPLATES[op].format(*(f'w{i}' for i in args))};")
        else:
            return None
    pointers = [f"const double* in{i} = in[{i}];" for i in range(fn.n_in())]
    pointers += [f"double* out{o} = out[{o}];" for o in range(fn.n_out())]
    work = ", ".join(f"w{i}" for i in range(fn.sz_w())) or "w0"
    body = "\n    ".join(lines)
    source = (f"static void {name}(const double* const* in, double* const* out) {{\n  " + "\n  ".join(pointers)
              + "\n#pragma omp simd\n  for (int l = 0; l < TP_LANES; ++l) {\n"
              + f"    double {work};\n    {body}\n  }}\n}}\n")
    return source, calls
