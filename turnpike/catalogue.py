"""Find catalogue problems through the ``turnpike.problems`` entry-point group.

Any installed package can add problems: an entry point ``name = "module:callable"`` whose
callable returns a :class:`~turnpike.Problem`. Called with no arguments it gives the entry's
documented default instance; its keyword parameters (a cost weight, a target, a dataset size ...)
give the other members of the family, which is what a parameter sweep (:func:`turnpike.sweep`) varies.
"""

from __future__ import annotations

import inspect
from importlib.metadata import entry_points

from .errors import InputError, UnknownNameError
from .problem import Problem

__all__ = ["GROUP", "names", "load", "parameters", "describe"]

GROUP = "turnpike.problems"


def _entries() -> dict:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def names() -> list[str]:
    """The registered catalogue names, sorted."""
    return sorted(_entries())


def _entry(name: str):
    entries = _entries()
    if name not in entries:
        listed = ", ".join(sorted(entries)) or "none (is the project installed with pip?)"
        raise UnknownNameError(f"unknown problem name {name!r}; the catalogue has: {listed}")
    return entries[name].load()


def parameters(name: str) -> list[str]:
    """The keyword parameters that catalogue entry ``name`` accepts (empty if it takes ``**kwargs`` only)."""
    return [p.name for p in inspect.signature(_entry(name)).parameters.values()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def load(name: str, **params) -> Problem:
    """The instance of catalogue entry ``name`` for the keyword parameters ``params`` (none: its default).

    Raises:
        UnknownNameError: ``name`` is not registered (the message lists what is), or the entry has
            no parameter of one of the given names (the message lists the ones it has).
        InputError: a parameter value is rejected by the entry, or the entry returns no Problem.
    """
    make = _entry(name)
    signature = inspect.signature(make)
    takes_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    unknown = [key for key in params if key not in signature.parameters] if not takes_any else []
    if unknown:
        accepted = ", ".join(parameters(name)) or "none"
        raise UnknownNameError(f"catalogue entry {name!r} has no parameter {unknown[0]!r}; it accepts: {accepted}")
    problem = make(**params)
    if not isinstance(problem, Problem):
        raise InputError(f"catalogue entry {name!r} returned {type(problem).__name__}, not a turnpike.Problem")
    return problem


def describe(name: str) -> str:
    """The first line of the docstring of the class of catalogue entry ``name``, without reST markup."""
    entry = _entries()[name].load()
    doc = (getattr(entry, "__self__", entry).__doc__ or "").strip()
    return doc.splitlines()[0].replace("``", "") if doc else ""
