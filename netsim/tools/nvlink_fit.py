"""Fit an NVLink domain's all-to-all parameters to measurements, and check them on MoE traffic.

The measurements come from ``benchmarks/gpu_alltoall.py`` (``torch.distributed``
``all_to_all_single`` over NCCL; committed: ``workloads/calibration/h200x4_alltoall.csv``,
4 NVIDIA H200s of one host, world sizes 2, 3 and 4). Each row is one all-to-all: either
*uniform* (every GPU sends ``bytes_per_pair`` to every GPU) or *skewed* (the dispatch
matrix of a Zipf-routed Mixtral-8x7B layer, saved as ``.npy`` under
``workloads/calibration/alltoall_matrices/`` by ``benchmarks/make_alltoall_matrices.py``).

Model
-----
For a GPU x GPU byte matrix ``M`` on ``n`` GPUs (``M[i, j]`` bytes from ``i`` to ``j``)::

    t(M) = c + a * (n - 1) + L(M) / B,   L(M) = max(max_i sum_j!=i M[i, j], max_j sum_i!=j M[i, j])

* ``B`` (bytes/s): each GPU's NVLink bandwidth, the same limit for sending and receiving
  (NVSwitch is non-blocking, so only a GPU's own injection and ejection limit it). ``L / B``
  is exactly netsim's ideal-crossbar bound (:func:`netsim.bounds.line_sum_time`).
* ``a`` (s): per-peer message cost (each rank posts one send and one receive per peer).
* ``c`` (s): the all-to-all's fixed cost: launch, synchronisation, the host-side cost of a
  ``torch.distributed`` call.
* The diagonal ``M[i, i]`` (a GPU's bytes to itself, a local copy) is ignored, as netsim
  ignores it.

The three parameters are linear in the model (``c``, ``a`` and ``1 / B``), so the fit is a
linear least-squares problem, bounded to non-negative values (``scipy.optimize.lsq_linear``).
The default weights make it minimise the **relative** error ``(t_model - t) / t``: the
uniform points span 1 KiB to 1 GiB per pair (times from ~25 us to ~10 ms) and an absolute
fit would ignore everything below a few MiB. ``c`` and ``a`` are told apart only by the
world size, so the data must hold at least two world sizes (2, 3 and 4 in the committed
file); with one, ``a`` is set to 0 and ``c`` takes the whole fixed cost.

Where it is wrong (see ``docs/nvlink_validation.md``): small messages are bound by the
host (``c`` is mostly the cost of one ``all_to_all_single`` call, ~25-50 us, and varies
run to run), and NCCL's achieved bandwidth ramps up with size (it is lower at a few MiB per
pair than at tens of MiB, and highest above 256 MiB per pair: the ramp table in the docs is
written from the committed measurements), so a single ``B`` is a compromise.

netsim's own answer
-------------------
:func:`simulate` runs the same matrix through netsim (``netsim.scenario.run`` with
``topology="crossbar"``, ``link_gbps = B * 8 / 1e9``, ``traffic=<.npy>``): the flow model
(``fabric="flow"``, max-min fair rates, which may be slower than ``L / B`` on a skewed
matrix) or the closed-form bound (``fabric="analytic"``, equal to :func:`predict`). netsim's
crossbar has no per-message or per-collective software cost, so ``c + a * (n - 1)`` is put
into the link latency: a path crosses two links, each of ``latency_us = (c + a (n - 1)) / 2``.

:func:`evaluate` compares measured times with :func:`predict` (and, optionally,
:func:`simulate`) on any rows, **without refitting**: the intended use is the skewed rows
with parameters fitted on the uniform rows.
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from netsim.errors import ConfigError, TrafficError
from netsim.workload.calibration import CALIBRATION_DIR

__all__ = [
    "DEFAULT_CSV", "MATRICES_DIR", "NVLinkParams", "FitResult", "load_measurements",
    "row_matrix", "line_bytes", "predict", "fit", "fit_csv", "evaluate", "error_summary",
    "simulate",
]

DEFAULT_CSV = CALIBRATION_DIR / "h200x4_alltoall.csv"
MATRICES_DIR = CALIBRATION_DIR / "alltoall_matrices"
_COLUMNS = ("world_size", "kind", "matrix_id", "bytes_per_pair", "median_s")


@dataclass(frozen=True)
class NVLinkParams:
    """All-to-all model parameters (SI): ``t = fixed_s + latency_s * (n - 1) + L / bandwidth_Bps``."""

    bandwidth_Bps: float  # B: per-GPU NVLink bandwidth, each direction
    latency_s: float  # a: per-peer message cost
    fixed_s: float  # c: per-all-to-all fixed cost

    def as_dict(self) -> dict:
        return asdict(self)

    def overhead_s(self, n: int) -> float:
        """The size-independent part ``c + a * (n - 1)`` for ``n`` GPUs."""
        return self.fixed_s + self.latency_s * (int(n) - 1)

    def crossbar_params(self, n: int) -> dict:
        """``netsim.scenario.run`` keyword arguments for the crossbar that models ``n`` GPUs."""
        return dict(topology="crossbar", gpus=int(n), link_gbps=self.bandwidth_Bps * 8 / 1e9,
                    latency_us=self.overhead_s(n) / 2 * 1e6)

    def __str__(self) -> str:
        return (f"B = {self.bandwidth_Bps / 1e9:.1f} GB/s per GPU, a = {self.latency_s * 1e6:.2f} us"
                f" per peer, c = {self.fixed_s * 1e6:.2f} us per all-to-all")


@dataclass
class FitResult:
    """:func:`fit`'s answer: parameters and the fitted rows with model time and residual."""

    params: NVLinkParams
    table: pd.DataFrame  # the rows used, plus columns n, line_bytes, model_s, rel_err
    weights: str

    @property
    def rel_err(self) -> np.ndarray:
        return self.table["rel_err"].to_numpy()

    def summary(self) -> dict:
        e = np.abs(self.rel_err)
        return dict(points=int(len(e)), median_abs_rel_err=float(np.median(e)),
                    rms_rel_err=float(np.sqrt(np.mean(e**2))), max_abs_rel_err=float(e.max()),
                    **self.params.as_dict())


