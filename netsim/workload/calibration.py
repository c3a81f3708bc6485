"""Expert compute-time models: a measured table (``h200-measured``) and rooflines.

Both models answer one question: how long does **one expert's SwiGLU FFN** take on a batch
of ``tokens`` tokens (``y = (silu(x W1) * (x W3)) W2``, bf16, ``6 * tokens * hidden *
ffn_hidden`` FLOPs)? They share the interface ``time_s(tokens, hidden, ffn_hidden)``,
which takes an int or a numpy array of token counts and returns seconds (a float or an
array of the same shape). Zero tokens cost zero seconds: an expert with no tokens is not
launched.

:class:`MeasuredCompute`
    Interpolates a table measured by ``benchmarks/gpu_expert_ffn.py`` (rows with
    ``kind == "single"``; the committed one is ``workloads/calibration/h200.csv`` (installed
    as package data of ``netsim.workloads``, see :data:`CALIBRATION_DIR`), an
    NVIDIA H200 SXM, CUDA-graph replays timed with CUDA events; see its ``.json`` sidecar).

    * Monotonicity (``monotone="cummax"``, the default): for each shape the measured
      medians are replaced by their cumulative maximum over increasing tokens, so the
      model never says a bigger batch is faster. "Exact at measured points" means exact
      on this monotone table; where the raw median already is the running maximum that
      is the raw median. Caveat: cuBLAS picks a slower kernel at a few tiny sizes (on the
      committed H200 table, olmoe_1b_7b at 1, 3 and 6 tokens takes ~36 us against ~23 us
      at 8..512 tokens), and the cumulative max carries such a value up to the size where
      the measured time catches up (768 tokens for olmoe). ``monotone="padded"`` uses the
      cumulative minimum from the right instead (a batch never costs more than any larger
      measured batch, since it could be padded to it): it lowers only those few outliers.
    * Between measured token counts: piecewise-**linear** interpolation in tokens (not
      log-log). Linear interpolation keeps the model monotone and exact at the nodes, and
      it is exact for the ``a + b * tokens`` behaviour of a GEMM between two sizes.
    * Below the smallest measured count (only fractional ``0 < tokens < 1`` with the
      committed table): the time of the smallest measured count; ``tokens == 0`` -> 0 s.
    * Above the largest measured count ``n_max`` (16384): linear extrapolation at the
      throughput (tokens per second) of the largest measured point,
      ``t(n) = t(n_max) * n / n_max``. The GPU is saturated there, so time grows in
      proportion to the work.
    * A shape ``(hidden, ffn_hidden)`` not in the table: the nearest measured shape (by
      distance in ``(log hidden, log ffn_hidden)``) is used with its time multiplied by
      the ratio of FLOPs, ``hidden * ffn_hidden / (hidden_ref * ffn_hidden_ref)`` (at the
      same token count). The same ratio scales the weight bytes, so the scaling also holds
      in the small-batch regime, where reading the weights from HBM dominates. It keeps
      the reference shape's efficiency curve, which is the approximation.

:class:`RooflineCompute`
    ``time = overhead_s + max(flops / (peak_flops * efficiency), bytes / hbm_bandwidth)``
    with ``bytes = dtype_bytes * (3 * hidden * ffn_hidden + 2 * tokens * hidden)`` (the
    three weight matrices, the input and the output: the least traffic a fused kernel
    needs). Defaults are a pure roofline (``efficiency=1``, ``overhead_s=0``). Specs,
    dense (non-sparse) bf16 tensor-core peak and HBM bandwidth from NVIDIA's datasheets:

    * H100 SXM5 80 GB: 989 TFLOP/s (1979 "with sparsity"), 3.35 TB/s HBM3 --
      "NVIDIA H100 Tensor Core GPU" datasheet.
    * H200 SXM 141 GB: 989 TFLOP/s (same Hopper GH100 compute as H100 SXM), 4.8 TB/s
      HBM3e -- "NVIDIA H200 Tensor Core GPU" datasheet.
    * B200 (HGX B200, 1000 W): 2250 TFLOP/s (4500 with sparsity; 36 PFLOP/s sparse for 8
      GPUs), 8 TB/s HBM3e -- "NVIDIA HGX B200" / "NVIDIA DGX B200" datasheets. (The
      GB200-NVL72 B200 runs at 2500 TFLOP/s dense; not modelled.)

:func:`fit_overhead`
    Least-squares fit of ``time = overhead + flops / peak`` to the single-expert rows,
    returning the fixed per-batch overhead (s) and the asymptotic FLOP/s.

:func:`get_compute_model`
    ``"h100-roofline"``, ``"h200-roofline"``, ``"b200-roofline"``, ``"h200-measured"``
    (and ``"<gpu>-measured"`` for any ``workloads/calibration/<gpu>.csv``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Union

import numpy as np

from netsim.errors import ConfigError, UnknownNameError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "CALIBRATION_DIR",
    "MeasuredCompute",
    "OverheadFit",
    "RooflineCompute",
    "ROOFLINE_SPECS",
    "ffn_flops",
    "fit_overhead",
    "get_compute_model",
    "compute_model_names",
]

def _calibration_dir() -> Path:
    """``calibration/`` of the package ``netsim.workloads`` (the repository's
    ``workloads/calibration/``, shipped as package data), found with :mod:`importlib.resources`."""
    try:
        res = resources.files("netsim.workloads").joinpath("calibration")
    except ModuleNotFoundError:  # netsim.workloads not installed: the checkout's folder
        return Path(__file__).resolve().parents[2] / "workloads" / "calibration"
    return res if isinstance(res, Path) else Path(str(res))


#: Folder of the committed calibration tables (``<gpu>.csv`` + ``<gpu>.json``): package data of
#: ``netsim.workloads`` (``workloads/calibration/`` in the repository and in an editable install).
CALIBRATION_DIR = _calibration_dir()

_REQUIRED_COLUMNS = ("kind", "hidden", "ffn_hidden", "tokens", "median_s")

TokenArg = Union[int, float, np.ndarray]


def ffn_flops(tokens: TokenArg, hidden: int, ffn_hidden: int):
    """FLOPs of one SwiGLU expert FFN on ``tokens`` tokens: ``6 * tokens * hidden * ffn_hidden``."""
    return 6.0 * np.asarray(tokens, dtype=float) * float(hidden) * float(ffn_hidden)


def _as_tokens(tokens: TokenArg) -> tuple[np.ndarray, bool]:
    arr = np.asarray(tokens, dtype=float)
    if arr.size and (not np.all(np.isfinite(arr)) or np.any(arr < 0)):
        raise ConfigError(f"tokens must be finite and >= 0, got {tokens!r}")
    return arr, arr.ndim == 0


def _check_shape(hidden: int, ffn_hidden: int) -> None:
    for name, v in (("hidden", hidden), ("ffn_hidden", ffn_hidden)):
        if not (isinstance(v, (int, np.integer)) and v > 0):
            raise ConfigError(f"{name} must be a positive int, got {v!r}")


def _ret(out: np.ndarray, scalar: bool):
    return float(out) if scalar else out


# --------------------------------------------------------------------------- measured


@dataclass
class _ShapeTable:
    tokens: np.ndarray  # strictly increasing, > 0
    time_s: np.ndarray  # non-decreasing (cumulative max, or right cumulative min, of raw_s)
    raw_s: np.ndarray  # measured medians (median over duplicate rows, if any)


class MeasuredCompute:
    """Expert-FFN time interpolated from a measured table (see the module docstring).

    Build with :meth:`from_csv` (or pass a DataFrame with at least the columns
    ``kind, hidden, ffn_hidden, tokens, median_s``; ``gpu_name`` and ``preset`` are used
    when present). Only ``kind == "single"`` rows are used.
    """

    def __init__(self, table: "pd.DataFrame", *, name: str = "measured",
                 gpu_name: str | None = None, source: str | None = None,
                 monotone: str = "cummax"):
        missing = [c for c in _REQUIRED_COLUMNS if c not in table.columns]
        if missing:
            raise ConfigError(f"calibration table {source or ''} lacks columns {missing}; "
                              f"expected at least {list(_REQUIRED_COLUMNS)}")
        df = table[table["kind"] == "single"]
        if "gpu_name" in df.columns:
            gpus = sorted(df["gpu_name"].astype(str).unique())
            if gpu_name is not None:
                df = df[df["gpu_name"].astype(str) == gpu_name]
                if df.empty:
                    raise ConfigError(f"calibration table {source or ''} has no rows for GPU "
                                      f"{gpu_name!r}; it has {gpus}")
            elif len(gpus) > 1:
                raise ConfigError(f"calibration table {source or ''} mixes GPUs {gpus}; "
                                  "pass gpu_name=")
            gpu_name = gpu_name or (gpus[0] if gpus else None)
        if df.empty:
            raise ConfigError(f"calibration table {source or ''} has no kind == 'single' rows")
        df = df[df["tokens"] > 0]
        if (df["median_s"] <= 0).any() or df["median_s"].isna().any():
            raise ConfigError(f"calibration table {source or ''} has non-positive or missing median_s")
        if monotone not in ("cummax", "padded"):
            raise ConfigError(f"monotone must be 'cummax' or 'padded', got {monotone!r}")
        self.name = name
        self.monotone = monotone
        self.gpu_name = gpu_name
        self.source = source
        self.rows = df.reset_index(drop=True)
        self._tables: dict[tuple[int, int], _ShapeTable] = {}
        self.presets: dict[tuple[int, int], str] = {}
        for (h, f), g in df.groupby(["hidden", "ffn_hidden"], sort=True):
            med = g.groupby("tokens")["median_s"].median().sort_index()
            toks = med.index.to_numpy(dtype=float)
            raw = med.to_numpy(dtype=float)
            mono = (np.maximum.accumulate(raw) if monotone == "cummax"
                    else np.minimum.accumulate(raw[::-1])[::-1])
            self._tables[(int(h), int(f))] = _ShapeTable(toks, mono, raw)
            if "preset" in g.columns:
                self.presets[(int(h), int(f))] = str(g["preset"].iloc[0])
        self._nearest_cache: dict[tuple[int, int], tuple[int, int]] = {}

    # -- construction
    @classmethod
    def from_csv(cls, path: str | Path, *, name: str | None = None,
                 gpu_name: str | None = None, monotone: str = "cummax") -> "MeasuredCompute":
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"calibration table {path} not found (make it with "
                              "benchmarks/gpu_expert_ffn.py on the GPU)")
        import pandas as pd  # 0.3 s: only for measured compute models

        try:
            df = pd.read_csv(path)
        except Exception as exc:  # pandas raises several types
            raise ConfigError(f"cannot read calibration table {path}: {exc}") from exc
        return cls(df, name=name or f"{path.stem}-measured", gpu_name=gpu_name,
                   source=str(path), monotone=monotone)

    # -- queries
    @property
    def shapes(self) -> list[tuple[int, int]]:
        """Measured ``(hidden, ffn_hidden)`` shapes."""
        return list(self._tables)

    def table(self, hidden: int, ffn_hidden: int) -> "pd.DataFrame":
        """The monotone table of one measured shape: tokens, raw median, model time."""
        t = self._tables.get((hidden, ffn_hidden))
        if t is None:
            raise ConfigError(f"shape ({hidden}, {ffn_hidden}) not measured; have {self.shapes}")
        import pandas as pd

        return pd.DataFrame({"tokens": t.tokens.astype(int), "median_s": t.raw_s, "time_s": t.time_s})

    def nearest_shape(self, hidden: int, ffn_hidden: int) -> tuple[int, int]:
        """The measured shape used for ``(hidden, ffn_hidden)`` (itself if measured)."""
        key = (int(hidden), int(ffn_hidden))
        if key in self._tables:
            return key
        ref = self._nearest_cache.get(key)
        if ref is None:
            lh, lf = np.log(hidden), np.log(ffn_hidden)
            ref = min(self._tables, key=lambda s: ((np.log(s[0]) - lh) ** 2
                                                  + (np.log(s[1]) - lf) ** 2, s))
            self._nearest_cache[key] = ref
        return ref

    def flops(self, tokens: TokenArg, hidden: int, ffn_hidden: int):
        out = ffn_flops(tokens, hidden, ffn_hidden)
        return float(out) if np.ndim(out) == 0 else out

    def time_s(self, tokens: TokenArg, hidden: int, ffn_hidden: int):
        """Seconds for one expert's FFN on a batch of ``tokens`` tokens (see module doc)."""
        _check_shape(hidden, ffn_hidden)
        n, scalar = _as_tokens(tokens)
        ref = self.nearest_shape(hidden, ffn_hidden)
        tab = self._tables[ref]
        scale = (hidden * ffn_hidden) / (ref[0] * ref[1])
        n_max, t_max = tab.tokens[-1], tab.time_s[-1]
        # np.interp clamps below the first node (-> time of the smallest measured batch)
        out = np.interp(n, tab.tokens, tab.time_s)
        out = np.where(n > n_max, t_max * n / n_max, out)
        out = np.where(n == 0, 0.0, out) * scale
        return _ret(out, scalar)

    def __call__(self, tokens: TokenArg, hidden: int, ffn_hidden: int):
        return self.time_s(tokens, hidden, ffn_hidden)

    def __repr__(self) -> str:
        return (f"MeasuredCompute(name={self.name!r}, gpu={self.gpu_name!r}, "
                f"monotone={self.monotone!r}, shapes={self.shapes}, source={self.source!r})")


