"""The ``netsim`` command line: run, sweep, list (and report).

Every user error is a :class:`netsim.errors.NetsimError`: printed on one line, exit status 2.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from netsim.errors import ConfigError, NetsimError

HEADLINE = ("layer_s", "dispatch_s", "compute_s", "combine_s", "ideal_s", "ratio_to_ideal",
            "bytes_total", "max_gpu_recv_bytes", "mean_gpu_recv_bytes", "imbalance", "gini",
            "flows", "events", "sim_wall_s", "n_matchings", "fallback_matchings",
            "reconfig_total_s", "bubble_fraction", "leftover_bytes", "eps_bytes", "batches",
            "mean_batch_tokens", "packets", "max_queue_bytes", "total_layer_s")


class NetsimGroup(click.Group):
    """Turns NetsimError into one line on stderr and exit code 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except NetsimError as exc:
            click.echo(f"netsim: error: {exc}", err=True)
            sys.exit(2)


def _parse_sets(sets: tuple[str, ...]) -> dict:
    out = {}
    for s in sets:
        k, eq, v = s.partition("=")
        if not eq or not k.strip():
            raise ConfigError(f"--set {s!r}: expected KEY=VALUE")
        out[k.strip()] = v.strip()
    return out


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


@click.group(cls=NetsimGroup)
@click.version_option(package_name="netsim")
def main():
    """netsim: how long does one MoE layer take on this fabric, and why?"""


@main.command()
@click.option("--topology", default="crossbar", show_default=True,
              help="topology NAME in topologies/, or path/to/module.py[:func]")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="topology or workload parameter (repeatable), e.g. --set gpus=64")
@click.option("--workload", default="mixtral_8x7b", show_default=True, help="preset in workloads/")
@click.option("--routing", default="uniform", show_default=True,
              help="uniform | zipf:S | counts:FILE | ... (netsim list routing)")
@click.option("--fabric", default="flow", show_default=True,
              type=click.Choice(["flow", "analytic", "packet"]))
@click.option("--scheduler", default="", help="OCS circuit scheduler (ocs_direct, hybrid): bvn, greedy:K, ..."
              " (netsim list schedulers)")
@click.option("--ocs-mode", default="all_stop", show_default=True,
              type=click.Choice(["all_stop", "not_all_stop"]))
@click.option("--overlap/--no-overlap", default=True, show_default=True,
              help="OCS runs: compute batches as matchings deliver them")
@click.option("--iterations", default=0, show_default=True, type=int,
              help="successive layers with the routing's drift (0: one layer)")
@click.option("--trace-links", default="", metavar="FILE.parquet",
              help="packet fabric: per-link time series (link, time bin, bytes, queue depth)")
@click.option("--gpu", default="h100-roofline", show_default=True, help="compute model")
@click.option("--traffic", default="", help="GPU x GPU byte matrix (.npy): dispatch only, no MoE model")
@click.option("--tolerance", default=1e-3, show_default=True, type=float,
              help="flow model: merge completions within tolerance x t (0 = exact)")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--json", "as_json", is_flag=True, help="print the row as JSON")
@click.option("--out", type=click.Path(dir_okay=False), help="write the row to FILE.parquet")
def run(topology, sets, workload, routing, fabric, scheduler, ocs_mode, overlap, iterations,
        trace_links, gpu, traffic, tolerance, seed, as_json, out):
    """Simulate one MoE layer and print its metrics."""
    from netsim.scenario import run as run_scenario

    params = {"topology": topology, "workload": workload, "routing": routing, "fabric": fabric,
              "gpu": gpu, "seed": seed, "tolerance": tolerance}
    if scheduler:
        params |= {"scheduler": scheduler, "ocs_mode": ocs_mode, "overlap": overlap}
    if iterations:
        params["iterations"] = iterations
    if trace_links:
        if fabric != "packet":
            raise ConfigError("--trace-links needs --fabric packet")
        params["trace_links"] = trace_links
    if traffic:
        params["traffic"] = traffic
    params |= _parse_sets(sets)
    if out:
        from netsim.experiment.sweep import check_out_dir

        check_out_dir(Path(out).resolve().parent)
    row = run_scenario(params)
    if out:
        from netsim.experiment.sweep import git_commit, write_rows
        from netsim.scenario import UNITS

        row_out = row | {"status": "ok", "error": ""}
        try:
            write_rows([row_out], Path(out), {"netsim_version": row["netsim_version"],
                                              "git_commit": git_commit(), "experiment": "run",
                                              "units": UNITS})
        except OSError as exc:
            raise ConfigError(f"--out {out!r} is not writable: {exc}") from None
    if as_json:
        click.echo(json.dumps(row, default=str))
        return
    for k in HEADLINE:
        if k in row and row[k] is not None and not (isinstance(row[k], float) and row[k] != row[k]):
            click.echo(f"{k:>20}  {_fmt(row[k])}")


