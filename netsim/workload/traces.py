"""Routing traces: read, validate and write recorded expert choices; the ``trace:PATH[:LAYER]`` source.

Two kinds of trace, told apart by their columns:

* **per-token** -- one row per (layer, token): ``layer, token, expert_ids[top_k]``, optional
  ``gate_weights[top_k]``, ``sequence``, ``iteration``. Files:

  - ``.parquet``: ``expert_ids`` (and ``gate_weights``) a list or fixed-size-list column;
  - ``.npz``: arrays of those names, ``expert_ids`` 2-D (rows x top_k); an optional scalar
    ``n_experts`` declares the model's expert count;
  - ``.jsonl`` / ``.ndjson`` / ``.json`` (one JSON object a line), as vLLM routing-log patches
    write it: ``layer, token_idx, experts[k], gating_probs[k]`` and optional ``dataset,
    problem_id`` (e.g. a Mixtral-8x7B HumanEval sample ``mixtral8x7b_humaneval_2problems.jsonl``, read as
    it is). ``problem_id`` (per ``dataset`` when there are several) becomes ``sequence``.

  Column aliases are accepted in every format: ``token_idx`` = ``token``, ``experts`` =
  ``expert_ids``, ``gating_probs`` = ``gate_weights``, ``problem_id`` = ``sequence``.

* **per-batch counts** -- ``iteration, layer, expert, tokens`` (``tokens`` = how many tokens of that
  iteration's batch chose ``expert`` in ``layer``), in ``.parquet``, ``.csv`` or ``.npz``. Rows
  repeating an (iteration, layer, expert) are summed.

Validation (every failure a :class:`~netsim.errors.TraceError` naming the file and the value): a
truncated or unreadable file, a missing column, ragged ``expert_ids``, a non-integer, missing or
negative expert id, an expert id at or above a declared ``n_experts``, a token that lists the same
expert twice, ``gate_weights`` of another shape, a negative or non-integer token count, an empty
trace. The run's expert count and top-k are checked when the trace is used (``counts``).

Parsed files are cached per (resolved path, size, mtime, path as given) in a
``functools.lru_cache`` of the 16 most recently used, so a sweep that uses one trace at many
points reads it once per process; the arrays of a cached trace are read-only.

The routing source ``trace:PATH[:LAYER]`` (see :class:`TraceSource`) maps the trace onto a run.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from numba import njit

from netsim.errors import ConfigError, TraceError
from netsim.workload.routing import CountOnly, check_groups, register

__all__ = ["Trace", "read_trace", "write_trace", "TraceSource", "clear_cache", "trace_layers",
           "layer_specs"]

TOKEN_COLUMNS = ("layer", "token", "expert_ids")
TOKEN_OPTIONAL = ("gate_weights", "sequence", "iteration")
COUNT_COLUMNS = ("iteration", "layer", "expert", "tokens")
_ALIASES = {"token_idx": "token", "experts": "expert_ids", "gating_probs": "gate_weights",
            "problem_id": "sequence"}
_EXPECTED = ("per-token columns layer, token, expert_ids[top_k] (optional gate_weights, sequence,"
             " iteration) or per-batch count columns iteration, layer, expert, tokens")
_JSONL = (".jsonl", ".ndjson", ".json")


# ---------------------------------------------------------------------------------------------
# the Trace object


@dataclass
class Trace:
    """A parsed routing trace: flat numpy arrays, validated on construction.

    Per-token traces (``kind == "tokens"``) fill ``layer, token`` (int64) and ``expert_ids`` (int32,
    shape (rows, top_k)) and optionally ``gate_weights`` (float32, same shape), ``sequence``;
    per-batch count traces (``kind == "counts"``) fill ``layer, expert, tokens``. ``iteration`` is
    always present (zeros when the file has none; ``has_iteration`` tells which). ``n_experts`` is
    the expert count the file declares, if any. ``meta`` is free-form provenance (JSON-able: the
    model, the text source... as ``netsim capture`` writes them), kept by .parquet and .npz.
    """

    layer: np.ndarray
    iteration: np.ndarray | None = None
    token: np.ndarray | None = None
    expert_ids: np.ndarray | None = None
    gate_weights: np.ndarray | None = None
    sequence: np.ndarray | None = None
    expert: np.ndarray | None = None
    tokens: np.ndarray | None = None
    n_experts: int | None = None
    path: str = "<memory>"
    has_iteration: bool = field(default=False)
    meta: dict = field(default_factory=dict)
    _groups: dict | None = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        where = f"trace {self.path!r}"
        per_token = self.expert_ids is not None
        per_batch = self.expert is not None or self.tokens is not None
        if per_token == per_batch:
            raise TraceError(f"{where}: expected either expert_ids (per-token) or expert and"
                             f" tokens (per-batch counts), got "
                             f"{'both' if per_token else 'neither'}")
        self.layer = _int_column(self.layer, "layer", where, lo=0)
        n = len(self.layer)
        if n == 0:
            raise TraceError(f"{where} has no rows; expected at least one routing record")
        if self.iteration is None:
            self.iteration = np.zeros(n, np.int64)
        else:
            self.has_iteration = True
            self.iteration = _int_column(self.iteration, "iteration", where, lo=0, n=n)
        if self.n_experts is not None:
            if int(self.n_experts) < 1:
                raise TraceError(f"{where}: n_experts={self.n_experts!r}; expected >= 1")
            self.n_experts = int(self.n_experts)
        if per_token:
            self._check_tokens(where, n)
        else:
            self._check_counts(where, n)

    def _check_tokens(self, where, n):
        e = np.asarray(self.expert_ids)
        if e.ndim == 1:
            e = e[:, None]
        if e.ndim != 2 or e.shape[0] != n or e.shape[1] < 1:
            raise TraceError(f"{where}: expert_ids has shape {e.shape}; expected ({n}, top_k)")
        self.expert_ids = _expert_ids(e, where, self.n_experts, layer=self.layer)
        self.token = (np.arange(n, dtype=np.int64) if self.token is None
                      else _int_column(self.token, "token", where, lo=0, n=n))
        if self.sequence is not None:
            self.sequence = _int_column(self.sequence, "sequence", where, lo=0, n=n)
        ids = self.expert_ids
        k = ids.shape[1]
        r = _first_repeat(ids)
        if r >= 0:
            dup = [int(x) for x in ids[r] if (ids[r] == x).sum() > 1][0]
            raise TraceError(
                f"{where}: row {r} (layer {int(self.layer[r])}, token {int(self.token[r])})"
                f" lists expert {dup} twice in expert_ids {ids[r].tolist()}; expected {k}"
                f" distinct experts")
        if self.gate_weights is not None:
            g = np.asarray(self.gate_weights)
            if g.ndim == 1:
                g = g[:, None]
            if g.shape != self.expert_ids.shape:
                raise TraceError(f"{where}: gate_weights has shape {g.shape}; expected"
                                 f" {self.expert_ids.shape} like expert_ids")
            if not np.issubdtype(g.dtype, np.number):
                raise TraceError(f"{where}: gate_weights has dtype {g.dtype}; expected numbers")
            g = g.astype(np.float32)
            bad = np.flatnonzero(~np.isfinite(g).all(axis=1))
            if len(bad):
                raise TraceError(f"{where}: gate_weights of row {int(bad[0])} is "
                                 f"{g[bad[0]].tolist()}; expected finite numbers")
            self.gate_weights = g

    def _check_counts(self, where, n):
        if self.expert is None or self.tokens is None:
            raise TraceError(f"{where}: a per-batch count trace needs both expert and tokens")
        self.expert = _int_column(self.expert, "expert", where, lo=0, n=n, hi=self.n_experts,
                                  layer=self.layer)
        self.tokens = _int_column(self.tokens, "tokens", where, lo=0, n=n, what="token count",
                                  layer=self.layer)

    # -- properties ------------------------------------------------------------------------

    @property
    def kind(self) -> str:
        """``"tokens"`` (one row per token) or ``"counts"`` (per-batch expert counts)."""
        return "tokens" if self.expert_ids is not None else "counts"

    @property
    def top_k(self) -> int | None:
        """Experts per token (per-token traces); None for count traces."""
        return None if self.expert_ids is None else int(self.expert_ids.shape[1])

    @property
    def n_rows(self) -> int:
        return len(self.layer)

    @property
    def layers(self) -> np.ndarray:
        """Sorted distinct layer ids."""
        return self._index()["layers"]

    @property
    def iterations(self) -> np.ndarray:
        """Sorted distinct iteration ids (``[0]`` when the file has no iteration column)."""
        return self._index()["iterations"]

    @property
    def max_expert(self) -> int:
        """Largest expert id in the trace."""
        return int(self.expert_ids.max() if self.expert_ids is not None else self.expert.max())

    def _index(self) -> dict:
        """Rows grouped by (iteration, layer), file order kept inside a group (computed once)."""
        if self._groups is None:
            layers, li = np.unique(self.layer, return_inverse=True)
            iters, ii = np.unique(self.iteration, return_inverse=True)
            key = ii.astype(np.int64) * len(layers) + li
            order = np.argsort(key, kind="stable")
            bounds = np.searchsorted(key[order], np.arange(len(layers) * len(iters) + 1))
            self._groups = {"layers": layers, "iterations": iters, "order": order,
                            "bounds": bounds, "cache": {}}
        return self._groups

    def rows(self, layer: int, iteration: int | None = None) -> np.ndarray:
        """Row indices of one layer (and iteration, if given), in file order."""
        g = self._index()
        layers, iters = g["layers"], g["iterations"]
        li = np.searchsorted(layers, layer)
        if li >= len(layers) or layers[li] != layer:
            raise ConfigError(f"trace {self.path!r} has no layer {layer}; it has layers "
                              f"{_short(layers)}")
        if iteration is None:
            idx = [self._group_rows(ii * len(layers) + li) for ii in range(len(iters))]
            return np.sort(np.concatenate(idx))
        ii = np.searchsorted(iters, iteration)
        if ii >= len(iters) or iters[ii] != iteration:
            raise ConfigError(f"trace {self.path!r} has no iteration {iteration}; it has"
                              f" iterations {_short(iters)}")
        return self._group_rows(ii * len(layers) + li)

    def _group_rows(self, gid: int) -> np.ndarray:
        g = self._index()
        return g["order"][g["bounds"][gid]:g["bounds"][gid + 1]]

    def expert_counts(self, layer: int | None = None, iteration: int | None = None,
                      experts: int | None = None) -> np.ndarray:
        """Tokens per expert (int64), over the whole trace or one layer / iteration."""
        if layer is None and iteration is None:
            rows = slice(None)
        elif layer is None:
            rows = np.flatnonzero(self.iteration == iteration)
        else:
            rows = self.rows(layer, iteration)
        n = max(self.max_expert + 1, experts or 0)
        if self.kind == "tokens":
            return np.bincount(self.expert_ids[rows].ravel(), minlength=n).astype(np.int64)
        return np.bincount(self.expert[rows], weights=self.tokens[rows],
                           minlength=n).round().astype(np.int64)

    def freeze(self) -> "Trace":
        """Make every array read-only (cached traces are shared)."""
        for name in ("layer", "iteration", "token", "expert_ids", "gate_weights", "sequence",
                     "expert", "tokens"):
            a = getattr(self, name)
            if isinstance(a, np.ndarray):
                a.flags.writeable = False
        return self


def _short(a: np.ndarray) -> str:
    a = list(np.asarray(a).tolist())
    return str(a) if len(a) <= 12 else f"[{a[0]}..{a[-1]}] ({len(a)} values)"


def _at(r: int, layer) -> str:
    """``row R`` or, when the layer column is known, ``row R (layer L)``."""
    return f"row {r}" if layer is None else f"row {r} (layer {int(layer[r])})"


def _first_bad(a: np.ndarray, bad: np.ndarray) -> tuple[int, int]:
    """(first row holding a ``bad`` entry, that entry's value) of a 1-D or 2-D array."""
    r = int(np.flatnonzero(bad.reshape(len(a), -1).any(axis=1))[0])
    row = a[r].reshape(-1)
    return r, int(row[np.flatnonzero(bad[r].reshape(-1))[0]])


def _int_array(a, name, where, lo=0, hi=None, what=None, layer=None) -> np.ndarray:
    what = what or name
    a = np.asarray(a)
    if a.dtype == object:
        raise TraceError(f"{where}: column {name!r} holds mixed or missing values; expected"
                         f" integers")
    if np.issubdtype(a.dtype, np.bool_) or not np.issubdtype(a.dtype, np.number):
        raise TraceError(f"{where}: column {name!r} has dtype {a.dtype}; expected integers")
    if not np.issubdtype(a.dtype, np.integer):
        fin = np.isfinite(a)
        if not fin.all():
            r = int(np.flatnonzero(~fin.reshape(len(a), -1).all(axis=1))[0])
            raise TraceError(f"{where}: {what} in {_at(r, layer)} is missing"
                             f" ({a[r].tolist()}); expected an integer")
        frac = a != np.round(a)
        if frac.any():
            r = int(np.flatnonzero(frac.reshape(len(a), -1).any(axis=1))[0])
            raise TraceError(f"{where}: {what} in {_at(r, layer)} is {a[r].tolist()};"
                             f" expected an integer")
    a = a.astype(np.int64, copy=False)
    if a.size:
        if a.min() < lo:
            r, v = _first_bad(a, a < lo)
            label = "negative " + what if lo == 0 else what
            raise TraceError(f"{where}: {label} {v} in {_at(r, layer)}; expected an integer"
                             f" >= {lo}")
        if hi is not None and a.max() >= hi:
            r, v = _first_bad(a, a >= hi)
            raise TraceError(f"{where}: {what} {v} in {_at(r, layer)} is out of range; the"
                             f" trace declares n_experts={hi}, so expected 0..{hi - 1}")
    return np.ascontiguousarray(a)


@njit(cache=True)
def _first_repeat(ids):
    """First row of ``ids`` (rows x k) that names an expert twice, or -1."""
    n, k = ids.shape
    for r in range(n):
        for a in range(k):
            for b in range(a + 1, k):
                if ids[r, a] == ids[r, b]:
                    return r
    return -1


def _expert_ids(e, where, n_experts, layer=None) -> np.ndarray:
    """Validate expert ids (rows x top_k) and store them as int32 (ids are small)."""
    if np.issubdtype(e.dtype, np.integer) and e.size:
        mn, mx = int(e.min()), int(e.max())
        if mn >= 0 and mx < min(n_experts or 2**31 - 1, 2**31 - 1):
            return np.ascontiguousarray(e, dtype=np.int32)
    a = _int_array(e, "expert_ids", where, lo=0, hi=n_experts, layer=layer)
    if a.size and a.max() >= 2**31 - 1:
        r, v = _first_bad(a, a >= 2**31 - 1)
        raise TraceError(f"{where}: expert id {v} in {_at(r, layer)} is out of range; expected"
                         f" ids below 2**31")
    return np.ascontiguousarray(a, dtype=np.int32)


def _int_column(a, name, where, lo=0, n=None, hi=None, what=None, layer=None) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 1:
        raise TraceError(f"{where}: column {name!r} has shape {a.shape}; expected one value a row")
    if n is not None and len(a) != n:
        raise TraceError(f"{where}: column {name!r} has {len(a)} rows; expected {n} like"
                         f" 'layer'")
    return _int_array(a, name, where, lo=lo, hi=hi, what=what, layer=layer)


# ---------------------------------------------------------------------------------------------
# reading


_CACHE_MAX = 16


def clear_cache() -> None:
    """Forget every cached trace."""
    _read_cached.cache_clear()


def read_trace(path, cache: bool = True) -> Trace:
    """Read and validate a routing trace; the format follows the suffix (see module docstring)."""
    p = Path(path)
    if not p.is_file():
        raise TraceError(f"trace file {str(path)!r} does not exist; expected a .parquet, .npz,"
                         f" .jsonl or .csv routing trace")
    if not cache:
        return _parse(p, str(path))
    st = p.stat()
    return _read_cached(str(p.resolve()), st.st_size, st.st_mtime_ns, str(path))


def trace_layers(path) -> list[int]:
    """The distinct layer ids of a trace file, sorted: ``trace:PATH:L`` runs layer ``L``."""
    return [int(x) for x in read_trace(path).layers]


def layer_specs(path) -> list[str]:
    """``trace:PATH:L`` for every layer ``L`` of the trace, in layer order: the values of a
    sweep's ``routing`` axis that runs every MoE layer of the trace, one row per layer
    (``trace:PATH`` without a layer keeps its meaning, see :class:`TraceSource`)."""
    return [f"trace:{path}:{layer}" for layer in trace_layers(path)]


@lru_cache(maxsize=_CACHE_MAX)
def _read_cached(resolved: str, size: int, mtime_ns: int, path: str) -> Trace:
    """The parsed, frozen trace of a file as it is now: its size and modification time are in
    the key, so a rewritten file is read again (``path``, as the caller spelled it, is the
    trace's ``path``)."""
    return _parse(Path(path), path).freeze()


def _parse(p: Path, path: str) -> Trace:
    suffix = p.suffix.lower()
    if suffix == ".parquet" or suffix == ".pq":
        cols, meta = _read_parquet(p)
    elif suffix == ".npz":
        cols, meta = _read_npz(p)
    elif suffix in _JSONL:
        cols, meta = _read_jsonl(p)
    elif suffix == ".csv":
        cols, meta = _read_csv(p)
    else:
        raise TraceError(f"trace file {path!r} has suffix {suffix!r}; expected .parquet,"
                         f" .npz, .jsonl (.ndjson, .json) or .csv")
    return _build(cols, meta, path)


def _build(cols: dict, meta: dict, where: str) -> Trace:
    cols = {(_ALIASES.get(k, k)): v for k, v in cols.items()}
    found = sorted(cols)
    n_experts = meta.get("n_experts")
    extra = meta.get("meta") if isinstance(meta.get("meta"), dict) else {}
    if "expert_ids" in cols:
        missing = [c for c in TOKEN_COLUMNS if c not in cols]
        if missing:
            raise TraceError(f"trace {where!r} lacks column(s) {missing} (found {found});"
                             f" expected {_EXPECTED}")
        return Trace(layer=cols["layer"], token=cols["token"], expert_ids=cols["expert_ids"],
                     gate_weights=cols.get("gate_weights"), sequence=cols.get("sequence"),
                     iteration=cols.get("iteration"), n_experts=n_experts, path=where,
                     meta=extra)
    if "expert" in cols or "tokens" in cols:
        missing = [c for c in COUNT_COLUMNS if c not in cols]
        if missing:
            raise TraceError(f"trace {where!r} lacks column(s) {missing} (found {found});"
                             f" expected {_EXPECTED}")
        return Trace(layer=cols["layer"], iteration=cols["iteration"], expert=cols["expert"],
                     tokens=cols["tokens"], n_experts=n_experts, path=where, meta=extra)
    raise TraceError(f"trace {where!r} has columns {found}; expected {_EXPECTED}")


def _list_column(col, name: str, where: str) -> np.ndarray:
    """A pyarrow list / fixed-size-list / large-list column -> 2-D numpy array."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = col.type
    if pa.types.is_fixed_size_list(t):
        if col.null_count:
            raise TraceError(f"trace {where!r}: column {name!r} has {col.null_count} missing"
                             f" rows; expected a list in every row")
        chunks = col.chunks if isinstance(col, pa.ChunkedArray) else [col]
        parts = [c.flatten().to_numpy(zero_copy_only=False) for c in chunks]
        if any(c.flatten().null_count for c in chunks):
            raise TraceError(f"trace {where!r}: column {name!r} has missing list items;"
                             f" expected numbers")
        flat = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return flat.reshape(len(col), t.list_size)
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        if col.null_count:
            r = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
            raise TraceError(f"trace {where!r}: column {name!r} is missing in row {r};"
                             f" expected a list in every row")
        lens = pc.list_value_length(col).to_numpy(zero_copy_only=False)
        if len(lens) == 0:
            return np.zeros((0, 1), np.int64)
        if (lens != lens[0]).any() or lens[0] == 0:
            r = int(np.flatnonzero(lens != lens[0])[0]) if (lens != lens[0]).any() else 0
            raise TraceError(f"trace {where!r}: column {name!r} has {int(lens[r])} values in"
                             f" row {r} but {int(lens[0])} in row 0; expected top_k >= 1 values"
                             f" in every row")
        flat = pc.list_flatten(col)
        if flat.null_count:
            raise TraceError(f"trace {where!r}: column {name!r} has missing list items;"
                             f" expected numbers")
        return flat.to_numpy(zero_copy_only=False).reshape(len(col), int(lens[0]))
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return col.to_numpy(zero_copy_only=False)[:, None]
    raise TraceError(f"trace {where!r}: column {name!r} has type {t}; expected a list of"
                     f" numbers a row")


def _table_columns(table, where: str) -> dict:
    import pyarrow as pa

    cols = {}
    for name in table.column_names:
        canon = _ALIASES.get(name, name)
        col = table.column(name)
        if canon in ("expert_ids", "gate_weights"):
            cols[name] = _list_column(col, name, where)
        elif pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
            if col.null_count:
                arr = col.to_numpy(zero_copy_only=False).astype(np.float64)
            else:
                arr = col.to_numpy()
            cols[name] = arr
        elif canon in TOKEN_COLUMNS + TOKEN_OPTIONAL + COUNT_COLUMNS:
            raise TraceError(f"trace {where!r}: column {name!r} has type {col.type}; expected"
                             f" integers")
        else:
            cols[name] = col  # other columns (e.g. dataset) kept as arrow
    return cols


def _read_parquet(p: Path):
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(p)
    except Exception as exc:  # noqa: BLE001 -- any parse failure is a bad file
        raise TraceError(f"trace {str(p)!r} cannot be read as Parquet (truncated or corrupt?):"
                         f" {exc}") from None
    meta = {}
    raw = (table.schema.metadata or {}).get(b"netsim.trace")
    if raw:
        try:
            meta = json.loads(raw)
        except ValueError:
            meta = {}
    cols = _table_columns(table, str(p))
    cols = {k: v for k, v in cols.items() if isinstance(v, np.ndarray)}
    return cols, meta


def _read_npz(p: Path):
    try:
        with np.load(p, allow_pickle=False) as z:
            cols = {k: z[k] for k in z.files}
    except Exception as exc:  # noqa: BLE001 -- truncated zip, bad member, pickled object...
        raise TraceError(f"trace {str(p)!r} cannot be read as NPZ (truncated or corrupt?):"
                         f" {type(exc).__name__}: {exc}") from None
    meta = {}
    if "n_experts" in cols:
        ne = cols.pop("n_experts")
        if ne.size != 1:
            raise TraceError(f"trace {str(p)!r}: n_experts has shape {ne.shape}; expected a"
                             f" scalar")
        meta["n_experts"] = int(ne.ravel()[0])
    if "meta" in cols:
        raw = cols.pop("meta")
        try:
            meta["meta"] = json.loads(str(raw.ravel()[0]))
        except (ValueError, IndexError):
            raise TraceError(f"trace {str(p)!r}: member 'meta' is not a JSON string") from None
    return cols, meta


def _read_jsonl(p: Path):
    import pyarrow as pa
    import pyarrow.json as pj

    try:
        table = pj.read_json(p)
    except Exception as exc:  # noqa: BLE001
        raise TraceError(f"trace {str(p)!r} cannot be read as JSON lines{_bad_json_line(p)}:"
                         f" {exc}") from None
    names = table.column_names
    cols = _table_columns(table, str(p))
    # sequence = problem_id, per dataset when the file mixes datasets
    if "problem_id" in names and "dataset" in names:
        ds = table.column("dataset")
        if isinstance(ds, pa.ChunkedArray):
            ds = ds.combine_chunks()
        d_codes = ds.dictionary_encode().indices.to_numpy(zero_copy_only=False)
        if len(np.unique(d_codes)) > 1:
            pid = np.asarray(cols["problem_id"])
            _, seq = np.unique(np.stack([d_codes, pid.astype(np.int64)]), axis=1,
                               return_inverse=True)
            cols["problem_id"] = seq.ravel()
    cols = {k: v for k, v in cols.items() if isinstance(v, np.ndarray)}
    return cols, {}


def _bad_json_line(p: Path) -> str:
    """Find the first line that is not a JSON object, for the error message."""
    try:
        with open(p, "rb") as f:
            for i, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except ValueError:
                    tail = "" if line.endswith(b"\n") else ", the last line, cut short"
                    return f" (line {i} is not valid JSON{tail}: truncated file?)"
                if not isinstance(obj, dict):
                    return f" (line {i} is not a JSON object)"
    except OSError:
        pass
    return ""


def _read_csv(p: Path):
    import pandas as pd

    try:
        df = pd.read_csv(p)
    except Exception as exc:  # noqa: BLE001
        raise TraceError(f"trace {str(p)!r} cannot be read as CSV: {exc}") from None
    if "expert_ids" in df.columns or "experts" in df.columns:
        raise TraceError(f"trace {str(p)!r}: CSV holds per-batch counts only (columns "
                         f"{', '.join(COUNT_COLUMNS)}); write per-token traces as .parquet,"
                         f" .npz or .jsonl")
    cols = {}
    for c in df.columns:
        s = df[c]
        if s.dtype == object or str(s.dtype).startswith("str"):
            try:
                s = pd.to_numeric(s)
            except (ValueError, TypeError):
                bad = next((i for i, v in enumerate(df[c]) if not _is_num(v)), 0)
                raise TraceError(f"trace {str(p)!r}: column {c!r} row {bad} is "
                                 f"{df[c].iloc[bad]!r}; expected a number") from None
        cols[c] = s.to_numpy(dtype=np.float64) if s.isna().any() else s.to_numpy()
    return cols, {}


def _is_num(v) -> bool:
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False


# ---------------------------------------------------------------------------------------------
# writing


def write_trace(trace: Trace, path) -> Path:
    """Write ``trace`` to ``path``; the format follows the suffix (.parquet, .npz, .jsonl, .csv).

    Per-token traces: .parquet, .npz or .jsonl (vLLM routing-log shape: ``layer, token_idx,
    experts, gating_probs``, plus ``problem_id`` for ``sequence`` and ``iteration`` when
    present). Count traces: .parquet, .npz or .csv. ``trace.meta`` is kept by .parquet (schema
    metadata) and .npz (a JSON string member ``meta``), not by .jsonl or .csv. The file is
    written to a temporary name and renamed, so a reader never sees half a file.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    tmp = p.with_name(f".{p.name}.tmp{os.getpid()}{suffix}")
    if suffix in (".parquet", ".pq"):
        _write_parquet(trace, tmp)
    elif suffix == ".npz":
        np.savez(tmp, **_columns_out(trace, npz=True))
    elif suffix in _JSONL:
        _write_jsonl(trace, tmp)
    elif suffix == ".csv":
        if trace.kind != "counts":
            raise ConfigError(f"cannot write a per-token trace to {str(path)!r}: CSV holds"
                              f" per-batch counts; use .parquet, .npz or .jsonl")
        import pandas as pd

        pd.DataFrame(_columns_out(trace)).to_csv(tmp, index=False)
    else:
        raise ConfigError(f"trace file {str(path)!r} has suffix {suffix!r}; expected .parquet,"
                          f" .npz, .jsonl or .csv")
    os.replace(tmp, p)
    return p


def _columns_out(trace: Trace, npz: bool = False) -> dict:
    if trace.kind == "tokens":
        out = {"layer": trace.layer, "token": trace.token, "expert_ids": trace.expert_ids}
        if trace.gate_weights is not None:
            out["gate_weights"] = trace.gate_weights
        if trace.sequence is not None:
            out["sequence"] = trace.sequence
        if trace.has_iteration:
            out["iteration"] = trace.iteration
    else:
        out = {"iteration": trace.iteration, "layer": trace.layer, "expert": trace.expert,
               "tokens": trace.tokens}
    if npz and trace.n_experts is not None:
        out["n_experts"] = np.array(trace.n_experts, np.int64)
    if npz and trace.meta:
        out["meta"] = np.array(json.dumps(trace.meta))
    return out


def _write_parquet(trace: Trace, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays, names = [], []
    for name, a in _columns_out(trace).items():
        if a.ndim == 2:
            arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(a.ravel()), a.shape[1]))
        else:
            arrays.append(pa.array(a))
        names.append(name)
    table = pa.Table.from_arrays(arrays, names=names)
    meta = {"kind": trace.kind}
    if trace.n_experts is not None:
        meta["n_experts"] = trace.n_experts
    if trace.meta:
        meta["meta"] = trace.meta
    table = table.replace_schema_metadata({b"netsim.trace": json.dumps(meta).encode()})
    pq.write_table(table, path)


