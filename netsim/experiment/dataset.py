"""Sweep datasets on disk: one hive-partitioned Parquet dataset per experiment.

Layout of ``OUT/NAME/`` (``NAME`` is the experiment's name)::

    status=ok/part-<key>.parquet        one row per finished point (``key``: hash of its parameters)
    status=ok/batch-<key>.parquet       several rows (a sweep's batch, :class:`BatchWriter`)
    status=error/part-<key>.parquet     a point that raised: its parameters and the message
    status=timeout/part-<key>.parquet   a point that ran past ``--timeout``
    status=*/compact.parquet            many rows, merged at the end of ``netsim sweep``

``status`` is the hive partition column: it is in the folder name, not in the files, and readers
(``pandas.read_parquet``, ``polars.scan_parquet``, DuckDB's ``read_parquet(...,
hive_partitioning=true)``) add it as a string column. Every file of a sweep has the same schema:
the parameters (strings dictionary-encoded, so pandas reads them as ``category``; integers int64;
floats float64; booleans bool), the metrics of :data:`netsim.scenario.UNITS` (times float64
seconds, counts int64, null on a failed point), ``error``, ``point_wall_s``, ``netsim_version`` and
``point_key``. A parameter column holds the value the run used in every row, set or not: from the
row the run returned (ok rows), else the point's parsed run specification, else the point, else
the run-level default; null only where the parameter does not apply to the row's model. The
schema metadata holds the netsim version, git commit, experiment name and file,
parameter grid and the unit of every metric column (JSON strings).

Writes are atomic: a hidden temporary file in the same folder, renamed into place. A reader never
sees a partial file and a killed writer leaves only a hidden ``.*.tmp`` file, which readers ignore
and the next sweep removes. The set of finished points is read from the file names (and the
``point_key`` column of compacted files); resuming a sweep opens each part file only to check
that its Parquet footer is whole (:func:`unreadable_files`): a truncated or otherwise unreadable
file is moved to ``OUT/_unreadable/NAME/`` (which no reader picks up) and its point runs again.
:func:`read` and ``netsim report`` skip unreadable files with a warning; :func:`compact` removes
part files only after the compacted file has been read back whole.
"""
from __future__ import annotations

import errno
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from netsim.errors import ConfigError

COMPACT = "compact.parquet"
INT_METRICS = ("n_gpus", "flows", "events", "rate_recomputes")
TRAILER = ("experiment", "error", "point_wall_s", "netsim_version", "point_key")
_PART = re.compile(r"^part-([0-9a-f]+)\.parquet$")
_BATCH = re.compile(r"^batch-([0-9a-f]+)\.parquet$")  # several rows, keys in point_key
_TMP = re.compile(r"^\..*\.(\d+)\.tmp$")
SET_ASIDE = "_unreadable"  # OUT/_unreadable/NAME/: unreadable files (readers skip "_" names)


class WriteError(ConfigError):
    """A part file could not be written (a full disk, a read-only folder): the sweep stops."""

    @classmethod
    def of(cls, exc: OSError, path: Path) -> "WriteError":
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return cls(f"disk full: cannot write {path}")
        return cls(f"cannot write {path}: {exc.strerror or exc}")


class DatasetWarning(UserWarning):
    """A dataset file was unreadable and was skipped (or moved aside)."""


def readable(path: Path, full: bool = False) -> bool:
    """Whether ``path`` looks like a whole Parquet file: the magic bytes at both ends and a
    footer length that fits (a truncated or half-copied file fails this); ``full`` also parses
    the footer."""
    try:
        size = os.path.getsize(path)
        if size < 12:
            return False
        with open(path, "rb") as f:
            if f.read(4) != b"PAR1":
                return False
            f.seek(size - 8)
            tail = f.read(8)
        if tail[4:] != b"PAR1" or int.from_bytes(tail[:4], "little") + 12 > size:
            return False
        if full:
            import pyarrow.parquet as pq

            pq.read_metadata(path)
        return True
    except Exception:  # noqa: BLE001 -- any failure to read it means: not readable
        return False


def set_aside_dir(ddir: Path) -> Path:
    """Where :func:`set_aside` moves the unreadable files of dataset ``ddir``."""
    return Path(ddir).parent / SET_ASIDE / Path(ddir).name


