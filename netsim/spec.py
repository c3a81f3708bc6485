"""The typed run specification: every parameter of a run, parsed and checked once.

A run is written as a flat mapping of parameters (a sweep point, ``run(**params)``, the CLI's
options and ``--set KEY=VALUE``); :meth:`RunSpec.parse` turns it into a frozen :class:`RunSpec`,
and nothing below re-reads the mapping. Parameters come in three kinds:

* **run parameters** (:data:`RUN_PARAMETERS`): each has one default, one type, a unit where it
  has one, and a help line; the CLI's options are generated from this table;
* **topology parameters**: the arguments of the topology's ``build`` function (their defaults
  are the builder's);
* **MoE layer parameters**: the fields of :class:`netsim.workload.moe.MoELayer` (their defaults
  are the workload preset's values: ``--set experts=256`` retypes to ``int`` from the preset).

Settings that belong to one fabric model are fields of that model's sub-specification
(:class:`FlowSpec`, :class:`PacketSpec`, :class:`CircuitSpec`, :class:`AnalyticSpec`): a
setting the chosen model would ignore cannot be given (one error naming it and the fix).
:meth:`RunSpec.columns` gives the row's parameter columns: the effective value of every
parameter that applies to the run (defaults included). A column that is absent (null in a
dataset mixing models) is a parameter that does not apply to that row's model.

The fabric model: ``fabric`` is ``flow`` (default), ``packet`` or ``analytic``; a circuit
``scheduler`` other than ``ideal`` runs the ``circuit`` model (``fabric=circuit`` in the row).
``scheduler=ideal`` keeps the chosen model on the topology's congestion-free reference (its
circuits replaced by a non-blocking switch).
"""
from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Callable

from netsim.errors import ConfigError, UnknownNameError, plain
from netsim.namespec import parse_name_spec
from netsim.plugins import describe, resolve
from netsim.workload.moe import MoELayer

__all__ = ["Param", "RUN_PARAMETERS", "FlowSpec", "PacketSpec", "AnalyticSpec", "CircuitSpec",
           "ComputeSpec", "MitigationSpec", "RunSpec", "coerce", "FABRICS", "run_defaults",
           "check_aggregate"]

FABRICS = ("flow", "analytic", "packet", "circuit")


def _p(default, help: str, unit: str = "", choices: tuple | None = None):
    """A dataclass field carrying its help line, unit and choices (the CLI and docs read them)."""
    return field(default=default, metadata={"help": help, "unit": unit, "choices": choices})


#: parameter-name suffix -> the unit a number of it is in (for the range check of :func:`coerce`)
UNIT_SUFFIXES = {"_gbps": "Gbit/s", "_us": "microseconds", "_ns": "nanoseconds",
                 "_ms": "milliseconds", "_kib": "KiB", "_bytes": "bytes"}


def coerce(name: str, value, default):
    """``value`` (often a CLI string) converted to the type of ``default``; ConfigError if not.

    A float is never NaN; a number whose name carries a unit (:data:`UNIT_SUFFIXES`) is finite,
    and >= 0 unless its default is negative (a sentinel such as "the model's own")."""
    out = _convert(name, value, default)
    if isinstance(out, (int, float)) and not isinstance(out, (bool, str)) and \
            isinstance(default, (int, float)) and not isinstance(default, bool):
        unit = next((u for suf, u in UNIT_SUFFIXES.items() if name.endswith(suf)), None)
        if out != out or (unit and (math.isinf(out) or (out < 0 <= default))):
            want = f"a finite number >= 0 of {unit}" if unit and default >= 0 else \
                f"a finite number of {unit}" if unit else "a number, not NaN"
            raise ConfigError(f"{name}={out!r}; expected {want}")
    return out


def _convert(name: str, value, default):
    if default is None or value is None:
        return value
    typ = type(default)
    if isinstance(value, typ) and not (typ is int and isinstance(value, bool)):
        return value
    try:
        if typ is bool:
            if isinstance(value, str):
                low = value.strip().lower()
                if low in ("1", "true", "yes", "on"):
                    return True
                if low in ("0", "false", "no", "off"):
                    return False
                raise ValueError
            if isinstance(value, (int, float)) and value in (0, 1):
                return bool(value)
            raise ValueError
        if typ is int:
            if isinstance(value, bool):
                raise ValueError
            f = float(value)
            if f != int(f):
                raise ValueError
            return int(f)
        if typ is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if typ is str and not isinstance(value, str):
            raise ValueError
        return typ(value)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(
            f"parameter {name}={plain(value)!r}: expected {typ.__name__} (like its default"
            f" {default!r})"
        ) from None