# --------------------------------------------------------------------------- roofline


#: name -> (peak dense bf16 FLOP/s, HBM bytes/s); NVIDIA datasheets, see module docstring.
ROOFLINE_SPECS: dict[str, tuple[float, float]] = {
    "h100": (989e12, 3.35e12),
    "h200": (989e12, 4.8e12),
    "b200": (2250e12, 8.0e12),
}


@dataclass(frozen=True)
class RooflineCompute:
    """``overhead_s + max(flops / (peak_flops * efficiency), bytes / hbm_bandwidth)``.

    ``bytes = dtype_bytes * (3 * hidden * ffn_hidden + 2 * tokens * hidden)``: the
    expert's weights plus its input and output, the least traffic a batch needs.
    """

    name: str
    peak_flops: float
    hbm_bandwidth: float
    efficiency: float = 1.0
    overhead_s: float = 0.0
    dtype_bytes: int = 2
    gpu_name: str = field(default="", compare=False)

    def __post_init__(self):
        if not (self.peak_flops > 0 and self.hbm_bandwidth > 0):
            raise ConfigError(f"roofline {self.name}: peak_flops and hbm_bandwidth must be > 0")
        if not (0 < self.efficiency <= 1):
            raise ConfigError(f"roofline {self.name}: efficiency must be in (0, 1], got {self.efficiency}")
        if self.overhead_s < 0:
            raise ConfigError(f"roofline {self.name}: overhead_s must be >= 0, got {self.overhead_s}")
        if self.dtype_bytes <= 0:
            raise ConfigError(f"roofline {self.name}: dtype_bytes must be > 0")

    @classmethod
    def for_gpu(cls, gpu: str, **kwargs) -> "RooflineCompute":
        if gpu not in ROOFLINE_SPECS:
            raise UnknownNameError(f"unknown roofline GPU {gpu!r}; known: {sorted(ROOFLINE_SPECS)}")
        peak, bw = ROOFLINE_SPECS[gpu]
        return cls(name=f"{gpu}-roofline", peak_flops=peak, hbm_bandwidth=bw,
                   gpu_name=gpu.upper(), **kwargs)

    @classmethod
    def h100(cls, **kwargs) -> "RooflineCompute":
        """H100 SXM5: 989 TFLOP/s dense bf16, 3.35 TB/s (NVIDIA H100 datasheet)."""
        return cls.for_gpu("h100", **kwargs)

    @classmethod
    def h200(cls, **kwargs) -> "RooflineCompute":
        """H200 SXM: 989 TFLOP/s dense bf16, 4.8 TB/s (NVIDIA H200 datasheet)."""
        return cls.for_gpu("h200", **kwargs)

    @classmethod
    def b200(cls, **kwargs) -> "RooflineCompute":
        """B200 (HGX, 1000 W): 2250 TFLOP/s dense bf16, 8 TB/s (NVIDIA HGX B200 datasheet)."""
        return cls.for_gpu("b200", **kwargs)

    def flops(self, tokens: TokenArg, hidden: int, ffn_hidden: int):
        out = ffn_flops(tokens, hidden, ffn_hidden)
        return float(out) if np.ndim(out) == 0 else out

    def bytes_moved(self, tokens: TokenArg, hidden: int, ffn_hidden: int):
        n = np.asarray(tokens, dtype=float)
        out = self.dtype_bytes * (3.0 * hidden * ffn_hidden + 2.0 * n * hidden)
        return float(out) if np.ndim(out) == 0 else out

    def time_s(self, tokens: TokenArg, hidden: int, ffn_hidden: int):
        _check_shape(hidden, ffn_hidden)
        n, scalar = _as_tokens(tokens)
        t_compute = ffn_flops(n, hidden, ffn_hidden) / (self.peak_flops * self.efficiency)
        t_memory = self.dtype_bytes * (3.0 * hidden * ffn_hidden + 2.0 * n * hidden) / self.hbm_bandwidth
        out = np.where(n == 0, 0.0, self.overhead_s + np.maximum(t_compute, t_memory))
        return _ret(out, scalar)

    def __call__(self, tokens: TokenArg, hidden: int, ffn_hidden: int):
        return self.time_s(tokens, hidden, ffn_hidden)