def unreadable_files(ddir: Path) -> list[Path]:
    """Part and compacted files under ``ddir`` that fail :func:`readable` (compacted files get
    the full footer parse)."""
    bad = []
    for _, pdir in partitions(ddir):
        with os.scandir(pdir) as it:
            for e in it:
                if e.name == COMPACT or _BATCH.match(e.name):
                    if not readable(Path(e.path), full=True):
                        bad.append(Path(e.path))
                elif _PART.match(e.name) and not readable(Path(e.path)):
                    bad.append(Path(e.path))
    return sorted(bad)


def set_aside(ddir: Path, files: list[Path]) -> list[Path]:
    """Move ``files`` (of dataset ``ddir`` = ``OUT/NAME``) to ``OUT/_unreadable/NAME/``, outside
    the dataset folder (a polars or pandas scan of ``OUT/NAME`` never sees it), with a ``.bad``
    suffix that no ``**/*.parquet`` glob matches; returns the new paths."""
    import time as _time

    moved = []
    dest = set_aside_dir(ddir)
    for f in files:
        dest.mkdir(parents=True, exist_ok=True)
        stamp = _time.strftime("%Y%m%dT%H%M%S")
        target = dest / f"{f.parent.name}.{f.name}.{stamp}.{os.getpid()}.bad"
        try:
            os.replace(f, target)
        except FileNotFoundError:
            continue
        moved.append(target)
    return moved


def run_tables() -> tuple[dict, dict, object]:
    """What datasets need from the run specification, imported lazily (a reader of datasets does
    not load the models) and only here: ``(UNITS, run defaults, spec)``, the metric units, the
    run-level parameter defaults (``netsim.scenario.RESERVED``) and ``netsim.scenario.RunSpec``
    (``None`` if the scenario has none): ``spec.parse(point).columns()`` gives a point's effective
    parameters without running it."""
    from netsim import scenario

    return scenario.UNITS, scenario.RESERVED, getattr(scenario, "RunSpec", None)


_EFFECTIVE: dict[str, tuple] = {}  # point (JSON) -> (effective parameters, parse error)
# A sweep's pre-check, resume and writer each walk every point in order, so the cache must hold a
# whole sweep: a first-in-first-out cache smaller than the sweep misses on every point of every
# pass (a 4,097-point sweep re-parsed each point three times, minutes before the first run).
# One entry is ~10 KB (measured): 16,384 points hold ~0.16 GB.
_EFFECTIVE_MAX = 16384


def _parsed(point: dict) -> tuple:
    blob = json.dumps(point, sort_keys=True, default=str)
    if blob not in _EFFECTIVE:
        spec = run_tables()[2]
        try:
            _EFFECTIVE[blob] = ((None, None) if spec is None
                                else (dict(spec.parse(dict(point)).columns()), None))
        except Exception as exc:  # noqa: BLE001 -- a point that does not parse runs into an error row
            _EFFECTIVE[blob] = (None, exc)
        if len(_EFFECTIVE) > _EFFECTIVE_MAX:
            _EFFECTIVE.pop(next(iter(_EFFECTIVE)))
    return _EFFECTIVE[blob]


def effective_params(point: dict) -> dict | None:
    """The parameters a run of ``point`` uses (defaults included; a parameter that does not apply
    to the point's model is absent), or None when the point does not parse as a run (an error
    row, or a sweep of another function)."""
    return _parsed(point)[0]


def parse_error(point: dict) -> Exception | None:
    """Why ``point`` does not parse as a run (``RunSpec.parse``), or None if it does."""
    return _parsed(point)[1]


def _param_value(k: str, point: dict, row: dict | None, defaults: dict):
    """The effective value of parameter ``k``: from the row the run returned (an ok row), else
    the point's parsed run specification (None: ``k`` does not apply to its model), else the
    point, else the run default."""
    if row is not None and k in row:
        return row[k]
    eff = effective_params(point)
    if eff is not None:
        return eff.get(k)
    return point[k] if k in point else defaults.get(k)


def _kind_of(values) -> str:
    """Arrow kind for a parameter column from its values: int, float, bool or str."""
    types = {type(v) for v in values if v is not None}
    if not types:
        return "str"
    if types == {bool}:
        return "bool"
    if types == {int}:
        return "int"
    if types <= {int, float}:
        return "float"
    return "str"


def _arrow_type(kind: str):
    import pyarrow as pa

    return {"int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(),
            "str": pa.dictionary(pa.int32(), pa.string())}[kind]