def _check_choice(name: str, value: str, choices: tuple) -> str:
    if value not in choices:
        raise ConfigError(f"{name}={value!r}; expected one of {', '.join(map(repr, choices))}")
    return value


#: each fabric model's aggregations (``aggregate``, :mod:`netsim.aggregate`) besides "none"
AGGREGATIONS = {"flow": ("server", "block"), "analytic": ("block",)}


def _check_aggregate(value: str, model: str) -> None:
    """``aggregate`` of ``model``: "none" or one of its own aggregations; another model's is
    named."""
    own = AGGREGATIONS[model]
    takes = " or ".join(repr(a) for a in own + ("none",))
    for other, aggs in AGGREGATIONS.items():
        if value in aggs and value not in own:
            raise ConfigError(f"aggregate={value!r} is the {other} model's (fabric={other}); the"
                              f" {model} model takes aggregate={takes}")
    _check_choice("aggregate", value, ("none",) + own)


# ---- the fabric models' own settings -------------------------------------------------------------

@dataclass(frozen=True)
class FlowSpec:
    """Max-min fair flow model (:mod:`netsim.fabric.flow`)."""

    tolerance: float = _p(1e-3, "flow model: merge completions within tolerance x t (0 = exact)",
                          "1 (relative)")
    solver: str = _p("auto", "flow model: full recomputes every rate at every event;"
                     " incremental (tolerance > 0) refills only the bottleneck levels a"
                     " completion can change; auto: incremental while it refills few flows when"
                     " run to completion with no control plane or in a dispatch-only layer,"
                     " else full",
                     choices=("auto", "full", "incremental"))
    aggregate: str = _p("none", "flow model: 'block' runs each independent block of EP groups"
                        " on its own GPU-level block fabric; 'server' also makes one flow per"
                        " server pair (netsim.aggregate; topology=cluster)",
                        choices=("none",) + AGGREGATIONS["flow"])

    def __post_init__(self):
        if not (0.0 <= self.tolerance < 0.5):
            raise ConfigError(f"tolerance={self.tolerance!r}; expected 0 <= tolerance < 0.5")
        _check_choice("solver", self.solver, ("auto", "full", "incremental"))
        _check_aggregate(self.aggregate, "flow")


@dataclass(frozen=True)
class AnalyticSpec:
    """Closed form: the congestion-free min-cut bound of every phase (no simulation;
    :mod:`netsim.engines.analytic`)."""

    aggregate: str = _p("none", "analytic model: 'block' takes each independent block of EP"
                        " groups' bounds on its own GPU-level block fabric (netsim.aggregate;"
                        " topology=cluster)", choices=("none",) + AGGREGATIONS["analytic"])

    def __post_init__(self):
        _check_aggregate(self.aggregate, "analytic")


@dataclass(frozen=True)
class PacketSpec:
    """Packet model (:mod:`netsim.fabric.packet`)."""

    mtu_bytes: int = _p(4096, "packet model: payload bytes per packet", "B")
    header_bytes: int = _p(0, "packet model: header bytes per packet", "B")
    multipath: str = _p("ecmp", "packet model: one path per flow, or per-packet spraying",
                        choices=("ecmp", "spray"))
    buffer_kib: float = _p(0.0, "packet model: buffer per link (0 = unbounded)", "KiB")
    on_full: str = _p("pfc", "packet model: a full buffer pauses the sender or drops",
                      choices=("pfc", "drop"))
    trace_links: str = _p("", "packet model: write per-link time series to FILE.parquet")
    trace_bin_us: float = _p(10.0, "packet model: time-series bin", "us")

    def __post_init__(self):
        self.config(0)  # one check, in PacketConfig.validate

    def config(self, seed: int):
        """The kernel's :class:`netsim.fabric.packet.PacketConfig` (validated)."""
        from netsim.fabric.packet import PacketConfig

        cfg = PacketConfig(mtu_bytes=self.mtu_bytes, header_bytes=self.header_bytes,
                           multipath=self.multipath, buffer_kib=self.buffer_kib,
                           on_full=self.on_full, seed=int(seed) % (2**31),
                           trace_bin_s=self.trace_bin_us * 1e-6 if self.trace_links else 0.0)
        cfg.validate()
        return cfg


