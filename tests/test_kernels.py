"""netsim.kernels: the compile-ahead manifest matches what runs really compile, and the two-process
compile gives the same rows and fills the cache."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from hypothesis import given, settings, strategies as st

from netsim import kernels
from netsim.kernels import FABRICS, Kernel, compile_ahead, manifest, shares
from netsim.scenario import run


@pytest.mark.parametrize("fabric", FABRICS)
def test_manifest_entries_are_what_the_default_run_calls(fabric):
    entries = manifest(fabric)
    assert entries, f"no kernels recorded for {fabric}: run python -m netsim.kernels --write"
    run(dict(gpus=16, fabric=fabric))  # compiles or loads exactly the run's kernels
    for k in entries:
        disp = k.dispatcher()
        assert k.types() in disp.overloads, (
            f"{k.module}.{k.name}{k.signature} is not called by the default {fabric} run: the "
            "manifest is stale (python -m netsim.kernels --write)")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.0, 10.0), max_size=12), st.floats(0.0, 3.0))
def test_shares_partition_in_manifest_order_and_balance(secs, startup):
    ks = [Kernel("m", f"k{i}", (), s) for i, s in enumerate(secs)]
    own, child = shares(ks, startup)
    assert sorted(own + child, key=ks.index) == ks
    assert own == [k for k in ks if k in own] and child == [k for k in ks if k in child]
    # longest-first list scheduling: no share finishes more than one kernel after the other
    load_own = sum(k.seconds for k in own)
    load_child = startup + sum(k.seconds for k in child)
    assert abs(load_own - load_child) <= max([startup] + secs) + 1e-9


def test_nothing_to_do_when_warm_or_switched_off(monkeypatch):
    run(dict(gpus=16, fabric="analytic"))
    assert not kernels.cold(manifest("analytic"))
    assert compile_ahead("analytic") is False
    monkeypatch.setenv("NETSIM_COMPILE_AHEAD", "0")
    assert compile_ahead("flow") is False
    assert compile_ahead("no-such-fabric") is False


def test_stale_entries_are_skipped():
    bad = [Kernel("netsim.topology", "no_such_kernel", ("int64",), 1.0),
           Kernel("netsim.topology", "_mix", ("NoSuchType",), 1.0)]
    assert kernels.compile_kernels(bad) == 0
    assert not kernels.cold(bad[:1])  # unknown kernels do not make the cache look cold


def _cli(cache, ahead: str, fabric: str = "analytic"):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache), NETSIM_COMPILE_AHEAD=ahead)
    out = subprocess.run([sys.executable, "-m", "netsim.cli", "run", "--set", "gpus=16",
                          "--fabric", fabric, "--json"], env=env, check=True,
                         capture_output=True, text=True).stdout
    row = json.loads(out)
    return {k: v for k, v in row.items() if not k.endswith("wall_s")}


@pytest.mark.slow
def test_cold_cache_two_processes_same_row_and_cache_filled(tmp_path):
    """A cold run with compile-ahead gives the row of a run without it, and leaves every
    manifest kernel in the cache (the child's share included)."""
    a = _cli(tmp_path / "one", "0")
    b = _cli(tmp_path / "two", "1")
    assert a == b
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "two"))
    code = ("from netsim.kernels import cold, manifest; import sys;"
            " sys.exit(1 if cold(manifest('analytic')) else 0)")
    assert subprocess.run([sys.executable, "-c", code], env=env).returncode == 0


@pytest.mark.slow
@pytest.mark.parametrize("fabric", FABRICS)
def test_manifest_is_complete(fabric):
    """Every top-level kernel a cold default run compiles is in the manifest."""
    recorded = {(k["module"], k["name"], tuple(k["signature"])) for k in kernels.record(fabric)}
    listed = {(k.module, k.name, k.signature) for k in manifest(fabric)}
    assert recorded == listed
