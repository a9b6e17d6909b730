"""Closest names for "did you mean" hints (standard library only: every layer may use it)."""
from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest_names(name: str, candidates: Iterable[str], n: int = 5, cutoff: float = 0.5) -> list[str]:
    """Up to ``n`` candidates close to ``name``: the same letters in another case first, then
    the closest spellings, compared as written and ignoring case."""
    candidates = sorted(set(candidates))
    same_letters = [c for c in candidates if c.lower() == name.lower() and c != name]
    similar = difflib.get_close_matches(name, candidates, n=n, cutoff=cutoff)
    lowered = {c.lower(): c for c in candidates}
    similar += [lowered[m] for m in difflib.get_close_matches(name.lower(), list(lowered), n=n,
                                                              cutoff=cutoff)]
    return list(dict.fromkeys(same_letters + similar))[:n]


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    close = closest_names(name, candidates, n=3)
    return f" Did you mean {', '.join(close)}?" if close else ""