@dataclass(frozen=True)
class CircuitSpec:
    """Circuit-scheduled OCS layer (:mod:`netsim.engines.circuit`): the schedule runs on the flow
    model's circuit links."""

    ocs_mode: str = _p("all_stop", "circuit model: reconfigure every port, or only changed ones",
                       choices=("all_stop", "not_all_stop"))
    overlap: bool = _p(True, "circuit model: compute batches as matchings deliver them (False:"
                       " a strict barrier, combine after every GPU's compute)")
    batching: str = _p("merge", "circuit model: batches arriving while a GPU is busy merge into"
                       " one launch, or each matching's batch is its own launch",
                       choices=("merge", "per_matching"))
    traffic_combine: bool = _p(False, "circuit model, --traffic: send the transpose back"
                               " (combine) after a compute phase")
    traffic_compute_us: float = _p(0.0, "circuit model, --traffic with traffic_combine: compute"
                                   " time of the GPU receiving the most bytes (linear in bytes)",
                                   "us")
    tolerance: float = _p(1e-3, "flow model: merge completions within tolerance x t (0 = exact)",
                          "1 (relative)")
    scheduler: Any = field(default=None, compare=False, metadata={"internal": True})

    def __post_init__(self):
        _check_choice("ocs_mode", self.ocs_mode, ("all_stop", "not_all_stop"))
        _check_choice("batching", self.batching, ("merge", "per_matching"))
        if not (self.traffic_compute_us >= 0 and self.traffic_compute_us < float("inf")):
            raise ConfigError(f"traffic_compute_us={self.traffic_compute_us!r}; expected a"
                              " finite number of microseconds >= 0")
        FlowSpec(self.tolerance)


MODEL_SPECS = {"flow": FlowSpec, "analytic": AnalyticSpec, "packet": PacketSpec,
               "circuit": CircuitSpec}


# ---- compute and mitigations --------------------------------------------------------------------

@dataclass(frozen=True)
class ComputeSpec:
    """The GPUs' expert-compute model (:mod:`netsim.workload.calibration`)."""

    gpu: str = _p("h100-roofline", "compute model (h100-roofline, h200-measured, ...)")
    batch_overhead_us: float = _p(-1.0, "roofline models: fixed cost per expert batch"
                                  " (-1 = the model's own)", "us")

    def __post_init__(self):
        if self.batch_overhead_us >= 0 and not self.gpu.endswith("roofline"):
            raise ConfigError(
                f"batch_overhead_us applies to roofline compute models; gpu={self.gpu!r}")
        if not (self.batch_overhead_us == -1.0 or self.batch_overhead_us >= 0) or \
                math.isnan(self.batch_overhead_us):
            raise ConfigError(f"batch_overhead_us={self.batch_overhead_us!r}; expected >= 0"
                              " (or -1 for the model's own)")