def _convert(kind: str, v):
    if v is None:
        return None
    if kind == "str":
        return v if isinstance(v, str) else (json.dumps(v, sort_keys=True, default=str)
                                             if isinstance(v, (list, dict, tuple)) else str(v))
    if kind == "float":
        return float(v)
    if kind == "int":
        return None if isinstance(v, float) and v != v else int(v)
    return bool(v)


@dataclass
class Layout:
    """The column set and types of one sweep's rows (the same for every part file)."""

    params: dict[str, str]                      # parameter -> kind
    defaults: dict[str, object] = field(default_factory=dict)  # run-level parameter defaults
    metrics: dict[str, str] = field(default_factory=dict)      # metric -> kind

    @classmethod
    def for_points(cls, points: list[dict]) -> "Layout":
        """Every parameter a point sets, every run-level parameter, and every parameter the
        points' runs resolve (topology and layer parameters at their defaults), typed from the
        values the rows will carry."""
        units, run_defaults, _ = run_tables()
        names = list(dict.fromkeys(k for p in points for k in p))
        names += [k for k in run_defaults if k not in names]
        for p in points:
            eff = effective_params(p)
            if eff:
                names += [k for k in eff if k not in names and k not in units]
        params = {k: _kind_of([_param_value(k, p, None, run_defaults) for p in points]
                              + [p.get(k) for p in points])
                  for k in names}
        metrics = {m: ("int" if m in INT_METRICS or str(u).split(" ")[0] == "count" else "float")
                   for m, u in units.items()}
        return cls(params, dict(run_defaults), metrics)

    @classmethod
    def for_rows(cls, rows: list[dict]) -> "Layout":
        """The layout of rows returned by runs (``netsim run --out``): their own parameters."""
        units, run_defaults, _ = run_tables()
        skip = set(units) | set(TRAILER) | {"status"}
        names = [k for k in dict.fromkeys(k for r in rows for k in r) if k not in skip]
        params = {k: _kind_of([r.get(k) for r in rows]) for k in names}
        metrics = {m: ("int" if m in INT_METRICS or str(u).split(" ")[0] == "count" else "float")
                   for m, u in units.items()}
        return cls(params, dict(run_defaults), metrics)

    def row_values(self, point: dict, row: dict) -> dict:
        """The stored columns of ``row`` (the result of running ``point``); status excluded.
        Every parameter column holds the value the run used (see :func:`_param_value`)."""
        out = {}
        ran = row if row.get("status") == "ok" else None
        for k, kind in self.params.items():
            out[k] = _convert(kind, _param_value(k, point, ran, self.defaults))
        for k, kind in self.metrics.items():
            v = row.get(k)
            out[k] = None if v is None else _convert(kind, v)
        for k in sorted(set(row) - set(out) - set(TRAILER) - {"status"}):
            out[k] = row[k]  # a metric the scenario returns beyond UNITS: inferred type
        out["error"] = str(row.get("error") or "")
        w = row.get("point_wall_s")
        out["point_wall_s"] = None if w is None else float(w)
        out["netsim_version"] = str(row.get("netsim_version") or _version())
        return out

    def table(self, records: list[dict], meta: dict):
        """An Arrow table of stored rows (``records`` from :meth:`row_values` plus point_key)."""
        import pyarrow as pa

        names = list(dict.fromkeys(k for r in records for k in r))
        arrays, fields_ = [], []
        for k in names:
            vals = [r.get(k) for r in records]
            if k in self.params:
                typ = _arrow_type(self.params[k])
            elif k in self.metrics:
                typ = _arrow_type(self.metrics[k])
            elif k in ("error", "point_key"):
                typ = pa.string()
            elif k == "point_wall_s":
                typ = pa.float64()
            elif k in ("netsim_version", "experiment"):
                typ = _arrow_type("str")
            else:
                typ = None
            arr = pa.array(vals, type=typ)
            if pa.types.is_null(arr.type):
                arr = pa.array(vals, type=pa.string())
            arrays.append(arr)
            fields_.append(pa.field(k, arr.type))
        md = {k: json.dumps(v, default=str) for k, v in meta.items()}
        return pa.Table.from_arrays(arrays, schema=pa.schema(fields_, metadata=md))


def _version() -> str:
    from netsim import __version__

    return __version__


