"""Find catalogue problems through the ``turnpike.problems`` entry-point group.

Any installed package can add problems: an entry point ``name = "module:callable"`` whose
callable returns a :class:`~turnpike.Problem` when called with no arguments.
"""

from __future__ import annotations

from importlib.metadata import entry_points

from .errors import InputError, UnknownNameError
from .problem import Problem

__all__ = ["GROUP", "names", "load", "describe"]

GROUP = "turnpike.problems"


def _entries() -> dict:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def names() -> list[str]:
    """The registered catalogue names, sorted."""
    return sorted(_entries())


def load(name: str) -> Problem:
    """The default instance of catalogue entry ``name``.

    Raises:
        UnknownNameError: ``name`` is not registered (the message lists what is).
    """
    entries = _entries()
    if name not in entries:
        listed = ", ".join(sorted(entries)) or "none (is the project installed with pip?)"
        raise UnknownNameError(f"unknown problem name {name!r}; the catalogue has: {listed}")
    problem = entries[name].load()()
    if not isinstance(problem, Problem):
        raise InputError(f"catalogue entry {name!r} returned {type(problem).__name__}, not a turnpike.Problem")
    return problem


def describe(name: str) -> str:
    """The first line of the docstring of the class of catalogue entry ``name``, without reST markup."""
    entry = _entries()[name].load()
    doc = (getattr(entry, "__self__", entry).__doc__ or "").strip()
    return doc.splitlines()[0].replace("``", "") if doc else ""