@dataclass(frozen=True)
class MitigationSpec:
    """Multi-iteration runs and routing-imbalance mitigations (:mod:`netsim.mitigation`)."""

    iterations: int = _p(0, "successive layers with the routing's drift (0: one layer)", "count")
    sample_placement: str = _p("none", "move micro-batches to balance the next iteration",
                               choices=("none", "predictive", "oracle"))
    relayout: str = _p("none", "expert relayout: none | static[:SLOTS] | eplb:R[:SLOTS]")
    collective: str = _p("direct", "all-to-all: direct | hierarchical | hierarchical:nodedup |"
                         " deepep_normal | deepep_ll (docs/deepep.md)")
    rank_mapping: str = _p("identity", "map EP ranks onto the fabric",
                           choices=("identity", "ep_aware"))
    ll_max_tokens: int = _p(0, "deepep_ll: tokens a rank its fixed buffers hold (DeepEP's"
                            " num_max_dispatch_tokens_per_rank; 0: tokens_per_gpu)", "tokens")

    def __post_init__(self):
        if self.iterations < 0:
            raise ConfigError(f"iterations={self.iterations!r}; expected a non-negative integer")
        if self.ll_max_tokens < 0:
            raise ConfigError(f"ll_max_tokens={self.ll_max_tokens!r}; expected a non-negative"
                              " number of tokens (0: tokens_per_gpu)")
        if self.ll_max_tokens and self.collective != "deepep_ll":
            raise ConfigError(f"ll_max_tokens={self.ll_max_tokens} sizes deepep_ll's buffers;"
                              f" collective={self.collective!r}: set collective=deepep_ll or"
                              " drop ll_max_tokens")
        _check_choice("sample_placement", self.sample_placement, ("none", "predictive", "oracle"))
        _check_choice("rank_mapping", self.rank_mapping, ("identity", "ep_aware"))
        _check_choice("collective", self.collective,
                      ("direct", "hierarchical", "hierarchical:nodedup", "deepep_normal",
                       "deepep_ll"))
        self.relayout_parts  # noqa: B018 -- validates

    @property
    def relayout_parts(self) -> tuple[str, int, int | None]:
        """``(kind, period R, slots)`` of ``relayout`` (period 0 unless eplb; slots None: auto)."""
        usage = "expected 'none', 'static[:SLOTS]' or 'eplb:R[:SLOTS]' (R, SLOTS positive integers)"
        ns = parse_name_spec(self.relayout, "relayout")
        try:
            if ns.name == "none":
                ns.at_most(0, usage)
                return "none", 0, None
            if ns.name == "static":
                ns.at_most(1, usage)
                return "static", 0, ns.int_arg(0, "SLOTS")
            if ns.name == "eplb" and len(ns.args) >= 1:
                ns.at_most(2, usage)
                return "eplb", ns.int_arg(0, "R"), ns.int_arg(1, "SLOTS")
        except ConfigError:
            pass
        raise ConfigError(f"relayout={self.relayout!r}; {usage}")

    @property
    def active(self) -> bool:
        """Whether the run iterates or mitigates (any non-default setting)."""
        return self != MitigationSpec()

    @property
    def dedup(self) -> bool:
        return self.collective == "hierarchical"


# ---- the run-level parameter table ---------------------------------------------------------------

@dataclass(frozen=True)
class Param:
    """One run parameter: its default, help line, unit, choices and the models it applies to
    (``models`` None: every run)."""

    name: str
    default: Any
    help: str
    unit: str = ""
    choices: tuple | None = None
    models: tuple[str, ...] | None = None


_TOP = (
    Param("topology", "crossbar", "topology NAME (netsim list topologies), or path/to/module.py[:func]"),
    Param("workload", "mixtral_8x7b", "MoE layer preset (netsim list workloads)"),
    Param("routing", "uniform", "uniform | zipf:S | counts:FILE | ... (netsim list routing)"),
    Param("fabric", "flow", "fabric model", choices=("flow", "analytic", "packet", "circuit")),
    Param("scheduler", "", "OCS circuit scheduler: bvn, greedy:K, ... (netsim list schedulers);"
          " ideal = the congestion-free reference"),
    Param("traffic", "", "GPU x GPU byte matrix (.npy): dispatch only, no MoE model"),
    Param("seed", 0, "seed of every random draw of the run"),
)


def _params_of(cls, models) -> list[Param]:
    out = []
    for f in fields(cls):
        if f.metadata.get("internal"):
            continue
        out.append(Param(f.name, f.default, f.metadata.get("help", ""), f.metadata.get("unit", ""),
                         f.metadata.get("choices"), models))
    return out


def _build_table() -> dict[str, Param]:
    table = {p.name: p for p in _TOP}
    for p in _params_of(ComputeSpec, None) + _params_of(MitigationSpec, None):
        table[p.name] = p
    for model, cls in MODEL_SPECS.items():
        for p in _params_of(cls, (model,)):
            if p.name in table:  # shared by several models (tolerance, aggregate)
                old = table[p.name]
                choices = old.choices
                if p.choices:  # each model's own choices (aggregate: server, block)
                    choices = tuple(old.choices or ()) + tuple(
                        c for c in p.choices if c not in (old.choices or ()))
                help_ = old.help if p.help in old.help else f"{old.help}; {p.help}"
                table[p.name] = Param(old.name, old.default, help_, old.unit, choices,
                                      old.models + (model,))
            else:
                table[p.name] = p
    return table


