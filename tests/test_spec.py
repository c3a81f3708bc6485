"""The typed run specification and the defects it removed (one regression test each)."""
import ast
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from netsim.cli import main
from netsim.errors import ConfigError
from netsim.scenario import run
from netsim.spec import RUN_PARAMETERS, CircuitSpec, PacketSpec, RunSpec

ROOT = Path(__file__).resolve().parents[1]
OCS = dict(topology="ocs_direct", gpus=8, tokens_per_gpu=64)


@pytest.mark.parametrize("ports", [1, 2])
def test_spectra_without_s_takes_the_fabrics_planes(ports):
    # defect 1: the two parsers disagreed on S (IndexError with ports=1, a wrong refusal with 2)
    row = run(OCS | dict(ports=ports, scheduler="spectra"))
    assert row["scheduler"] == "spectra" and row["fabric"] == "circuit"
    assert row["bytes_delivered"] == pytest.approx(row["bytes_total"])
    with pytest.raises(ConfigError, match=f"has {ports} port plane"):
        run(OCS | dict(ports=ports, scheduler=f"spectra:{ports + 1}"))


@pytest.mark.parametrize("opt", [["--ocs-mode", "not_all_stop"], ["--no-overlap"]])
def test_cli_circuit_options_without_scheduler_are_refused(opt):
    # defect 2: the CLI dropped these options and printed a row
    r = CliRunner().invoke(main, ["run", "--set", "gpus=4", "--set", "tokens_per_gpu=64", *opt])
    assert r.exit_code == 2 and "is a circuit-model setting" in r.output
    assert "Traceback" not in r.output


def test_cli_passes_only_what_the_user_gave():
    r = CliRunner().invoke(main, ["run", "--set", "gpus=4", "--set", "tokens_per_gpu=64",
                                  "--topology", "ocs_direct", "--scheduler", "greedy:1",
                                  "--no-overlap", "--json"])
    assert r.exit_code == 0, r.output
    import json

    row = json.loads(r.output)
    assert row["overlap"] is False and row["ocs_mode"] == "all_stop" and row["fabric"] == "circuit"


def test_a_user_topology_with_an_ocs_can_be_circuit_scheduled(tmp_path):
    # defect 3: circuit support was keyed on the topology's name
    user = tmp_path / "my_optical.py"
    shutil.copy(ROOT / "topologies" / "ocs_direct.py", user)
    row = run(dict(topology=str(user), gpus=8, tokens_per_gpu=64, scheduler="greedy:2"))
    ref = run(OCS | dict(scheduler="greedy:2"))
    assert row["layer_s"] == ref["layer_s"] and row["n_matchings"] == ref["n_matchings"]
    # and a topology without one is refused with the reason
    with pytest.raises(ConfigError, match="declares none"):
        run(dict(topology="crossbar", gpus=8, tokens_per_gpu=64, scheduler="bvn"))


def test_any_moe_layer_field_can_be_set():
    # defect 4: fields without a dataclass default failed with "expected _MISSING_TYPE"
    row = run(dict(gpus=8, tokens_per_gpu=64, experts=256, top_k=4))
    assert row["experts"] == 256 and row["top_k"] == 4
    r = CliRunner().invoke(main, ["run", "--set", "gpus=8", "--set", "tokens_per_gpu=64",
                                  "--set", "experts=256", "--set", "top_k=4", "--json"])
    assert r.exit_code == 0, r.output
    with pytest.raises(ConfigError, match=r"experts='many'.*expected int"):
        run(dict(gpus=8, experts="many"))


def test_rows_carry_every_effective_parameter():
    # defect 5 (the run's half): every parameter that applies is in the row, at its value
    row = run(dict(gpus=4, tokens_per_gpu=64))
    for k, p in RUN_PARAMETERS.items():
        if p.models is None or "flow" in p.models:
            assert k in row and row[k] is not None, k
    assert row["fabric"] == "flow" and row["tolerance"] == 1e-3
    assert row["link_gbps"] == 400.0 and row["latency_us"] == 0.5  # the builder's defaults
    assert row["experts"] == 8 and row["hidden"] == 4096  # the preset's fields
    assert "mtu_bytes" not in row and "ocs_mode" not in row  # other models' settings
    pk = run(dict(gpus=4, tokens_per_gpu=64, fabric="packet"))
    assert pk["mtu_bytes"] == 4096 and "tolerance" not in pk


