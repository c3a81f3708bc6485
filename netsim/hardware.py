"""Hardware presets: GPU servers' NVLink domains and NICs named instead of typed link speeds.

A shipped topology takes ``hardware=NAME`` (the GPU / NVLink domain: sets ``nvlink_gbps``) and
``nic=NAME`` (sets the NIC rate, ``nic_gbps`` or the topology's link rate, and the host PCIe link
behind the NIC where the topology has one). Giving a preset *and* the speed it sets is an error
(one would silently win). Bandwidths are per GPU and per direction, in the topology's units
(Gbit/s); the datasheets quote NVLink as bidirectional totals, halved here.

==============  ===========  ==================================================================
preset          per GPU,     source
                per dir.
==============  ===========  ==================================================================
``h800``        160 GB/s     NVIDIA H800 SXM5 datasheet: NVLink 400 GB/s bidirectional (200 GB/s
                             a direction); DeepEP's README measures "~160 GB/s NVLink maximum
                             bandwidth" on its H800s, which the preset uses (``datasheet_GBps``
                             keeps 200)
``h100``        450 GB/s     NVIDIA H100 Tensor Core GPU datasheet (SXM5): NVLink 4, 900 GB/s
``h200``        450 GB/s     NVIDIA H200 Tensor Core GPU datasheet (SXM): NVLink 4, 900 GB/s
``b200``        900 GB/s     NVIDIA DGX B200 / HGX B200 datasheet: NVLink 5, 1.8 TB/s per GPU,
                             8 GPUs a server
``gb200_nvl72`` 900 GB/s     NVIDIA GB200 NVL72 datasheet: 72 Blackwell GPUs in one NVLink 5
                             domain, 1.8 TB/s per GPU (130 TB/s in all); use
                             ``gpus_per_server=72``
==============  ===========  ==================================================================

==========  ===========  ======================================================================
NIC         rate         source
==========  ===========  ======================================================================
``cx7``     400 Gb/s     NVIDIA ConnectX-7 datasheet: up to 400 Gb/s InfiniBand / Ethernet,
                         PCIe Gen5 x16 host interface (512 Gb/s raw)
``cx8``     800 Gb/s     NVIDIA ConnectX-8 SuperNIC datasheet: up to 800 Gb/s, PCIe Gen6 x16
                         host interface (1024 Gb/s raw)
==========  ===========  ======================================================================
"""
from __future__ import annotations

from dataclasses import dataclass

from netsim.errors import ConfigError, UnknownNameError

__all__ = ["GPUServer", "NIC", "GPUS", "NICS", "gpu_server", "nic", "resolve"]


@dataclass(frozen=True)
class GPUServer:
    """A GPU's NVLink domain: ``nvlink_GBps`` per GPU and direction (what the topology uses),
    ``datasheet_GBps`` the datasheet's per-direction figure, ``domain`` GPUs per NVLink domain."""

    name: str
    nvlink_GBps: float
    datasheet_GBps: float
    domain: int
    source: str

    @property
    def nvlink_gbps(self) -> float:
        """Gbit/s per direction (the topologies' unit)."""
        return self.nvlink_GBps * 8.0


@dataclass(frozen=True)
class NIC:
    """A NIC: ``gbps`` line rate per direction, ``pcie_gbps`` its host interface."""

    name: str
    gbps: float
    pcie_gbps: float
    source: str


GPUS: dict[str, GPUServer] = {g.name: g for g in (
    GPUServer("h800", 160.0, 200.0, 8,
              "NVIDIA H800 SXM5 datasheet (NVLink 400 GB/s bidirectional); ~160 GB/s achievable"
              " per DeepEP README (github.com/deepseek-ai/DeepEP)"),
    GPUServer("h100", 450.0, 450.0, 8,
              "NVIDIA H100 Tensor Core GPU datasheet, SXM5: NVLink 900 GB/s bidirectional"),
    GPUServer("h200", 450.0, 450.0, 8,
              "NVIDIA H200 Tensor Core GPU datasheet, SXM: NVLink 900 GB/s bidirectional"),
    GPUServer("b200", 900.0, 900.0, 8,
              "NVIDIA DGX B200 datasheet: NVLink 5, 1.8 TB/s bidirectional per GPU"),
    GPUServer("gb200_nvl72", 900.0, 900.0, 72,
              "NVIDIA GB200 NVL72 datasheet: 72 GPUs, NVLink 5 1.8 TB/s bidirectional per GPU"),
)}

NICS: dict[str, NIC] = {x.name: x for x in (
    NIC("cx7", 400.0, 512.0, "NVIDIA ConnectX-7 datasheet: 400 Gb/s, PCIe Gen5 x16"),
    NIC("cx8", 800.0, 1024.0, "NVIDIA ConnectX-8 SuperNIC datasheet: 800 Gb/s, PCIe Gen6 x16"),
)}


def _norm(name: str) -> str:
    return str(name).strip().lower().replace("-", "_")


def gpu_server(name: str) -> GPUServer:
    """The GPU preset ``name`` (UnknownNameError listing the presets)."""
    key = _norm(name)
    if key not in GPUS:
        raise UnknownNameError(f"unknown hardware {name!r}; expected one of {sorted(GPUS)}")
    return GPUS[key]


def nic(name: str) -> NIC:
    """The NIC preset ``name``."""
    key = _norm(name)
    if key not in NICS:
        raise UnknownNameError(f"unknown nic {name!r}; expected one of {sorted(NICS)}")
    return NICS[key]


def resolve(hardware: str, nic_name: str, given: dict, defaults: dict) -> dict:
    """The link speeds a topology builds with: ``given`` (the builder's arguments, e.g.
    ``{"nvlink_gbps": 3600.0, "nic_gbps": 400.0, "pcie_gbps": 512.0}``) with the presets'
    values put in. A preset and a non-default value of a speed it sets: ConfigError."""
    out = dict(given)

    def put(key, value, preset):
        if key not in out:
            return
        if out[key] != defaults[key]:
            raise ConfigError(f"{preset} sets {key}; {key}={out[key]!r} given too: drop one")
        out[key] = value

    if hardware:
        hw = gpu_server(hardware)
        if "nvlink_gbps" not in out:
            raise ConfigError(f"hardware={hardware!r}: this topology has no NVLink domain;"
                              f" expected a topology with nvlink_gbps (or drop hardware)")
        put("nvlink_gbps", hw.nvlink_gbps, f"hardware={hardware!r}")
    if nic_name:
        x = nic(nic_name)
        rate = "nic_gbps" if "nic_gbps" in out else "link_gbps"
        put(rate, x.gbps, f"nic={nic_name!r}")
        if "pcie_gbps" in out and out["pcie_gbps"] == defaults["pcie_gbps"]:
            out["pcie_gbps"] = max(out["pcie_gbps"], x.pcie_gbps)
    return out