# --------------------------------------------------------------------------- fit


class OverheadFit(NamedTuple):
    """Result of :func:`fit_overhead`; unpacks as ``(overhead_s, peak_flops)``."""

    overhead_s: float
    peak_flops: float


def fit_overhead(source: "MeasuredCompute | pd.DataFrame | str | Path | None" = None, *,
                 hidden: int | None = None, ffn_hidden: int | None = None,
                 preset: str | None = None, weighting: str = "absolute") -> OverheadFit:
    """Fit ``time = overhead_s + flops / peak_flops`` to the single-expert rows.

    ``source``: a :class:`MeasuredCompute`, a DataFrame of the CSV, a CSV path, or None
    for the committed ``h200.csv``. Restrict to one shape with ``hidden``/``ffn_hidden``
    or ``preset``; by default all single-expert rows are pooled.

    ``weighting="absolute"`` (default) is ordinary least squares on seconds: the large
    batches pin the slope, so ``peak_flops`` is the sustained rate of big GEMMs and
    ``overhead_s`` the intercept of that line (the fixed cost a batch adds on top of its
    FLOPs). ``"relative"`` minimises squared *relative* residuals
    ``((overhead + flops/peak - t) / t)**2`` instead, so the microsecond-scale small
    batches weigh as much as the millisecond-scale ones; the overhead then tracks the
    small-batch floor, but since a real expert FFN is not exactly ``a + b * flops`` (it is
    bound by reading the weights at small batches), its ``peak_flops`` comes out above
    any rate actually reached. Returns the fixed per-batch overhead in seconds and the
    asymptotic FLOP/s.
    """
    if source is None:
        source = CALIBRATION_DIR / "h200.csv"
    if isinstance(source, (str, Path)):
        source = MeasuredCompute.from_csv(source)
    df = source.rows if isinstance(source, MeasuredCompute) else source
    df = df[(df["kind"] == "single") & (df["tokens"] > 0)] if "kind" in df.columns else df
    if hidden is not None:
        df = df[df["hidden"] == hidden]
    if ffn_hidden is not None:
        df = df[df["ffn_hidden"] == ffn_hidden]
    if preset is not None:
        if "preset" not in df.columns:
            raise ConfigError("table has no 'preset' column")
        df = df[df["preset"] == preset]
    if len(df) < 2:
        raise ConfigError(f"fit_overhead needs at least 2 single-expert rows, got {len(df)} "
                          f"(hidden={hidden}, ffn_hidden={ffn_hidden}, preset={preset})")
    t = df["median_s"].to_numpy(dtype=float)
    fl = ffn_flops(df["tokens"].to_numpy(dtype=float),
                   1, 1) * df["hidden"].to_numpy(dtype=float) * df["ffn_hidden"].to_numpy(dtype=float)
    a = np.column_stack([np.ones_like(t), fl])
    if weighting == "relative":
        w = 1.0 / t
    elif weighting == "absolute":
        w = np.ones_like(t)
    else:
        raise ConfigError(f"weighting must be 'relative' or 'absolute', got {weighting!r}")
    (overhead, inv_peak), *_ = np.linalg.lstsq(a * w[:, None], t * w, rcond=None)
    peak = 1.0 / inv_peak if inv_peak > 0 else float("inf")
    return OverheadFit(float(overhead), float(peak))


