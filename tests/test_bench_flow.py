"""benchmarks/bench_flow.py's table and target lines, from rows made up here (no run)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def _load():
    spec = importlib.util.spec_from_file_location("bench_flow",
                                                  ROOT / "benchmarks" / "bench_flow.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_flow"] = mod
    spec.loader.exec_module(mod)
    return mod


bf = _load()


def _row(case, model, total, x_flow):
    return dict(case=case, model=model, flows=10, events=3, recomputes=3, per_rc=1.0,
                build_s=0.0, route_s=0.0, sim_s=total, total_s=total, x_flow=x_flow,
                makespan_ms=1.0, merge=1.0)


def test_target_lines_say_met_only_where_the_row_meets_the_target(tmp_path):
    rows = [_row("fattree1024x256KiB", "flow", 1.0, 1.0),
            _row("fattree1024x256KiB", "packet", 9.9, 9.9),     # below 10x: not met
            _row("fattree1024x1024KiB", "flow", 1.0, 1.0),
            _row("fattree1024x1024KiB", "packet", 10.0, 10.0),  # at 10x: met
            _row("moe1024-uniform", "flow", 1.99, 1.0),          # under 2 s: met
            _row("dense1024", "flow", 5.0, 1.0),                 # not under 5 s
            _row("exact256-uniform", "flow", 30.0, 1.0)]
    p = tmp_path / "run.parquet"
    pd.DataFrame(rows).assign(commit="0123456789abcdef", repeat=2).to_parquet(p)
    text = bf.table(str(p))
    lines = {ln.split(":")[0][2:]: ln for ln in text.splitlines() if ln.startswith("- ")}
    assert "not met" in lines["fattree1024x256KiB"] and "9.9x" in lines["fattree1024x256KiB"]
    assert lines["fattree1024x1024KiB"].endswith(": met in this run.")
    assert lines["moe1024-uniform"].endswith(": met in this run.")
    assert "not met" in lines["dense1024"] and "not met" in lines["exact256-uniform"]
    assert "`0123456789ab`, best of 2" in text
    # the Markdown table itself: a header, a rule and one line per row
    table = [ln for ln in text.splitlines() if ln.startswith("|")]
    assert len(table) == 2 + len(rows)


def test_no_target_lines_without_their_rows(tmp_path):
    p = tmp_path / "small.parquet"
    pd.DataFrame([_row("moe64-uniform", "flow", 0.01, 1.0)]).to_parquet(p)
    assert not [ln for ln in bf.table(str(p)).splitlines() if ln.startswith("- ")]


def test_level_suffix_runs_the_full_solvers_events():
    """benchmarks/level_suffix.py's event loop is the fabric's own (same events, same last
    finish as run_to_completion with the full solver), and its shares are shares."""
    import numpy as np

    from netsim.fabric.flow import FlowFabric
    from netsim.plugins import resolve

    spec = importlib.util.spec_from_file_location("level_suffix",
                                                  ROOT / "benchmarks" / "level_suffix.py")
    ls_mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ls_mod)
    for tol in (0.0, 1e-3):
        r = ls_mod.suffix_share(16, "uniform", tol)
        _, ls = resolve("topologies", "leaf_spine")
        m = bf.dispatch_matrix(16, "uniform")
        src, dst = np.nonzero(m)
        fab = FlowFabric(ls(gpus=16, servers_per_leaf=2, spines=8).freeze(), tolerance=tol,
                         solver="full")
        fab.add_flows(src, dst, m[src, dst])
        fab.run_to_completion()
        assert r["events"] == fab.events
        assert r["makespan_s"] == float(fab.finish[: fab.n].max())
        assert 0.0 < r["suffix_share"] <= 1.0
        assert r["full_share"] == 1.0  # one component: every live flow at every event


def test_lazy_advance_probe_keeps_the_full_solvers_events():
    """benchmarks/lazy_advance_probe.py's loop advancing by components gives the full solver's
    events and finish times within round-off, on a 64-GPU cluster dispatch (the network's
    component beside each server's NVLink one) and on a one-component leaf-spine."""
    import numpy as np

    spec = importlib.util.spec_from_file_location("lazy_advance_probe",
                                                  ROOT / "benchmarks" / "lazy_advance_probe.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for case, n in (("cluster", 64), ("dense", 16)):
        fab_all, fab_comp = mod.fabric(case, n, 1e-3), mod.fabric(case, n, 1e-3)
        ev_all = mod.loop_all(fab_all, 1e-3)[0]
        ev_comp = mod.loop_components(fab_comp, 1e-3)[0]
        assert ev_all == ev_comp > 1
        a, b = fab_all.finish[: fab_all.n], fab_comp.finish[: fab_comp.n]
        assert not np.isnan(a).any() and not np.isnan(b).any()
        assert np.abs(a - b).max() <= 1e-12 * a.max()
        if case == "cluster":  # several components, some of them refilled apart
            first = fab_all.path_links[fab_all.path_ptr[np.arange(fab_all.n)]]
            assert len(np.unique(fab_all._lcomp[first])) > 2