# --------------------------------------------------------------------------------- data


def load_measurements(csv: str | Path = DEFAULT_CSV, kind: str | None = None,
                      world_size: int | None = None) -> pd.DataFrame:
    """The benchmark's CSV as a DataFrame, optionally only one ``kind`` / ``world_size``."""
    p = Path(csv)
    if not p.is_file():
        raise ConfigError(f"all-to-all measurements {str(p)!r} do not exist")
    df = pd.read_csv(p, keep_default_na=False, na_values={"bytes_per_pair": [""]})
    missing = [c for c in _COLUMNS if c not in df.columns]
    if missing:
        raise ConfigError(f"{p}: missing columns {missing}; expected the output of "
                          "benchmarks/gpu_alltoall.py")
    df["matrix_id"] = df["matrix_id"].astype(str)
    if kind is not None:
        df = df[df["kind"] == kind]
    if world_size is not None:
        df = df[df["world_size"] == world_size]
    return df.reset_index(drop=True)


def row_matrix(row, matrices_dir: str | Path = MATRICES_DIR) -> np.ndarray:
    """The byte matrix of one measured row: uniform ``bytes_per_pair`` or the skewed ``.npy``."""
    n = int(row["world_size"])
    if row["kind"] == "uniform":
        return np.full((n, n), float(row["bytes_per_pair"]))
    p = Path(matrices_dir) / f"{row['matrix_id']}.npy"
    if not p.is_file():
        raise TrafficError(f"matrix {row['matrix_id']!r}: {str(p)!r} does not exist")
    m = np.load(p, allow_pickle=False).astype(np.float64)
    if m.shape != (n, n):
        raise TrafficError(f"matrix {str(p)!r} has shape {m.shape}; expected ({n}, {n})")
    return m


