"""Generated blocks in Markdown documents: the part between two marker comments, rewritten from
a run's rows, so that a document's figures cannot drift from the results they quote.

A block is everything between a line holding ``begin`` (for example ``<!-- scale-table -->``)
and the next ``end``; the benchmark scripts render their tables from Parquet rows and hand them
here with ``--write`` (replace) or ``--check`` (compare, exit status 1 when they differ).
A *tagged* block, ``<!-- TAG ARG -->`` ... ``<!-- /TAG -->``, names its own source in ARG, so one
document can hold several blocks of one script (:func:`replace_blocks`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

__all__ = ["commit_line", "replace_block", "replace_blocks", "table_step", "write_block",
           "write_blocks"]


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


def replace_blocks(text: str, tag: str, render: Callable[[str], str],
                   name: str = "file") -> str:
    """``text`` with every block ``<!-- TAG ARG -->`` ... ``<!-- /TAG -->`` replaced by
    ``render(ARG)``: one tag for several blocks of one document, each naming its own source
    (for example the directory of rows it is written from). ``SystemExit`` naming ``name``
    when there is no such block or one has no end marker."""
    head = f"<!-- {tag} "
    end = f"<!-- /{tag} -->"
    out: list[str] = []
    rest = text
    found = 0
    while head in rest:
        before, after = rest.split(head, 1)
        arg, sep, after = after.partition(" -->")
        if not sep or end not in after or not arg or " " in arg:
            raise SystemExit(f"{name} has a {head}... --> block without its {end}")
        _, tail = after.split(end, 1)
        out.append(f"{before}{head}{arg} -->\n{render(arg)}\n{end}")
        rest = tail
        found += 1
    if not found:
        raise SystemExit(f"{name} has no {head}... --> ... {end} block")
    return "".join(out) + rest


def _commit(f: Path, text: str, new: str, check: bool, what: str) -> int:
    """Write ``new`` to ``f`` (0), or with ``check`` compare it with ``text`` (1 and a line
    saying ``what`` differs when it does)."""
    if check:
        if new != text:
            print(f"{f}: {what} differs from the rows")
            return 1
        return 0
    f.write_text(new)
    return 0


def write_block(path: str | Path, begin: str, end: str, block: str, check: bool,
                what: str = "the generated block") -> int:
    """Rewrite the block of file ``path`` (:func:`replace_block`) and return 0; with ``check``,
    write nothing and return 1 (printing that ``what`` differs from the rows) when the file's
    block is not ``block``."""
    f = Path(path)
    text = f.read_text()
    return _commit(f, text, replace_block(text, begin, end, block, str(path)), check, what)


def write_blocks(path: str | Path, tag: str, render: Callable[[str], str], check: bool,
                 what: str = "the generated blocks") -> int:
    """:func:`write_block` for every ``<!-- TAG ARG -->`` block of file ``path``
    (:func:`replace_blocks`)."""
    f = Path(path)
    text = f.read_text()
    return _commit(f, text, replace_blocks(text, tag, render, str(path)), check, what)


def table_step(rows: str, render: Callable[[str], str], doc: str | None, check: bool,
               begin: str, end: str, what: str) -> int:
    """A benchmark script's ``--table ROWS [--write DOC | --check DOC]``: the table that
    ``render`` makes of ``rows`` (the Parquet file(s) a run wrote with ``--out``), printed, or
    written into ``doc``'s block between ``begin`` and ``end`` (:func:`write_block`), or with
    ``check`` compared with it. Returns the exit status."""
    text = render(rows)
    if not doc:
        print(text)
        return 0
    return write_block(doc, begin, end, text, check, what)


def commit_line(df, suffix: str = "") -> str:
    """``Rows from commit `abc...`{suffix}.``: the commits (12 hex digits) in the ``commit``
    column of a run's rows ``df``, or "" when the rows carry none (rows written before a
    script recorded it)."""
    if "commit" not in df or not df["commit"].notna().any():
        return ""
    c = sorted(set(df["commit"].dropna()))
    return "Rows from commit " + ", ".join(f"`{x[:12]}`" for x in c) + f"{suffix}."