#: every run-level parameter: name -> :class:`Param` (the CLI's options come from here)
RUN_PARAMETERS: dict[str, Param] = _build_table()


def run_defaults() -> dict[str, Any]:
    """Run-level parameter -> default (for readers of datasets written before a column existed)."""
    return {k: p.default for k, p in RUN_PARAMETERS.items()}


# ---- the run specification -----------------------------------------------------------------------

@dataclass(frozen=True)
class RunSpec:
    """One run, parsed (see the module docstring). Build it with :meth:`parse`."""

    topology: str
    topology_params: tuple  # ((name, effective value), ...) of the builder's parameters
    workload: str
    routing: str
    traffic: str
    seed: int
    scheduler: str
    model: FlowSpec | PacketSpec | AnalyticSpec | CircuitSpec
    compute: ComputeSpec
    mitigation: MitigationSpec
    layer: Any = None  # MoELayer (None with traffic)
    topology_given: tuple = ()  # names the user set
    build_topology: Callable = field(default=None, compare=False, repr=False)
    routing_source: Any = field(default=None, compare=False, repr=False)

    @property
    def fabric(self) -> str:
        for name, cls in MODEL_SPECS.items():
            if type(self.model) is cls:
                return name
        raise AssertionError(self.model)

    @property
    def topo_kwargs(self) -> dict:
        return dict(self.topology_params)

    @property
    def combine(self) -> bool:
        """Whether the layer has a combine phase (not for a raw ``traffic`` matrix)."""
        return self.layer is not None

    def columns(self) -> dict:
        """The row's parameter columns: every parameter that applies, at its effective value."""
        out: dict[str, Any] = {}
        fab = self.fabric
        for name, p in RUN_PARAMETERS.items():
            if p.models is not None and fab not in p.models:
                continue
            out[name] = self._value(name)
        out.update(self.topology_params)
        if self.layer is not None:
            for f in fields(self.layer):
                if f.name not in ("name", "source"):
                    out[f.name] = getattr(self.layer, f.name)
        return out

    def _value(self, name: str):
        if name == "fabric":
            return self.fabric
        if name in RunSpec.__dataclass_fields__:
            return getattr(self, name)
        for sub in (self.model, self.compute, self.mitigation):
            if name in getattr(type(sub), "__dataclass_fields__", {}):
                return getattr(sub, name)
        return getattr(self, name)

    @classmethod
    def parse(cls, params: dict | None = None, **kw) -> "RunSpec":
        """Parse a flat parameter mapping (see the module docstring); raise ConfigError."""
        return _parse(dict(params or {}) | kw)


