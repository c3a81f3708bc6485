"""GPU x GPU byte matrices: the one validator, and loading one from a ``.npy`` file."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from netsim.errors import TrafficError

__all__ = ["check_matrix", "load_traffic"]


def check_matrix(m: Any, n_gpus: int | None = None, what: str = "traffic matrix",
                 zero_diagonal: bool = False) -> np.ndarray:
    """``m`` as a fresh float64 array, or :class:`TrafficError` naming the first bad entry.

    Checks: real numbers (not complex, boolean or strings), square and non-empty (N x N for
    ``n_gpus`` GPUs when given), finite, bytes >= 0. ``zero_diagonal`` clears the diagonal (bytes
    a GPU keeps: schedulers ignore them).
    """
    arr0 = np.asarray(m) if not isinstance(m, np.ndarray) else m
    if arr0.dtype.kind not in "iuf":
        raise TrafficError(f"{what} has {arr0.dtype} entries; expected real numbers of bytes")
    arr = np.array(arr0, dtype=np.float64, copy=True)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1] or arr.shape[0] == 0:
        raise TrafficError(f"{what} has shape {arr.shape}; expected a non-empty square N x N matrix"
                           + (f" with N = {n_gpus} GPUs" if n_gpus is not None else ""))
    if n_gpus is not None and arr.shape != (n_gpus, n_gpus):
        raise TrafficError(f"{what} has shape {arr.shape}; expected ({n_gpus}, {n_gpus}) for"
                           f" {n_gpus} GPUs")
    bad = ~np.isfinite(arr)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        kind = "NaN" if np.isnan(arr[i, j]) else "infinite"
        raise TrafficError(f"{what}[{i}, {j}] = {float(arr[i, j])!r} is {kind}; expected a"
                           " finite number of bytes >= 0")
    neg = arr < 0
    if neg.any():
        i, j = np.argwhere(neg)[0]
        raise TrafficError(f"{what}[{i}, {j}] = {float(arr[i, j])!r} is negative; expected"
                           " bytes >= 0")
    if zero_diagonal:
        np.fill_diagonal(arr, 0.0)
    return arr


def load_traffic(path: str, n_gpus: int) -> np.ndarray:
    """A GPU x GPU byte matrix from a ``.npy`` file, validated by :func:`check_matrix`."""
    p = Path(path)
    if p.is_dir():
        raise TrafficError(f"traffic file {path!r} is a directory; expected a .npy file")
    if not p.is_file():
        raise TrafficError(f"traffic file {path!r} does not exist")
    try:
        m = np.load(p, allow_pickle=False)
    except ValueError:
        raise TrafficError(f"traffic file {path!r} is not a numeric .npy array (numpy.save of"
                           " an N x N matrix of bytes)") from None
    except Exception as exc:  # noqa: BLE001 -- any unreadable file is the user's input
        raise TrafficError(f"traffic file {path!r} cannot be read as .npy: {exc}") from None
    if not isinstance(m, np.ndarray):
        raise TrafficError(f"traffic file {path!r} holds several arrays; expected one N x N matrix")
    return check_matrix(m, n_gpus, what=f"traffic matrix {path!r}")
