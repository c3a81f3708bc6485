"""Generated blocks in Markdown documents: the part between two marker comments, rewritten from
a run's rows, so that a document's figures cannot drift from the results they quote.

A block is everything between a line holding ``begin`` (for example ``<!-- scale-table -->``)
and the next ``end``; the benchmark scripts render their tables from Parquet rows and hand them
here with ``--write`` (replace) or ``--check`` (compare, exit status 1 when they differ).
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["replace_block", "write_block"]


def replace_block(text: str, begin: str, end: str, block: str, name: str = "file") -> str:
    """``text`` with the part between the first ``begin`` and the ``end`` after it replaced by
    ``block`` (one newline after ``begin`` and before ``end``). ``SystemExit`` naming ``name``
    and the markers when either is missing."""
    if begin not in text:
        raise SystemExit(f"{name} has no {begin} ... {end} block")
    head, rest = text.split(begin, 1)
    if end not in rest:
        raise SystemExit(f"{name} has no {begin} ... {end} block")
    _, tail = rest.split(end, 1)
    return f"{head}{begin}\n{block}\n{end}{tail}"


def write_block(path: str | Path, begin: str, end: str, block: str, check: bool,
                what: str = "the generated block") -> int:
    """Rewrite the block of file ``path`` (:func:`replace_block`) and return 0; with ``check``,
    write nothing and return 1 (printing that ``what`` differs from the rows) when the file's
    block is not ``block``."""
    f = Path(path)
    text = f.read_text()
    new = replace_block(text, begin, end, block, str(path))
    if check:
        if new != text:
            print(f"{path}: {what} differs from the rows")
            return 1
        return 0
    f.write_text(new)
    return 0