def _atomic_write_table(table, path: Path, verify=None) -> None:
    """Write ``table`` to a hidden temporary file beside ``path``, call ``verify(tmp)`` (which
    raises OSError if the file is not whole), then rename it into place; the temporary file is
    removed on any failure."""
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp")
    try:
        pq.write_table(table, tmp)
        if verify is not None:
            verify(tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise


def write_records(records: list[dict], path: Path, layout: Layout, meta: dict) -> None:
    """Write stored rows (from :meth:`Layout.row_values`) to ``path`` atomically: the one place
    that turns rows into a Parquet file (sweep part files and ``netsim run --out``)."""
    _atomic_write_table(layout.table(records, meta), path)


def write_rows(rows: list[dict], path: Path, meta: dict) -> None:
    """Write rows returned by runs (their parameters and metrics; ``status`` kept as a column)
    to one Parquet file, atomically, typed as a sweep's rows are."""
    layout = Layout.for_rows(rows)
    recs = [layout.row_values(r, r) | ({"status": str(r["status"])} if "status" in r else {})
            for r in rows]
    write_records(recs, Path(path), layout, meta)


@dataclass
class Writer:
    """A sweep's dataset folder, its row layout and its metadata: where :class:`BatchWriter`
    writes the rows (a lone row as ``status=S/part-<key>.parquet``, :meth:`path`)."""

    ddir: Path
    layout: Layout
    meta: dict

    def path(self, key: str, status: str) -> Path:
        return self.ddir / f"status={status}" / f"part-{key}.parquet"


def lock_path(ddir: Path) -> Path:
    """``OUT/.NAME.lock``: beside the dataset folder, not in it (a reader scanning the folder
    would trip over a file that is not Parquet)."""
    return Path(ddir).parent / f".{Path(ddir).name}.lock"



class SweepLock:
    """An exclusive lock on a dataset folder (``flock`` of ``OUT/.NAME.lock``), held while a sweep
    decides and runs its points: a second sweep into the same folder waits, then runs only what
    the first left. The kernel drops the lock when its holder dies, however it dies."""

    def __init__(self, ddir: Path, on_wait=None):
        self.path = lock_path(ddir)
        self.on_wait = on_wait
        self.fd = None

    def __enter__(self):
        import fcntl

        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.fd, 32, 0).decode(errors="replace").strip() or "?"
            if self.on_wait is not None:
                self.on_wait(f"waiting for the sweep running into {ddir_of(self.path)}"
                             f" (pid {holder}) to finish")
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, str(os.getpid()).encode(), 0)
        return self

    def __exit__(self, *exc):
        import fcntl

        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None
        return False


def ddir_of(lock: Path) -> Path:
    return lock.parent / lock.name[1:-len(".lock")]


class BatchWriter:
    """A sweep's rows in batches, written by the sweep's own process (whatever ran the points):
    one ``status=S/batch-<key>.parquet`` per status (the point keys in its ``point_key`` column;
    a lone row keeps its ``part-<key>.parquet``) when ``max_rows`` rows are waiting, the oldest
    has waited ``max_s`` seconds, or the waiting points took ``max_s`` seconds to run between
    them (``point_wall_s``: a long point is written at once), checked as each row is added, and
    at :meth:`flush` (the end, Ctrl-C). Each file is written atomically like a part file, so a
    reader never sees half a batch; a SIGKILL loses only the rows still waiting (under
    ``max_s`` seconds of points' run time), which the next sweep runs again."""

    def __init__(self, writer: "Writer", max_rows: int = 64, max_s: float = 2.0):
        import time as _time

        self.writer, self.max_rows, self.max_s = writer, max(1, int(max_rows)), float(max_s)
        self._clock = _time.monotonic
        self.waiting: list[tuple[str, str, dict]] = []  # (status, key, record)
        self.since = 0.0
        self.work = 0.0  # s: the waiting points' run time

    def add(self, key: str, point: dict, row: dict) -> str:
        status = str(row.get("status") or "error")
        rec = self.writer.layout.row_values(point, row) | {
            "experiment": str(self.writer.meta.get("experiment", "")), "point_key": key}
        if not self.waiting:
            self.since = self._clock()
        self.waiting.append((status, key, rec))
        wall = row.get("point_wall_s")
        self.work += float(wall) if isinstance(wall, (int, float)) and wall > 0 else 0.0
        if (len(self.waiting) >= self.max_rows or self.work >= self.max_s
                or self._clock() - self.since >= self.max_s):
            self.flush()
        return status

    def flush(self) -> None:
        by: dict[str, list] = {}
        for status, key, rec in self.waiting:
            by.setdefault(status, []).append((key, rec))
        for status, items in by.items():
            if len(items) == 1:  # a lone row keeps the one-row part file
                path = self.writer.path(items[0][0], status)
            else:
                path = self.writer.ddir / f"status={status}" / f"batch-{items[0][0]}.parquet"
            try:
                write_records([r for _, r in items], path, self.writer.layout, self.writer.meta)
            except OSError as exc:
                self.waiting, self.work = [], 0.0
                raise WriteError.of(exc, path) from None
        self.waiting, self.work = [], 0.0