def _parse(params: dict) -> RunSpec:
    run: dict[str, Any] = {}
    rest: dict[str, Any] = {}
    for k, v in params.items():
        if not isinstance(k, str):
            raise ConfigError(f"parameter name {k!r}: expected a string")
        if k in RUN_PARAMETERS:
            run[k] = coerce(k, v, RUN_PARAMETERS[k].default)
        else:
            rest[k] = v
    g = {k: run.get(k, RUN_PARAMETERS[k].default) for k in RUN_PARAMETERS}
    for k in ("topology", "workload", "routing", "gpu"):
        if not str(g[k]).strip():
            raise ConfigError(f"{k}={g[k]!r}; expected a name")
    if g["fabric"] not in FABRICS:
        raise UnknownNameError(f"unknown fabric {g['fabric']!r}; expected one of {FABRICS}")
    seed = g["seed"]
    if seed < 0:
        raise ConfigError(f"seed={seed!r}; expected a non-negative integer")

    # topology and layer parameters, typed from their defaults
    _, topo_fn = resolve("topologies", str(g["topology"]))
    topo_defaults = {n: d for n, d, _ in describe(topo_fn)}
    layer = None
    wl_fn = None
    if not g["traffic"]:
        _, wl_fn = resolve("workloads", str(g["workload"]))
        preset = wl_fn()
        if not isinstance(preset, MoELayer):
            raise ConfigError(f"workload {g['workload']!r}: build() returned"
                              f" {type(preset).__name__}; expected a netsim MoELayer")
        layer_defaults = {f.name: getattr(preset, f.name) for f in fields(MoELayer)
                          if f.name not in ("name", "source")}
    else:
        layer_defaults = {f.name: f.default for f in fields(MoELayer)
                          if f.name not in ("name", "source")}
    topo_kw, wl_kw = {}, {}
    for k, v in rest.items():
        if k in topo_defaults:
            topo_kw[k] = coerce(k, v, topo_defaults[k])
        elif k in layer_defaults:
            d = layer_defaults[k]
            wl_kw[k] = coerce(k, v, None if d is MISSING else d)
        else:
            raise ConfigError(
                f"unknown parameter {k!r}; topology {g['topology']!r} takes"
                f" {sorted(topo_defaults)}, the MoE layer takes {sorted(layer_defaults)},"
                f" and runs take {sorted(RUN_PARAMETERS)}")
    if g["traffic"] and wl_kw:
        raise ConfigError(f"--traffic bypasses the MoE model; drop workload parameters {sorted(wl_kw)}")
    if not g["traffic"]:
        layer = preset.with_params(**wl_kw) if wl_kw else preset

    # the fabric model and its own settings
    sched = str(g["scheduler"]).strip()
    sched_spec = None
    fabric = g["fabric"]
    if sched:
        from netsim.schedule import parse_scheduler

        sched_spec = parse_scheduler(sched)
        if sched_spec.name != "ideal":
            if fabric not in ("flow", "circuit"):
                raise ConfigError(
                    f"fabric={fabric!r} with scheduler={sched!r}: circuit-scheduled layers run on"
                    " the circuit model (a circuit is a dedicated one-hop link of the flow model);"
                    " drop fabric, or use scheduler='ideal' for the congestion-free reference")
            fabric = "circuit"
    if fabric == "circuit" and sched_spec is None:
        raise ConfigError("fabric='circuit' needs a circuit scheduler: set scheduler (netsim list"
                          " schedulers)")
    if fabric == "circuit" and sched_spec.name == "ideal":
        raise ConfigError("scheduler='ideal' is the congestion-free reference, not a circuit"
                          " schedule; drop fabric='circuit'")
    for k in run:
        p = RUN_PARAMETERS[k]
        if p.models is not None and fabric not in p.models and run[k] != p.default:
            what = {"packet": "a packet-model parameter", "circuit": "a circuit-model setting"}
            kind = what.get(p.models[0], f"a setting of the {'/'.join(p.models)} model")
            if p.models == ("flow", "circuit"):
                kind = "a flow-model setting"
            fix = {"packet": "add fabric='packet'", "circuit": "set scheduler (netsim list"
                   " schedulers)"}.get(p.models[0], "use fabric='flow'")
            raise ConfigError(f"{k}={run[k]!r} is {kind} (fabric={fabric!r},"
                              f" scheduler={sched!r}); {fix} or drop it")
    model_cls = MODEL_SPECS[fabric]
    model_kw = {f.name: run[f.name] for f in fields(model_cls) if f.name in run}
    if fabric == "circuit":
        model_kw["scheduler"] = sched_spec
    model = model_cls(**model_kw)
    if "reconfig_us" in topo_kw and not sched and topo_kw["reconfig_us"] != topo_defaults.get(
            "reconfig_us"):
        raise ConfigError(f"reconfig_us={topo_kw['reconfig_us']!r} applies to circuit-scheduled"
                          " runs only (the fixed matching never reconfigures); set scheduler"
                          " (netsim list schedulers) or drop it")

    compute = ComputeSpec(**{f.name: run[f.name] for f in fields(ComputeSpec) if f.name in run})
    mitigation = MitigationSpec(**{f.name: (run[f.name].strip().lower()
                                            if isinstance(run[f.name], str) else run[f.name])
                                   for f in fields(MitigationSpec) if f.name in run})
    if mitigation.active:
        _check_mitigation(mitigation, g, fabric, model)

    routing_source = None
    if not g["traffic"]:
        from netsim.workload.routing import parse_routing

        routing_source = parse_routing(str(g["routing"]))
    eff = {n: topo_kw.get(n, d) for n, d in topo_defaults.items()}
    spec = RunSpec(
        topology=str(g["topology"]), topology_params=tuple(eff.items()),
        workload=str(g["workload"]), routing=str(g["routing"]), traffic=str(g["traffic"]),
        seed=int(seed), scheduler=sched, model=model, compute=compute, mitigation=mitigation,
        layer=layer, topology_given=tuple(sorted(topo_kw)), build_topology=topo_fn,
        routing_source=routing_source)
    if getattr(model, "aggregate", "none") != "none":
        check_aggregate(spec)  # one ConfigError where aggregation does not apply
    return spec