def line_bytes(m: np.ndarray) -> float:
    """``L``: the largest off-diagonal row or column sum of a byte matrix."""
    m = np.asarray(m, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise TrafficError(f"byte matrix has shape {m.shape}; expected (n, n)")
    if not np.isfinite(m).all() or (m < 0).any():
        raise TrafficError("byte matrix must be finite and non-negative")
    off = m - np.diag(np.diag(m))
    return float(max(off.sum(axis=1).max(), off.sum(axis=0).max()))


def predict(matrix_bytes, params: NVLinkParams) -> float:
    """Model time (s) of one all-to-all of ``matrix_bytes`` (``n x n``; diagonal ignored)."""
    m = np.asarray(matrix_bytes, dtype=np.float64)
    return params.overhead_s(m.shape[0]) + line_bytes(m) / params.bandwidth_Bps


def _design(df: pd.DataFrame, matrices_dir) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = df["world_size"].to_numpy(dtype=np.float64)
    L = np.array([line_bytes(row_matrix(r, matrices_dir)) for _, r in df.iterrows()])
    X = np.column_stack([np.ones_like(n), n - 1.0, L])  # c, a, 1/B
    return X, n, L


# --------------------------------------------------------------------------------- fit


def fit(df: pd.DataFrame, weights: str = "relative", matrices_dir: str | Path = MATRICES_DIR,
        time_col: str = "median_s") -> FitResult:
    """Least-squares fit of ``c, a, B`` to measured rows (normally ``kind == "uniform"``).

    ``weights="relative"`` minimises ``sum(((model - t) / t) ** 2)``; ``"absolute"`` minimises
    ``sum((model - t) ** 2)``. All three parameters are constrained to ``>= 0``; with a single
    world size ``a`` is fixed at 0.
    """
    from scipy.optimize import lsq_linear

    if weights not in ("relative", "absolute"):
        raise ConfigError(f"weights={weights!r}; expected 'relative' or 'absolute'")
    if len(df) < 3:
        raise ConfigError(f"need at least 3 measured rows to fit 3 parameters; got {len(df)}")
    X, n, L = _design(df, matrices_dir)
    t = df[time_col].to_numpy(dtype=np.float64)
    if not (np.isfinite(t).all() and (t > 0).all()):
        raise ConfigError(f"column {time_col!r} must hold positive finite times")
    cols = [0, 1, 2] if len(np.unique(n)) > 1 else [0, 2]
    w = 1.0 / t if weights == "relative" else np.ones_like(t)
    A = X[:, cols] * w[:, None]
    # scale columns to O(1) so the solver's tolerances mean the same for every column
    scale = np.abs(A).max(axis=0)
    scale[scale == 0] = 1.0
    sol = lsq_linear(A / scale, t * w, bounds=(0.0, np.inf), method="bvls").x / scale
    coef = np.zeros(3)
    coef[cols] = sol
    if coef[2] <= 0:
        raise ConfigError("fit gave no bandwidth term (1/B = 0): the data show no growth with size")
    params = NVLinkParams(bandwidth_Bps=float(1.0 / coef[2]), latency_s=float(coef[1]),
                          fixed_s=float(coef[0]))
    out = df.copy()
    out["n"] = n.astype(int)
    out["line_bytes"] = L
    out["model_s"] = X @ coef
    out["rel_err"] = (out["model_s"] - t) / t
    return FitResult(params, out, weights)


def fit_csv(csv: str | Path = DEFAULT_CSV, **kw) -> FitResult:
    """:func:`fit` on the uniform rows of a benchmark CSV."""
    return fit(load_measurements(csv, kind="uniform"), **kw)


# --------------------------------------------------------------------------------- check


def simulate(matrix_bytes, params: NVLinkParams, fabric: str = "flow", seed: int = 0) -> float:
    """netsim's time (s) for one all-to-all of ``matrix_bytes`` on the equivalent crossbar.

    Runs ``netsim.scenario.run(topology="crossbar", gpus=n, link_gbps=B*8/1e9,
    latency_us=(c + a (n-1)) / 2, traffic=<tmp .npy>, fabric=fabric)`` and returns its
    ``dispatch_s``. ``fabric="analytic"`` equals :func:`predict` (up to rounding).
    """
    from netsim.scenario import run

    m = np.asarray(matrix_bytes, dtype=np.float64)
    n = m.shape[0]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "traffic.npy"
        np.save(path, m)
        row = run(traffic=str(path), fabric=fabric, seed=seed, **params.crossbar_params(n))
    return float(row["dispatch_s"])


def evaluate(df: pd.DataFrame, params: NVLinkParams, matrices_dir: str | Path = MATRICES_DIR,
             with_netsim: bool = False, time_col: str = "median_s") -> pd.DataFrame:
    """Measured versus predicted time of each row, **without refitting** ``params``.

    Adds columns ``n``, ``line_bytes``, ``model_s``, ``rel_err = (model - measured) /
    measured`` and, with ``with_netsim``, ``netsim_s`` (:func:`simulate`, flow model) and
    ``netsim_rel_err``.
    """
    out = df.copy().reset_index(drop=True)
    mats = [row_matrix(r, matrices_dir) for _, r in out.iterrows()]
    t = out[time_col].to_numpy(dtype=np.float64)
    out["n"] = out["world_size"].astype(int)
    out["line_bytes"] = [line_bytes(m) for m in mats]
    out["model_s"] = [predict(m, params) for m in mats]
    out["rel_err"] = (out["model_s"] - t) / t
    if with_netsim:
        out["netsim_s"] = [simulate(m, params) for m in mats]
        out["netsim_rel_err"] = (out["netsim_s"] - t) / t
    return out


def error_summary(table: pd.DataFrame, col: str = "rel_err") -> dict:
    """Mean (signed), mean |.|, and max |.| of a relative-error column."""
    e = table[col].to_numpy(dtype=np.float64)
    return dict(points=int(len(e)), mean_rel_err=float(e.mean()),
                mean_abs_rel_err=float(np.abs(e).mean()), max_abs_rel_err=float(np.abs(e).max()))


def main(argv=None) -> int:
    """``python -m netsim.tools.nvlink_fit [CSV]``: fit, then the skewed-matrix error."""
    import argparse

    ap = argparse.ArgumentParser(description="Fit NVLink all-to-all parameters to a benchmark CSV")
    ap.add_argument("csv", nargs="?", default=str(DEFAULT_CSV))
    ap.add_argument("--weights", default="relative", choices=("relative", "absolute"))
    ap.add_argument("--netsim", action="store_true", help="also run netsim's flow model")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    res = fit_csv(args.csv, weights=args.weights)
    sk = evaluate(load_measurements(args.csv, kind="skewed"), res.params, with_netsim=args.netsim)
    report = {"fit": res.summary(), "skewed": error_summary(sk) if len(sk) else None}
    if args.netsim and len(sk):
        report["skewed_netsim_flow"] = error_summary(sk, "netsim_rel_err")
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    print(res.params)
    print(f"uniform fit: {report['fit']['points']} points, median |rel err| "
          f"{report['fit']['median_abs_rel_err']:.1%}, max {report['fit']['max_abs_rel_err']:.1%}")
    if len(sk):
        cols = ["world_size", "matrix_id", "median_s", "model_s", "rel_err"] + (
            ["netsim_s", "netsim_rel_err"] if args.netsim else [])
        print(sk[cols].to_string(index=False))
        s = report["skewed"]
        print(f"skewed (not refitted): mean rel err {s['mean_rel_err']:+.1%}, mean |rel err| "
              f"{s['mean_abs_rel_err']:.1%}, max {s['max_abs_rel_err']:.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