def partitions(ddir: Path) -> list[tuple[str, Path]]:
    if not ddir.is_dir():
        return []
    return sorted((p.name.partition("=")[2], p) for p in ddir.iterdir()
                  if p.is_dir() and p.name.startswith("status="))


def done_points(ddir: Path) -> dict[str, tuple[str, Path]]:
    """key -> (status, file) of every point stored under ``ddir`` (part files and compacted)."""
    out: dict[str, tuple[str, Path]] = {}
    for status, pdir in partitions(ddir):
        comp = pdir / COMPACT
        for k in _compacted_keys(comp):
            out.setdefault(k, (status, comp))
        with os.scandir(pdir) as it:
            for e in it:
                m = _PART.match(e.name)
                if m:
                    out.setdefault(m.group(1), (status, Path(e.path)))
                elif _BATCH.match(e.name):
                    for k in _compacted_keys(Path(e.path)):
                        out.setdefault(k, (status, Path(e.path)))
    return out


def _compacted_keys(comp: Path) -> list[str]:
    """The point keys a compacted file holds ([] if it is absent or unreadable)."""
    if not comp.is_file():
        return []
    import pyarrow.parquet as pq

    try:
        return pq.read_table(comp, columns=["point_key"]).column(0).to_pylist()
    except Exception:  # noqa: BLE001 -- unreadable: the sweep sets it aside and reruns its points
        return []


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie -- dead, not yet reaped, e.g. under a container's init --
    counts as dead: it will write nothing more)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def cleanup(ddir: Path) -> int:
    """Remove temporary files left by killed writers, and part files a compacted file already
    holds (a compaction killed between its rename and its deletes). Returns files removed."""
    n = 0
    for _, pdir in partitions(ddir):
        compacted = set(_compacted_keys(pdir / COMPACT))
        for e in list(os.scandir(pdir)):
            t = _TMP.match(e.name)
            m = _PART.match(e.name)
            b = _BATCH.match(e.name)
            if ((t and not _pid_alive(int(t.group(1)))) or (m and m.group(1) in compacted)
                    or (b and compacted and set(_compacted_keys(Path(e.path))) <= compacted)):
                try:
                    os.unlink(e.path)
                    n += 1
                except FileNotFoundError:
                    pass
    return n


def drop(ddir: Path, keys: set[str]) -> int:
    """Delete the stored rows of ``keys`` (part files, and rows of compacted files)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    n = 0
    for _, pdir in partitions(ddir):
        multi = [pdir / COMPACT] + sorted(p for p in pdir.iterdir() if _BATCH.match(p.name))
        for comp in multi:
            if not (comp.is_file() and readable(comp, full=True)):
                continue
            t = pq.read_table(comp, partitioning=None)
            mask = pc.is_in(t["point_key"], value_set=__import__("pyarrow").array(sorted(keys)))
            hit = int(pc.sum(mask).as_py() or 0)
            if hit:
                keep = t.filter(pc.invert(mask))
                if keep.num_rows:
                    _atomic_write_table(keep, comp)
                else:
                    comp.unlink()
                n += hit
        for k in keys:
            p = pdir / f"part-{k}.parquet"
            if p.exists():
                p.unlink()
                n += 1
    return n


def compact(ddir: Path) -> dict:
    """Merge the part files of every partition into its ``compact.parquet`` (atomic, resumable).

    Unreadable part or compacted files are moved aside first (:func:`set_aside`; their rows are
    lost, their points run again on the next sweep) and listed in ``set_aside``. The new
    compacted file (old compacted rows + part files, sorted by ``point_key``) is written beside
    the parts as a hidden temporary file and read back whole (every row and point key there)
    before it is renamed into place; only then are the part files deleted. If the process dies
    in between, the next sweep or compaction deletes the part files that the compacted file
    already holds."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    merged = files = 0
    cleanup(ddir)
    aside = set_aside(ddir, unreadable_files(ddir))
    for _, pdir in partitions(ddir):
        parts = sorted(p for p in pdir.iterdir() if _PART.match(p.name) or _BATCH.match(p.name))
        if not parts:
            continue
        comp = pdir / COMPACT
        srcs = ([comp] if comp.is_file() else []) + parts
        tables = []
        for p in srcs:
            try:
                tables.append(pq.ParquetFile(p).read())  # 2x faster than read_table
            except Exception:  # noqa: BLE001 -- a footer that parses over a bad body
                aside += set_aside(ddir, [p])
        parts = [p for p in parts if p.exists()]
        if not tables or not parts:
            continue
        meta = tables[-1].schema.metadata
        t = pa.concat_tables(tables, promote_options="permissive")
        t = t.unify_dictionaries().combine_chunks()
        t = t.take(pa.compute.sort_indices(t, [("point_key", "ascending")]))
        t = t.replace_schema_metadata(meta)
        want = set(t.column("point_key").to_pylist())

        def whole(tmp, t=t, want=want):
            back = pq.read_table(tmp, partitioning=None)
            if back.num_rows != t.num_rows or set(back.column("point_key").to_pylist()) != want:
                raise OSError(f"{tmp} did not read back whole")

        _atomic_write_table(t, comp, verify=whole)
        for p in parts:
            p.unlink()
        merged += t.num_rows
        files += len(parts)
    return {"rows": merged, "parts_merged": files, "set_aside": [str(p) for p in aside]}


