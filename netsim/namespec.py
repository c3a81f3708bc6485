"""The one grammar of ``NAME[:ARG...]`` specifications.

Schedulers (``greedy:4:max``), routing sources (``zipf:1.2``, ``trace:FILE:3``), relayouts
(``eplb:2:5``) and collectives (``hierarchical:nodedup``) are all written as a name followed by
colon-separated arguments. :func:`parse_name_spec` splits such a text once into a
:class:`NameSpec`; each family then reads its typed arguments from it (``netsim.schedule``,
``netsim.workload.routing``, ``netsim.spec``). Nothing else splits these strings.

A single drive letter (``C:\\x``) is not a separator: Windows paths survive as one argument.
"""
from __future__ import annotations

from dataclasses import dataclass

from netsim.errors import ConfigError

__all__ = ["NameSpec", "parse_name_spec"]


@dataclass(frozen=True)
class NameSpec:
    """``name`` (lower case) and its arguments (stripped strings, in order)."""

    name: str
    args: tuple[str, ...] = ()
    text: str = ""

    def arg(self, i: int, default: str | None = None) -> str | None:
        """Argument ``i``, or ``default`` when there are fewer."""
        return self.args[i] if i < len(self.args) else default

    def int_arg(self, i: int, what: str, default: int | None = None, minimum: int = 1) -> int | None:
        """Argument ``i`` as an integer >= ``minimum`` (``default`` when absent)."""
        if i >= len(self.args):
            return default
        t = self.args[i]
        try:
            v = int(t)
        except ValueError:
            v = None
        if v is None or v < minimum or str(v) != t.lstrip("+"):
            raise ConfigError(f"{self.text!r}: {what} = {t!r}; expected an integer >= {minimum}")
        return v

    def float_arg(self, i: int, what: str, default: float | None = None) -> float | None:
        """Argument ``i`` as a finite float (``default`` when absent)."""
        if i >= len(self.args):
            return default
        try:
            v = float(self.args[i])
        except ValueError:
            v = float("nan")
        if v != v or v in (float("inf"), float("-inf")):
            raise ConfigError(f"{self.text!r}: {what} = {self.args[i]!r}; expected a number")
        return v

    def choice_arg(self, i: int, what: str, choices: tuple[str, ...], default: str | None = None):
        """Argument ``i``, lower-cased, one of ``choices`` (``default`` when absent)."""
        if i >= len(self.args):
            return default
        t = self.args[i].lower()
        if t not in choices:
            raise ConfigError(f"{self.text!r}: {what} = {self.args[i]!r}; expected one of"
                              f" {', '.join(choices)}")
        return t

    def at_most(self, n: int, syntax: str) -> None:
        """Refuse more than ``n`` arguments, naming the syntax."""
        if len(self.args) > n:
            raise ConfigError(f"{self.text!r}: {len(self.args)} argument(s) given; expected {syntax}")

    def __str__(self) -> str:
        return ":".join((self.name,) + self.args)


def parse_name_spec(text: str, what: str) -> NameSpec:
    """Split ``NAME[:ARG...]``; ``what`` names the parameter in errors (``scheduler``...)."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"{what}={text!r}; expected NAME[:ARG...]")
    parts: list[str] = []
    for piece in text.strip().split(":"):
        # a drive letter: 'C' followed by a piece starting with a path separator
        if parts and len(parts[-1]) == 1 and parts[-1].isalpha() and piece[:1] in ("\\", "/") \
                and len(parts) > 1:
            parts[-1] = parts[-1] + ":" + piece
        else:
            parts.append(piece)
    name = parts[0].strip().lower()
    if not name:
        raise ConfigError(f"{what}={text!r}; expected NAME[:ARG...]")
    return NameSpec(name, tuple(p.strip() for p in parts[1:]), text.strip())
