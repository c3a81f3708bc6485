"""How much of the imbalance gap a mitigation recovers, on the dispatch and on the whole layer.

A row cannot know its own baseline (the same point without the mitigation is another run), so
:func:`recovered_shares` pairs the rows of a dataset: a row's *baseline* is the row of the same
point -- every parameter column equal (``seed`` included: paired seeds) -- with no mitigation
(``sample_placement=none``, ``relayout=none``, ``rank_mapping=identity``,
``collective=direct``; a missing column counts as its default). With ``B`` the baseline:

* ``dispatch_recovered_share = (B.dispatch_s - dispatch_s) / (B.dispatch_s -
  B.ideal_balanced_dispatch_s)``: the share of the baseline's dispatch gap to the balanced
  bound (the same bytes perfectly balanced, congestion-free) that the mitigation removes;
* ``layer_recovered_share = (B.layer_s - layer_s) / (B.layer_s - B.balanced_layer_s)``: the
  same on the whole layer, whose time includes each mitigation's own cost (weight migrations
  and moved samples are flows the GPUs wait for; ``relayout=static`` is placed before the job
  and costs nothing). ``balanced_layer_s`` is the baseline's non-overlapped reference with
  balanced traffic: ``serial_ideal_s - ideal_dispatch_s - ideal_combine_s +
  ideal_balanced_dispatch_s * (1 + combine_bytes / dispatch_bytes)`` (dispatch and combine at
  the balanced bound, the baseline's longest compute). It is a reference, not a lower bound:
  a mitigation that also balances compute, or overlap, can take the share above 1.

A share is NaN when the row has no baseline in the frame or the baseline has no gap (> 0). A
negative share is a mitigation that made the layer (or dispatch) slower than doing nothing.
"""
from __future__ import annotations

import numpy as np

__all__ = ["recovered_shares", "balanced_layer_s", "MITIGATION_DEFAULTS", "SHARE_COLUMNS"]

#: the mitigation parameters and their no-mitigation values
MITIGATION_DEFAULTS = {"sample_placement": "none", "relayout": "none",
                       "rank_mapping": "identity", "collective": "direct"}

#: columns :func:`recovered_shares` adds (units in :data:`netsim.columns.UNITS`)
SHARE_COLUMNS = ("baseline_dispatch_s", "baseline_layer_s", "dispatch_recovered_share",
                 "layer_recovered_share")

_NOT_KEYS = {"status", "error", "netsim_version", "point_key"}


def _key_columns(df) -> list[str]:
    from netsim.columns import UNITS

    return [c for c in df.columns
            if c not in UNITS and c not in MITIGATION_DEFAULTS and c not in _NOT_KEYS
            and c not in SHARE_COLUMNS and not str(c).endswith("_wall_s")]


def balanced_layer_s(df):
    """Each row's non-overlapped layer reference with balanced traffic (s, a pandas Series):
    ``serial_ideal_s - ideal_dispatch_s - ideal_combine_s + ideal_balanced_dispatch_s * (1 +
    combine_bytes / dispatch_bytes)`` (module docstring); NaN where a column is missing."""
    import pandas as pd

    def col(name):
        return (pd.to_numeric(df[name], errors="coerce") if name in df
                else pd.Series(np.nan, index=df.index, dtype=float))

    ratio = (col("combine_bytes") / col("dispatch_bytes")).where(col("dispatch_bytes") > 0)
    ratio = ratio.fillna(1.0)
    return (col("serial_ideal_s") - col("ideal_dispatch_s") - col("ideal_combine_s")
            + col("ideal_balanced_dispatch_s") * (1.0 + ratio))


def recovered_shares(df, by: list[str] | None = None):
    """``df`` with :data:`SHARE_COLUMNS` added (see the module docstring); ``by`` overrides the
    columns that identify a point (default: every column that is neither a metric of
    :data:`netsim.columns.UNITS`, a mitigation parameter, nor bookkeeping such as ``status``).
    Rows whose ``status`` is not ``ok`` are never baselines. Several baselines of one point are
    averaged."""
    import pandas as pd

    out = df.copy()
    keys = list(by) if by is not None else _key_columns(df)
    for c in SHARE_COLUMNS:
        out[c] = np.nan
    if out.empty:
        return out
    kf = pd.DataFrame({c: out[c].map(repr) for c in keys}, index=out.index)
    key = kf.apply(lambda r: "\x1f".join(r), axis=1) if keys else pd.Series("", out.index)
    base = pd.Series(True, index=out.index)
    for c, d in MITIGATION_DEFAULTS.items():
        if c in out:
            base &= out[c].fillna(d).astype(str) == d
    if "status" in out:
        base &= out["status"].fillna("ok") == "ok"

    def col(name, default=np.nan):
        return (pd.to_numeric(out[name], errors="coerce") if name in out
                else pd.Series(default, index=out.index, dtype=float))

    disp, lay = col("dispatch_s"), col("layer_s")
    bal = col("ideal_balanced_dispatch_s")
    bal_layer = balanced_layer_s(out)
    ref = pd.DataFrame({"key": key, "d": disp, "l": lay, "bd": bal, "bl": bal_layer})[base]
    ref = ref.groupby("key").mean()
    B = ref.reindex(key.values)
    B.index = out.index
    out["baseline_dispatch_s"] = B["d"]
    out["baseline_layer_s"] = B["l"]
    gap_d = (B["d"] - B["bd"]).where(B["d"] - B["bd"] > 0)
    gap_l = (B["l"] - B["bl"]).where(B["l"] - B["bl"] > 0)
    out["dispatch_recovered_share"] = (B["d"] - disp) / gap_d
    out["layer_recovered_share"] = (B["l"] - lay) / gap_l
    return out