def _write_jsonl(trace: Trace, path: Path) -> None:
    if trace.kind != "tokens":
        raise ConfigError(f"cannot write a per-batch count trace to {str(path)!r}: JSON lines"
                          f" hold per-token routing; use .parquet, .npz or .csv")
    n = trace.n_rows
    layer, tok, ids = trace.layer.tolist(), trace.token.tolist(), trace.expert_ids.tolist()
    gw = trace.gate_weights.astype(np.float64).tolist() if trace.gate_weights is not None else None
    seq = trace.sequence.tolist() if trace.sequence is not None else None
    it = trace.iteration.tolist() if trace.has_iteration else None
    with open(path, "w") as f:
        for i in range(n):
            row = {}
            if seq is not None:
                row["problem_id"] = seq[i]
            if it is not None:
                row["iteration"] = it[i]
            row["layer"] = layer[i]
            row["experts"] = ids[i]
            if gw is not None:
                row["gating_probs"] = gw[i]
            row["token_idx"] = tok[i]
            f.write(json.dumps(row))
            f.write("\n")


# ---------------------------------------------------------------------------------------------
# the routing source


@dataclass
class TraceSource:
    """Routing from a trace file: ``trace:PATH[:LAYER]``.

    Which records: the layer ``LAYER`` of the spec if given (a layer id present in the file),
    otherwise the ``layer`` passed to :meth:`counts` taken modulo the number of layers in the
    trace (the i-th distinct layer id, in sorted order). If the trace has an ``iteration``
    column, the ``iteration`` passed to :meth:`counts` picks the i-th distinct iteration
    (modulo their number); without one, every iteration reuses the same records.

    Per-token traces: the run needs ``N = n_gpus * tokens_per_gpu`` tokens. They are taken as a
    *cyclic window* of N consecutive records (file order) of that layer, starting at an offset
    drawn from ``rng``: when the layer has at least N records, a contiguous stretch of them (so
    sequence locality in the trace survives); when it has fewer, the window wraps around and
    the layer's records repeat, each exactly ``N // m`` or ``N // m + 1`` times. With the
    ``:shuffle`` suffix (``trace:PATH[:LAYER]:shuffle``) the N records are the layer's records
    *at random* instead: successive random permutations of them, concatenated and cut to N
    (without replacement when N <= m, each record ``N // m`` or ``N // m + 1`` times
    otherwise), so the same tokens arrive with their sequence order destroyed. Window token i
    goes to GPU ``i // tokens_per_gpu`` (contiguous tokens on one GPU, like a micro-batch of
    sequences). The trace's top-k must equal the run's and its expert ids must be below the
    run's expert count (ConfigError otherwise).

    Per-batch count traces: the layer's per-expert totals T are rescaled to the run's
    ``N * top_k`` choices (largest-remainder rounding; unchanged when they already sum to that)
    and spread over the GPUs by drawing each GPU's ``tokens_per_gpu * top_k`` choices without
    replacement from the remaining pool (sequential multivariate hypergeometric, the
    finite-population form of a multinomial), so rows and expert totals are both exact. A count
    trace knows no token identities, so the rule that a token's k experts are distinct is not
    enforced per GPU (a GPU may, rarely, get more than ``tokens_per_gpu`` choices of one
    expert).
    """

    path: str
    trace: Trace
    layer: int | None = None
    spec: str = ""
    shuffle: bool = False

    def __reduce__(self):
        # pickle as the spec: a worker process re-reads the file (once, through the cache)
        # instead of receiving every array
        args = ([self.path] + ([str(self.layer)] if self.layer is not None else [])
                + (["shuffle"] if self.shuffle else []))
        return (_trace, tuple(args))

    def _select(self, layer: int, iteration: int):
        t = self.trace
        layers, iters = t.layers, t.iterations
        lid = self.layer if self.layer is not None else int(layers[layer % len(layers)])
        iid = int(iters[iteration % len(iters)])
        cache = t._index()["cache"]
        key = (lid, iid)
        if key not in cache:
            rows = t.rows(lid, iid)
            if len(rows) == 0:
                raise TraceError(f"trace {self.path!r} has no records for layer {lid} at"
                                 f" iteration {iid}")
            if t.kind == "tokens":
                cache[key] = np.ascontiguousarray(t.expert_ids[rows])
            else:
                cache[key] = np.bincount(t.expert[rows], weights=t.tokens[rows],
                                         minlength=t.max_expert + 1).round().astype(np.int64)
        return lid, cache[key]

    def counts(self, n_gpus, tokens_per_gpu, experts, top_k, rng, layer=0, iteration=0):
        n_gpus, tokens_per_gpu, experts, top_k = (int(n_gpus), int(tokens_per_gpu), int(experts),
                                                  int(top_k))
        if layer < 0 or iteration < 0:
            raise ConfigError(f"routing {self.spec!r}: layer={layer}, iteration={iteration};"
                              f" expected non-negative integers")
        lid, data = self._select(int(layer), int(iteration))
        self._check_experts(experts)
        n = n_gpus * tokens_per_gpu
        if self.trace.kind == "tokens":
            window = self._window(data, n, top_k, rng)
            gpu = np.arange(n, dtype=np.int64) // tokens_per_gpu
            flat = (gpu[:, None] * experts + window).ravel()
            return np.bincount(flat, minlength=n_gpus * experts).reshape(n_gpus, experts)
        return self._spread(lid, data, n_gpus, tokens_per_gpu, experts, top_k, rng)

    def _check_experts(self, experts: int) -> None:
        """ConfigError naming the first record (row, layer, token) whose expert id the run's
        ``experts`` cannot hold."""
        t, mx = self.trace, self.trace.max_expert
        if mx < experts:
            return
        ids = t.expert_ids if t.kind == "tokens" else t.expert
        r, v = _first_bad(ids, ids >= experts)
        tok = f", token {int(t.token[r])}" if t.kind == "tokens" else ""
        raise ConfigError(f"routing {self.spec!r}: the trace uses expert id {v} in row {r}"
                          f" (layer {int(t.layer[r])}{tok}; largest id {mx}), but the run has"
                          f" experts={experts}; expected a model with at least {mx + 1}"
                          f" experts")

    def _window(self, data, n, top_k, rng):
        """The cyclic window of ``n`` records (class doc)."""
        k = data.shape[1]
        if k != top_k:
            raise ConfigError(f"routing {self.spec!r}: the trace has top_k={k}, the run"
                              f" top_k={top_k}; expected the same")
        m = data.shape[0]
        if self.shuffle:
            reps = -(-n // m)
            idx = np.concatenate([rng.permutation(m) for _ in range(reps)])[:n]
            return data[idx]
        start = int(rng.integers(0, m))
        return data[(start + np.arange(n, dtype=np.int64)) % m]

    def choices(self, n_gpus, tokens_per_gpu, experts, top_k, rng, layer=0, iteration=0,
                groups=None, max_groups=0):
        """Each window token's recorded experts (int32 (n_gpus * tokens_per_gpu, top_k)): the
        same window :meth:`counts` counts for the same rng state. Count traces are count-only."""
        n_gpus, tokens_per_gpu, experts, top_k = (int(n_gpus), int(tokens_per_gpu), int(experts),
                                                  int(top_k))
        if self.trace.kind != "tokens":
            raise CountOnly(f"routing {self.spec!r} is a per-batch count trace (count-only: it"
                            f" knows no tokens): dispatcher=rank|node and max_nodes need a"
                            f" per-token trace or a synthetic source")
        if check_groups(groups, experts, top_k, max_groups, self.spec) is not None:
            raise ConfigError(f"routing {self.spec!r}: max_nodes={max_groups} re-routes tokens;"
                              f" a trace's choices are recorded (use max_nodes=0)")
        if layer < 0 or iteration < 0:
            raise ConfigError(f"routing {self.spec!r}: layer={layer}, iteration={iteration};"
                              f" expected non-negative integers")
        _, data = self._select(int(layer), int(iteration))
        self._check_experts(experts)
        return np.ascontiguousarray(self._window(data, n_gpus * tokens_per_gpu, top_k, rng),
                                    dtype=np.int32)

    def _spread(self, lid, data, n_gpus, tokens_per_gpu, experts, top_k, rng):
        n = n_gpus * tokens_per_gpu
        totals = np.zeros(experts, np.int64)
        totals[:len(data)] = data
        want = n * top_k
        if totals.sum() <= 0:
            raise TraceError(f"trace {self.path!r}: layer {lid} has no tokens; expected a"
                             f" positive total")
        if totals.sum() != want:
            exact = totals * (want / totals.sum())
            base = np.floor(exact).astype(np.int64)
            rem = want - base.sum()
            order = np.argsort(-(exact - base), kind="stable")
            base[order[:rem]] += 1
            totals = base
        out = np.empty((n_gpus, experts), np.int64)
        left = totals.copy()
        per = tokens_per_gpu * top_k
        for g in range(n_gpus):
            out[g] = rng.multivariate_hypergeometric(left, per) if g < n_gpus - 1 else left
            left -= out[g]
        return out


@register("trace", "trace:PATH[:LAYER][:shuffle] -- recorded routing (.parquet/.npz/.jsonl"
                   " tokens, .parquet/.csv counts); shuffle: the tokens at random, not in order")
def _trace(*args: str) -> TraceSource:
    if not args or not args[0]:
        raise ConfigError("routing 'trace' needs a file: trace:PATH[:LAYER][:shuffle]")
    layer = None
    parts = list(args)
    shuffle = len(parts) > 1 and parts[-1] == "shuffle"
    if shuffle:
        parts.pop()
    if len(parts) > 1 and parts[-1].lstrip("-").isdigit():
        layer = int(parts.pop())
    path = ":".join(parts)
    trace = read_trace(path)
    spec = (f"trace:{path}" + (f":{layer}" if layer is not None else "")
            + (":shuffle" if shuffle else ""))
    if layer is not None and layer not in set(trace.layers.tolist()):
        raise ConfigError(f"routing {spec!r}: layer {layer} is not in the trace; expected one of"
                          f" {_short(trace.layers)}")
    if shuffle and trace.kind != "tokens":
        raise ConfigError(f"routing {spec!r}: shuffle reorders tokens; a per-batch count trace"
                          f" has none (expected a per-token trace)")
    return TraceSource(path=path, trace=trace, layer=layer, spec=spec, shuffle=shuffle)