def check_aggregate(spec: RunSpec) -> dict:
    """Refuse an aggregated run (flow ``aggregate=server`` or ``block``, analytic
    ``aggregate=block``: :mod:`netsim.aggregate`) that cannot be aggregated (one ConfigError);
    returns the topology's block (its ``aggregation_block``)."""
    import sys

    agg = f"aggregate={spec.model.aggregate}"
    mod = sys.modules.get(getattr(spec.build_topology, "__module__", ""), None)
    hook = getattr(mod, "aggregation_block", None)
    if hook is None:
        raise ConfigError(f"{agg}: topology {spec.topology!r} does not say how to"
                          " split it into independent blocks (no aggregation_block); use"
                          " topology=cluster or aggregate=none")
    if spec.traffic:
        raise ConfigError(f"{agg} aggregates MoE layers; drop traffic="
                          f"{spec.traffic!r} or aggregate")
    if spec.mitigation.active:
        raise ConfigError(f"{agg} runs one direct all-to-all layer; drop iterations,"
                          " mitigations and collectives, or aggregate")
    layer = spec.layer
    if layer.per_token_routing:
        raise ConfigError(f"{agg} draws per-GPU expert counts; dispatcher="
                          f"{layer.dispatcher!r} / max_nodes={layer.max_nodes} need per-token"
                          " routing: use dispatcher=pairs and max_nodes=0, or aggregate=none")
    if layer.combine_scale != 1.0:
        raise ConfigError(f"{agg} assumes a combine of the dispatch's bytes; drop"
                          " dispatch_dtype / combine_dtype, or aggregate")
    kw = spec.topo_kwargs
    if (spec.model.aggregate == "server" and float(kw.get("nvlink_gbps", 1.0)) <= 0
            and int(kw.get("gpus_per_server", 1)) > 1):
        raise ConfigError(f"{agg} needs NVLink inside servers (nvlink_gbps > 0):"
                          " without it intra-server bytes leave the server")
    return hook(layer.ep_size, **kw)


def _check_mitigation(m: MitigationSpec, g: dict, fabric: str, model) -> None:
    """What iterations and mitigations cannot be combined with (one error each)."""
    if g["traffic"]:
        raise ConfigError("iterations and mitigations need the MoE model; drop traffic="
                          f"{g['traffic']!r}")
    if g["scheduler"]:
        raise ConfigError(f"scheduler={g['scheduler']!r} cannot be combined with iterations or"
                          f" mitigations ({sorted(f.name for f in fields(MitigationSpec))}); drop"
                          " the scheduler or those settings")
    if isinstance(model, PacketSpec) and model.trace_links:
        raise ConfigError(f"trace_links={model.trace_links!r} writes one layer's series; with"
                          " iterations or mitigations each iteration would overwrite it: drop"
                          " one of them")
    kind, _, _ = m.relayout_parts
    extra = [(k, v) for k, v, on in (
        ("collective", m.collective, m.collective.startswith("hierarchical")),
        ("relayout", m.relayout, kind == "eplb"),
        ("sample_placement", m.sample_placement, m.sample_placement != "none")) if on]
    if extra and fabric != "flow":
        k, v = extra[0]
        raise ConfigError(
            f"{k}={v!r} moves bytes as extra flows (a two-phase relay, weight migrations or"
            f" micro-batch moves) that only the flow model carries; fabric={fabric!r} would"
            " leave them out: use fabric='flow'")
