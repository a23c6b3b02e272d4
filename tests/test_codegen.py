"""The lane code of turnpike.codegen computes what CasADi computes, lane by lane."""

import ctypes
import os
import time
from pathlib import Path

import casadi as ca
import numpy as np
import pytest
from compilers import compiler_gone, hanging_compiler

from turnpike.codegen import lanes_function
from turnpike.compiled import (
    LANES,
    LARGE_LOOP,
    UNUSED_DAYS,
    compiled,
    compiler,
    compiling,
    lanes_library,
    lanes_map,
    prune_cache,
)


def every_operation():
    """An SX function using every operation lanes_function writes except fmod (which has no vector
    version, so a function with it is evaluated lane by lane); x per lane, s shared."""
    x, s = ca.SX.sym("x", 3), ca.SX.sym("s", 2)
    a, b, c = x[0], x[1], x[2]
    unary = [ca.fabs(a), ca.sqrt(ca.fabs(a) + 1), ca.floor(a), ca.ceil(a), ca.sign(a), ca.sign(a * 0), 1 / (a + 5),
             -b, b**2, 2 * b, b**3, ca.logic_not(a > 0), ca.exp(a), ca.log(ca.fabs(a) + 1), ca.sin(a), ca.cos(a),
             ca.tan(a / 3), ca.asin(ca.tanh(a)), ca.acos(ca.tanh(b)), ca.atan(a), ca.sinh(a), ca.cosh(a),
             ca.tanh(a), ca.asinh(a), ca.acosh(ca.fabs(a) + 1), ca.atanh(ca.tanh(b) / 2), ca.erf(a),
             ca.log1p(ca.fabs(b)), ca.expm1(b)]
    binary = [a + s[0], a - s[0], a * b, a / (ca.fabs(b) + 1), ca.fabs(a) ** s[1], ca.atan2(a, b), ca.hypot(a, b),
              ca.copysign(s[1], b), ca.fmin(a, b), ca.fmax(a, b), a < b, a <= b, a == b, a != b,
              ca.logic_and(a > 0, b > 0), ca.logic_or(a > 0, b > 0), ca.if_else(a > b, c, 0), ca.if_else(a > 0, b, c)]
    return ca.Function("every", [x, s], [ca.vertcat(*unary), ca.vertcat(*binary, 3.5, np.inf)])


def with_fmod():
    x, s = ca.SX.sym("x", 3), ca.SX.sym("s", 2)
    return ca.Function("fmod", [x, s], [ca.fmod(x, s[1]), ca.tanh(x) * s[0]])


@pytest.mark.parametrize("make", [every_operation, with_fmod])
def test_lane_code_matches_casadi_lane_by_lane(make):
    """Each lane's outputs equal CasADi's evaluation at that lane's inputs (libmvec's transcendentals,
    where used, are within a few ulp of libm's)."""
    if compiler() is None:
        pytest.skip("no C compiler")
    fn = make()
    written = lanes_function(fn, "tp_f", shared={1})
    wrapper = "void tp_call(const double* const* in, double* const* out) { tp_f(in, out); }\n"
    built = lanes_library(f"test_lanes_{fn.name()}", [written], code=wrapper)
    assert built is not None, "the lane code did not compile"
    call = ctypes.CDLL(str(built[0])).tp_call
    call.restype = None
    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 2, (3, LANES))
    x[:, 0] = [0.0, 0.0, 1.0]  # ties: sign(0), a == b, fmin/fmax of equal numbers
    x[:, 1] = [-1.5, 0.25, -0.5]
    s = np.array([0.7, 1.3])
    outs = [np.zeros((fn.nnz_out(i), LANES)) for i in range(fn.n_out())]
    ins = [np.ascontiguousarray(x), s]
    Ptr = ctypes.POINTER(ctypes.c_double)
    in_ptrs = (Ptr * 2)(*(a.ctypes.data_as(Ptr) for a in ins))
    out_ptrs = (Ptr * 2)(*(a.ctypes.data_as(Ptr) for a in outs))
    call(in_ptrs, out_ptrs)
    for lane in range(LANES):
        expected = [np.asarray(v).ravel() for v in fn(x[:, lane], s)]
        for got, want in zip(outs, expected, strict=True):
            np.testing.assert_allclose(got[:, lane], want, rtol=1e-14, atol=1e-15, err_msg=f"lane {lane}")


