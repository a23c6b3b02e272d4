"""Hot SX functions as compiled C, built once per machine and kept in a disk cache.

CasADi evaluates SX functions in a virtual machine, several nanoseconds per elementary
operation. The stage derivatives of :mod:`turnpike.reduced` are evaluated for every sample and
every stage at every iteration, so for large ensembles their C code, compiled with the
system's C compiler, pays for its compile time. The shared library is cached under
``$TURNPIKE_CACHE`` (default ``~/.cache/turnpike``), named by a hash of the generated source and
the compiler command, so the same function is compiled once per machine; files are written
under a temporary name and moved into place, so concurrent solves never load half a library.

Nothing here is required: without a C compiler (or if compiling fails, or with the
environment variable ``TURNPIKE_COMPILE=0``) :func:`compiled` returns None and the caller keeps
the CasADi function.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import casadi as ca

__all__ = ["compiled", "compiler", "cache_dir"]

_FLAGS = ("-O2", "-fPIC", "-shared")


def compiler() -> str | None:
    """The C compiler used (``$CC``, else ``cc`` or ``gcc`` on the PATH), or None."""
    for name in (os.environ.get("CC"), "cc", "gcc"):
        if name and shutil.which(name):
            return name
    return None


def cache_dir() -> Path:
    """Where compiled functions are kept: ``$TURNPIKE_CACHE`` or ``~/.cache/turnpike``."""
    return Path(os.environ.get("TURNPIKE_CACHE", Path.home() / ".cache" / "turnpike"))


def compiled(fn: ca.Function) -> ca.Function | None:
    """``fn`` (an SX function) as a compiled shared library, or None when that is not possible."""
    cc = compiler()
    if cc is None or os.environ.get("TURNPIKE_COMPILE", "1") == "0":
        return None
    with tempfile.TemporaryDirectory() as tmp:
        name = f"turnpike_{fn.name()}"
        gen = ca.CodeGenerator(f"{name}.c", {"with_header": False})
        gen.add(fn)
        source = Path(gen.generate(tmp + os.sep))
        text = source.read_bytes()
        digest = hashlib.sha256(text + " ".join((cc, *_FLAGS)).encode()).hexdigest()[:20]
        target = cache_dir() / f"{name}_{digest}.so"
        if not target.exists():
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                partial = target.with_suffix(f".{os.getpid()}.tmp")
                subprocess.run([cc, *_FLAGS, str(source), "-o", str(partial)], check=True,
                               capture_output=True, timeout=300)
                os.replace(partial, target)
            except (OSError, subprocess.SubprocessError):
                return None
    try:
        return ca.external(fn.name(), str(target))
    except RuntimeError:
        return None