def dataset_files(path: Path) -> tuple[list[Path], list[Path]]:
    """``(readable, unreadable)`` Parquet files of a dataset folder (part and compacted files
    under ``status=*/``; hidden and ``_``-prefixed names skipped, as readers skip them)."""
    good, bad = [], []
    for _, pdir in partitions(path):
        for f in sorted(pdir.iterdir()):
            if f.name.startswith((".", "_")) or not f.name.endswith(".parquet"):
                continue
            full = f.name == COMPACT or bool(_BATCH.match(f.name))
            (good if readable(f, full=full) else bad).append(f)
    return good, bad


def read(path: str | Path, ok_only: bool = False):
    """A dataset folder (``OUT/NAME``) as a pandas DataFrame, ``status`` as a string column.

    Unreadable files are skipped with a :class:`DatasetWarning` naming them (a rerun of the
    sweep moves them aside and runs their points again). Files of a grown grid (columns added
    later) read as one table, the missing columns null."""
    import warnings

    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    if not partitions(path):
        df = pd.read_parquet(path)
    else:
        good, bad = dataset_files(path)
        for f in bad:
            warnings.warn(f"skipped unreadable file {f} (rerun the sweep to move it aside and"
                          " run its points again)", DatasetWarning, stacklevel=2)
        tables = []
        for f in good:
            try:
                t = pq.ParquetFile(f).read()
            except Exception as exc:  # noqa: BLE001 -- footer fine, body not
                warnings.warn(f"skipped unreadable file {f}: {exc}", DatasetWarning,
                              stacklevel=2)
                continue
            status = f.parent.name.partition("=")[2]
            tables.append(t.append_column("status", pa.array([status] * t.num_rows,
                                                              pa.string())))
        if not tables:
            return pd.DataFrame({"status": pd.Series([], dtype=str)})
        meta = tables[0].schema.metadata
        t = pa.concat_tables(tables, promote_options="permissive").unify_dictionaries()
        df = t.replace_schema_metadata(meta).to_pandas()
    if "status" in df.columns:
        df["status"] = df["status"].astype(str)
    if ok_only and "status" in df.columns:
        df = df[df["status"] == "ok"].reset_index(drop=True)
    return df


def metadata(path: str | Path) -> dict:
    """The decoded schema metadata of a dataset folder (from one of its files)."""
    import pyarrow.parquet as pq

    path = Path(path)
    files = [path] if path.is_file() else dataset_files(path)[0]
    if not files:
        return {}
    raw = pq.read_schema(files[0]).metadata or {}
    out = {}
    for k, v in raw.items():
        k = k.decode()
        if k.startswith("ARROW:") or k == "pandas":
            continue
        try:
            out[k] = json.loads(v)
        except ValueError:
            out[k] = v.decode(errors="replace")
    return out


def find_datasets(path: str | Path) -> list[Path]:
    """Dataset folders at or under ``path`` (a dataset folder, or an OUT folder holding several)."""
    path = Path(path)
    if partitions(path):
        return [path]
    if not path.is_dir():
        return []
    return sorted(p for p in path.iterdir() if p.is_dir() and partitions(p))