def test_spec_is_parsed_once_and_frozen():
    s = RunSpec.parse(OCS | dict(scheduler="greedy:4", overlap="false"))
    assert isinstance(s.model, CircuitSpec) and s.model.overlap is False
    assert s.model.scheduler.canon == "greedy:4:max"
    with pytest.raises(Exception):
        s.seed = 3  # frozen
    p = RunSpec.parse(dict(fabric="packet", mtu_bytes="1024"))
    assert isinstance(p.model, PacketSpec) and p.model.mtu_bytes == 1024
    with pytest.raises(ConfigError, match="mtu_bytes=1024 is a packet-model parameter"):
        RunSpec.parse(dict(mtu_bytes=1024))
    with pytest.raises(ConfigError, match="fabric='circuit' needs a circuit scheduler"):
        RunSpec.parse(dict(fabric="circuit"))


def test_every_run_parameter_is_a_cli_option():
    r = CliRunner().invoke(main, ["run", "--help"])
    for k in RUN_PARAMETERS:
        assert "--" + k.replace("_", "-") in r.output, k


def test_bytes_delivered_comes_from_the_engine(monkeypatch):
    # a model broken on purpose (every flow carries half its bytes) shows in bytes_delivered,
    # not in bytes_total, which is what the layer had to move
    from netsim.devices.network import Network

    good = run(dict(gpus=4, tokens_per_gpu=64))
    assert good["bytes_delivered"] == pytest.approx(good["bytes_total"], rel=1e-12)
    orig = Network.send

    def half(self, src, dst, nbytes, *args, **kw):
        return orig(self, src, dst, np.asarray(nbytes) * 0.5, *args, **kw)

    monkeypatch.setattr(Network, "send", half)
    bad = run(dict(gpus=4, tokens_per_gpu=64))
    assert bad["bytes_total"] == good["bytes_total"]
    assert bad["bytes_delivered"] == pytest.approx(0.5 * good["bytes_total"], rel=1e-12)


@pytest.mark.filterwarnings("ignore:invalid value")
def test_packet_bytes_delivered_counts_only_finished_flows(monkeypatch, tmp_path):
    from netsim.engines import packet

    m = tmp_path / "m.npy"
    np.save(m, np.full((4, 4), 1e5))
    good = run(dict(gpus=4, traffic=str(m), fabric="packet"))
    assert good["bytes_delivered"] == pytest.approx(good["bytes_total"], rel=1e-12)
    orig = packet.simulate_packets

    def lose_one(*a, **kw):
        r = orig(*a, **kw)
        r.finish_s[0] = np.nan  # the kernel "never delivered" flow 0
        return r

    monkeypatch.setattr(packet, "simulate_packets", lose_one)
    bad = run(dict(gpus=4, traffic=str(m), fabric="packet"))
    assert bad["bytes_delivered"] == pytest.approx(good["bytes_delivered"] - 1e5)


def _internal_imports(path: Path, pkg_root: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level:
            base = ".".join(_modname(path, pkg_root).split(".")[:-node.level])
            names = [f"{base}.{node.module}" if node.module else base]
            names += [f"{n}.{a.name}" for n in names[:1] for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        out.update(n for n in names if n.startswith("netsim"))
    return out


def _modname(path: Path, pkg_root: Path) -> str:
    rel = path.relative_to(pkg_root).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def test_no_import_cycle_in_the_library():
    # defect 8: scenario <-> mitigation.runner <-> ocs_layer <-> workload.diagnosis; imports
    # inside functions count too
    pkg = ROOT / "netsim"
    mods = {_modname(p, ROOT): p for p in pkg.rglob("*.py")}
    graph = {}
    for m, p in mods.items():
        deps = {d for d in _internal_imports(p, ROOT) if d in mods and d != m}
        graph[m] = deps - {"netsim"}  # the package face re-exports lazily
    state: dict[str, int] = {}

    def visit(m, stack):
        state[m] = 1
        for d in graph[m]:
            if state.get(d) == 1:
                raise AssertionError(" -> ".join(stack[stack.index(d):] + [m, d]))
            if d not in state:
                visit(d, stack + [m])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [])


@pytest.mark.parametrize("params,msg", [
    (dict(gpus=-1), r"gpus=-1; expected a positive number of GPUs"),
    (dict(link_gbps=0.0), r"link_gbps=0.0; expected a positive link rate in Gbit/s"),
    (dict(topology="ocs_direct", gpus=4, scheduler="bvn", reconfig_us=float("nan")),
     r"reconfig_us=nan; expected a finite number >= 0"),
])
def test_bad_values_are_named_in_the_users_units(params, msg):
    with pytest.raises(ConfigError, match=msg):
        run(params)


def test_a_link_without_bandwidth_is_named_in_gbits():
    from netsim.errors import TopologyError
    from netsim.topology import Topology

    t = Topology("t")
    a, b = t.add_gpu(), t.add_switch()
    with pytest.raises(TopologyError, match=r"0 Gbit/s \(0.0 B/s\)"):
        t.add_link(a, b, 0.0)
