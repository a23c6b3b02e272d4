"""What this machine can give a build: the memory budget."""

from __future__ import annotations

import os

from .errors import InputError

__all__ = ["memory_budget"]


def memory_budget() -> float:
    """Bytes a build may use: ``$TURNPIKE_MEMORY_GB`` gigabytes if set, else the memory available now
    (Linux's ``MemAvailable``: free memory plus what the kernel can reclaim), else half the physical
    memory."""
    given = os.environ.get("TURNPIKE_MEMORY_GB")
    if given:
        try:
            value = float(given)
        except ValueError:
            value = -1.0
        if not value > 0:
            raise InputError(f"the environment variable TURNPIKE_MEMORY_GB must be a number > 0, got {given!r}")
        return value * 2**30
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return 0.5 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