# --------------------------------------------------------------------------- registry


def compute_model_names() -> list[str]:
    """Names :func:`get_compute_model` accepts (measured ones: tables present, plus h200)."""
    measured = {f"{p.stem}-measured" for p in CALIBRATION_DIR.glob("*.csv")} | {"h200-measured"}
    return sorted(f"{g}-roofline" for g in ROOFLINE_SPECS) + sorted(measured)


def get_compute_model(name: str, **kwargs) -> "MeasuredCompute | RooflineCompute":
    """A compute model by name.

    ``"h100-roofline"``, ``"h200-roofline"``, ``"b200-roofline"``: :class:`RooflineCompute`
    (``kwargs`` such as ``efficiency=`` or ``overhead_s=`` override its defaults).
    ``"h200-measured"`` (generally ``"<gpu>-measured"``): :class:`MeasuredCompute` from
    ``workloads/calibration/<gpu>.csv`` (``kwargs``: ``monotone=``, ``gpu_name=``);
    :class:`~netsim.errors.ConfigError` if that file is missing.
    """
    if not isinstance(name, str):
        raise ConfigError(f"compute model name must be a str, got {name!r}")
    key = name.strip().lower()
    if key.endswith("-roofline") and key[: -len("-roofline")] in ROOFLINE_SPECS:
        return RooflineCompute.for_gpu(key[: -len("-roofline")], **kwargs)
    if key.endswith("-measured") and key[: -len("-measured")]:
        gpu = key[: -len("-measured")]
        path = CALIBRATION_DIR / f"{gpu}.csv"
        if not path.is_file():
            raise ConfigError(
                f"compute model {name!r} needs the calibration table {path}, which is missing; "
                "measure it with benchmarks/gpu_expert_ffn.py --device cuda --out " + str(path))
        return MeasuredCompute.from_csv(path, name=key, **kwargs)
    raise UnknownNameError(f"unknown compute model {name!r}; known: {compute_model_names()}")