@main.command()
@click.argument("experiment")
@click.option("--out", default="results", show_default=True, type=click.Path(file_okay=False))
@click.option("--jobs", default=None, type=int,
              help="worker processes (local, default 1); tasks in flight (ray, default: its CPUs)")
@click.option("--backend", default="local", show_default=True, type=click.Choice(["local", "ray"]),
              help="local processes, or a Ray cluster")
@click.option("--address", default=None, metavar="HOST:PORT",
              help="Ray cluster to join (--backend ray; default: RAY_ADDRESS or a new local one)")
@click.option("--timeout", default=None, type=float, metavar="SECONDS",
              help="stop a point after this long and store it as status=timeout")
@click.option("--retry-failed", is_flag=True, help="rerun points stored as error or timeout")
@click.option("--compact", is_flag=True, help="merge the part files when the sweep is done")
@click.option("--quiet", is_flag=True, help="no progress bar (the summary line is still printed)")
def sweep(experiment, out, jobs, backend, address, timeout, retry_failed, compact, quiet):
    """Run every point of EXPERIMENT (experiments/NAME.py or a path) into OUT/NAME/ as Parquet.

    Points already in OUT are skipped (resume); Ctrl-C keeps every finished point."""
    from netsim.experiment.sweep import run_sweep, summary_line

    if jobs is not None and jobs < 1:
        raise ConfigError(f"--jobs {jobs}: expected a positive integer")
    if timeout is not None and timeout <= 0:
        raise ConfigError(f"--timeout {timeout}: expected a positive number of seconds")
    if address and backend != "ray":
        raise ConfigError(f"--address {address!r} needs --backend ray")
    try:
        s = run_sweep(experiment, out, jobs=jobs, quiet=quiet, backend=backend, address=address,
                      timeout=timeout, compact=compact, retry_failed=retry_failed)
    except KeyboardInterrupt as exc:
        s = getattr(exc, "summary", None)
        if s is None:
            raise
        click.echo(summary_line(s) + "; rerun to finish", err=True)
        sys.exit(130)
    click.echo(summary_line(s))


@main.command()
@click.argument("dataset", type=click.Path(exists=True, file_okay=False))
@click.option("--out", default="report", show_default=True, type=click.Path(file_okay=False),
              help="folder for the PNG figures and index.html")
@click.option("--metric", "metrics", multiple=True,
              help="metric column to plot (repeatable; default: the standard set)")
@click.option("--experiment", "experiment_file", default=None, type=click.Path(dir_okay=False),
              help="experiment module whose plots(df, outdir) adds figures (default: the one"
                   " recorded in the dataset)")
def report(dataset, out, metrics, experiment_file):
    """Draw the standard figures of DATASET (OUT/NAME or OUT) as PNG, with an index.html."""
    from netsim.report import make_report

    index = make_report(dataset, out, metrics=list(metrics) or None,
                        experiment_file=experiment_file)
    click.echo(f"report: {index}")


@main.command(name="list")
@click.argument("what", type=click.Choice(["topologies", "workloads", "experiments", "routing",
                                           "schedulers"]))
def list_(what):
    """Show the topologies, workloads, experiments, routing sources or schedulers that exist."""
    from netsim.plugins import _import_file, available, describe

    if what == "routing":
        from netsim.workload.routing import list_sources

        for k, v in list_sources().items():
            click.echo(f"{k:<12} {v}")
        return
    if what == "schedulers":
        try:
            from netsim.schedule import list_schedulers
        except ImportError:
            click.echo("(no schedulers installed)")
            return
        for k, v in list_schedulers().items():
            click.echo(f"{k:<12} {v}")
        return
    for name, path in available(what).items():
        mod = _import_file(path)
        doc = (mod.__doc__ or "").strip().split("\n")[0]
        click.echo(f"{name}: {doc}")
        if what == "experiments":
            grid = getattr(mod, "GRID", {})
            for k, v in grid.items():
                click.echo(f"    {k} = {v}")
            continue
        fn = getattr(mod, "build", None)
        if what == "workloads" and fn is not None:
            layer = fn()
            click.echo(f"    experts={layer.experts} top_k={layer.top_k} hidden={layer.hidden}"
                       f" ffn_hidden={layer.ffn_hidden} shared_experts={layer.shared_experts}"
                       f" tokens_per_gpu={layer.tokens_per_gpu}")
        elif fn is not None:
            params = ", ".join(f"{n}={d!r}" for n, d, _ in describe(fn))
            click.echo(f"    {params}")


if __name__ == "__main__":
    main()