def test_an_operation_it_does_not_write_gives_none():
    x = ca.SX.sym("x")
    assert lanes_function(ca.Function("f", [x], [ca.erfinv(x)]), "tp_f") is None
    y = ca.MX.sym("y")
    assert lanes_function(ca.Function("f", [y], [2 * y]), "tp_f") is None


@pytest.mark.parametrize("threads", ["1", "2", "5"])
def test_lanes_map_matches_casadi_map(monkeypatch, threads):
    """lanes_map gives CasADi's map (per-item outputs) and map with reduce_out (an output summed over
    each group of G items), with 3 groups of 7 items: blocks of LANES straddle the groups, the last
    block is padded, and the groups are split over threads."""
    if compiler() is None:
        pytest.skip("no C compiler")
    monkeypatch.setenv("TURNPIKE_THREADS", threads)
    x, h, z = ca.SX.sym("x", 3), ca.SX.sym("h"), ca.SX.sym("z", 2)
    fn = ca.Function("f", [x, h, z], [ca.tanh(h * x) * z[0], ca.vertcat(ca.exp(x[1] * z[1]), x[2] * h, 1.0)])
    G, groups = 7, 3
    M = G * groups
    rng = np.random.default_rng(0)
    X, Z = rng.standard_normal((3, M)), rng.standard_normal((2, M))
    mapped = lanes_map(fn, shared={1}, summed={1})
    first, sums = mapped(M, G, X, 0.7, Z)
    want_first = fn.map(M)(X, 0.7, Z)[0].full()
    want_sums = fn.map("per_group", "serial", G, [], [1]).map(groups)(X, 0.7, Z)[1].full()
    assert first.shape == (3, M) and sums.shape == (3, groups)
    np.testing.assert_allclose(first, want_first, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(sums, want_sums, rtol=1e-13)
    with pytest.raises(ValueError, match="groups"):
        mapped(M, 4, X, 0.7, Z)


def test_a_lane_loop_past_gccs_reference_limit_is_vectorised_and_right(monkeypatch, tmp_path):
    """A function with more inputs and outputs than GCC's default limit of memory references per vectorised loop
    (1000): lanes_map still gives CasADi's map, and its tanh is libmvec's vector version (a _ZGV symbol), which
    GCC's default flags leave scalar."""
    if compiler() is None:
        pytest.skip("no C compiler")
    monkeypatch.setenv("TURNPIKE_CACHE", str(tmp_path))
    n = LARGE_LOOP // 2 + 1
    x, s = ca.SX.sym("x", n), ca.SX.sym("s")
    fn = ca.Function("wide", [x, s], [ca.tanh(x) * s + x[::-1]])
    mapped = lanes_map(fn, shared={1})
    assert mapped is not None and mapped.build.startswith("4 lanes, -O1 -ftree-vectorize")
    X = np.random.default_rng(0).standard_normal((n, 21))
    np.testing.assert_allclose(mapped(21, 1, X, 0.7)[0], fn.map(21)(X, 0.7).full(), rtol=1e-14, atol=1e-15)
    if "-lmvec" in mapped.build:
        library = next(tmp_path.glob("turnpike_map_wide_*.so")).read_bytes()
        assert b"_ZGV" in library and b"tanh" in library


def test_the_cache_deletes_what_has_not_been_used_and_keeps_the_rest(monkeypatch, tmp_path):
    """Compiling a library prunes the cache: its own files unused for UNUSED_DAYS go, files in use,
    recent ones and files it did not write stay; a cache hit renews a library's time of use."""
    if compiler() is None:
        pytest.skip("no C compiler")
    monkeypatch.setenv("TURNPIKE_CACHE", str(tmp_path))
    now, day = time.time(), 86400.0
    stale = [tmp_path / f"turnpike_old_{'a' * 20}{suffix}" for suffix in (".so", ".failed", ".4242.tmp")]
    recent = tmp_path / f"turnpike_recent_{'b' * 20}.so"
    foreign = [tmp_path / "notes_about_this.so", tmp_path / f"mine_{'c' * 19}.so"]
    for path, age in [*((p, UNUSED_DAYS + 1) for p in stale), (recent, UNUSED_DAYS - 1),
                      *((p, 10 * UNUSED_DAYS) for p in foreign)]:
        path.write_bytes(b"")
        os.utime(path, (now - age * day, now - age * day))
    x = ca.SX.sym("x", 2)
    square = ca.Function("square_for_the_cache_test", [x], [x * x])
    assert compiled(square)(ca.DM([1.5, -2.0])).full().ravel().tolist() == [2.25, 4.0]
    assert not any(p.exists() for p in stale)
    assert recent.exists() and all(p.exists() for p in foreign)
    (library,) = tmp_path.glob("turnpike_square_for_the_cache_test_*.so")
    os.utime(library, (now - 2 * UNUSED_DAYS * day, now - 2 * UNUSED_DAYS * day))
    assert compiled(square) is not None  # a cache hit: no compilation, the time of use renewed
    assert prune_cache() == [] and library.exists()
    assert set(prune_cache(days=0)) == {library, recent} and all(p.exists() for p in foreign)


@pytest.mark.skipif(not Path("/proc").exists(), reason="reads the process table in /proc")
def test_a_compiler_past_its_time_is_killed_with_its_children_and_remembered(monkeypatch, tmp_path):
    """A compiler that hangs (a child that sleeps, as cc1 under cc) is killed, process group and all, after
    COMPILE_SECONDS; the time-out is recorded as a failure, so the next attempt does not wait again."""
    import turnpike.compiled as compiled_module

    pid_file = hanging_compiler(monkeypatch, tmp_path)
    monkeypatch.setattr(compiled_module, "COMPILE_SECONDS", 1)
    x = ca.SX.sym("x")
    start = time.perf_counter()
    assert compiled(ca.Function("hangs", [x], [x * 2])) is None
    assert time.perf_counter() - start < 30
    assert compiler_gone(pid_file)  # the grandchild too
    assert list((tmp_path / "cache").glob("*.failed"))
    start = time.perf_counter()
    assert compiled(ca.Function("hangs", [x], [x * 2])) is None  # remembered: no second wait
    assert time.perf_counter() - start < 0.9


@pytest.mark.skipif(not Path("/proc").exists(), reason="reads the process table in /proc")
def test_a_timed_out_library_is_not_retried_in_its_other_variants_and_ctrl_c_kills_the_compiler(
        monkeypatch, tmp_path):
    """lanes_library has up to four build variants (processor, libmvec); after a time-out it gives up at once,
    now and in later runs, and leaves no partial file. Ctrl-C while the compiler runs kills it (its own
    session does not get the terminal's SIGINT) and is raised."""
    import signal
    import threading

    import turnpike.compiled as compiled_module

    pid_file = hanging_compiler(monkeypatch, tmp_path)
    monkeypatch.setattr(compiled_module, "COMPILE_SECONDS", 1)
    x = ca.SX.sym("x", 2)
    written = [lanes_function(ca.Function("waves", [x], [ca.sin(x) + ca.exp(x)]), "waves")]
    for _ in range(2):
        start = time.perf_counter()
        assert compiled_module.lanes_library("tp_waves", written) is None
        assert time.perf_counter() - start < 1.9  # one time-out at most, not four
    cache = tmp_path / "cache"
    assert [p.read_text() for p in cache.glob("*.failed")] == ["timed out"]
    assert not list(cache.glob("*.tmp"))
    assert compiler_gone(pid_file)

    monkeypatch.setattr(compiled_module, "COMPILE_SECONDS", 60)
    timer = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        compiled(ca.Function("interrupted", [x], [x * 3]))
    timer.join()
    assert compiler_gone(pid_file)


@pytest.mark.skipif(not Path("/proc").exists(), reason="reads the process table in /proc")
def test_a_background_compilation_runs_during_its_block_and_an_error_there_kills_it(monkeypatch, tmp_path):
    """compiling() starts the compiler before its block runs (the hanging compiler's child exists inside it), and
    an exception that leaves the block kills the compiler, process group and all, caches nothing (no library, no
    failure remembered, no partial file) and is raised."""

    pid_file = hanging_compiler(monkeypatch, tmp_path)
    x = ca.SX.sym("x")
    with pytest.raises(RuntimeError, match="while building"):
        with compiling(ca.Function("background", [x], [x * 5])):
            for _ in range(100):  # the fake compiler writes its child's pid once it runs
                if pid_file.exists() and pid_file.read_text().strip():
                    break
                time.sleep(0.05)
            assert pid_file.read_text().strip()
            raise RuntimeError("an error while building")
    assert compiler_gone(pid_file)
    assert not list((tmp_path / "cache").glob("*"))


def test_a_background_compilation_gives_the_function_compiled_gives(monkeypatch, tmp_path):
    """The function compiling() yields returns the compiled function (the same numbers as the SX function), and
    again the same object when called twice; with a compiler that fails, None."""
    if compiler() is None:
        pytest.skip("no C compiler")
    monkeypatch.setenv("TURNPIKE_CACHE", str(tmp_path))
    x = ca.SX.sym("x", 2)
    fn = ca.Function("background_sin", [x], [ca.sin(x) * x])
    with compiling(fn) as result:
        fast = result()
        assert fast is result() and fast is not None
    np.testing.assert_allclose(np.asarray(fast([0.3, -1.2])), np.asarray(fn([0.3, -1.2])), rtol=1e-15)
    monkeypatch.setenv("CC", "false")
    monkeypatch.setenv("TURNPIKE_CACHE", str(tmp_path / "failing"))
    with compiling(fn) as result:
        assert result() is None


def test_functions_over_the_size_limit_are_not_compiled(monkeypatch):
    import turnpike.codegen as codegen_module
    import turnpike.compiled as compiled_module

    x = ca.SX.sym("x", 4)
    fn = ca.Function("big", [x], [ca.sin(x) * ca.cos(x) + x**3])
    monkeypatch.setattr(codegen_module, "MAX_INSTRUCTIONS", fn.n_instructions() - 1)
    monkeypatch.setattr(compiled_module, "MAX_INSTRUCTIONS", fn.n_instructions() - 1)
    assert lanes_function(fn, "big") is None
    assert compiled(fn) is None


def test_a_cached_library_is_found_from_its_symbolic_functions_without_writing_source(monkeypatch, tmp_path):
    """The cache key is the functions' serialisation (and the writer's version, the compiler command and the
    machine): the second request finds the library without generating C; a changed function is a new one."""
    if compiler() is None:
        pytest.skip("no C compiler")
    import turnpike.codegen as codegen_module
    import turnpike.compiled as compiled_module

    monkeypatch.setenv("TURNPIKE_CACHE", str(tmp_path))
    x = ca.SX.sym("x", 2)
    first = [compiled(ca.Function("twice", [x], [2 * x])),
             lanes_library("tp_waves", [lanes_function(ca.Function("waves", [x], [ca.sin(x)]), "waves")])]
    assert all(f is not None for f in first)
    libraries = sorted(tmp_path.glob("*.so"))

    def no_source(*args, **kwargs):
        raise AssertionError("source written for a cached library")

    monkeypatch.setattr(compiled_module, "_casadi_source", no_source)
    monkeypatch.setattr(codegen_module, "_write", no_source)
    again = compiled(ca.Function("twice", [x], [2 * x]))
    assert again is not None and np.allclose(np.asarray(again([1.0, 2.0])).ravel(), [2.0, 4.0])
    assert lanes_library("tp_waves", [lanes_function(ca.Function("waves", [x], [ca.sin(x)]), "waves")]) == first[1]
    assert sorted(tmp_path.glob("*.so")) == libraries
    with pytest.raises(AssertionError, match="source written"):
        compiled(ca.Function("twice", [x], [3 * x]))  # another function: compiled anew
