"""The ``netsim`` command line: run, sweep, list (and report).

Every user error is a :class:`netsim.errors.NetsimError`: printed on one line, exit status 2.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from netsim.errors import ConfigError, NetsimError

HEADLINE = ("layer_s", "dispatch_s", "compute_s", "combine_s", "serial_ideal_s", "ratio_to_serial_ideal",
            "bytes_total", "max_gpu_recv_bytes", "mean_gpu_recv_bytes", "imbalance", "gini",
            "flows", "events", "sim_wall_s", "n_matchings", "fallback_matchings",
            "reconfig_total_s", "bubble_fraction", "leftover_bytes", "eps_bytes", "batches",
            "mean_batch_tokens", "packets", "max_queue_bytes", "total_layer_s")


class NetsimGroup(click.Group):
    """Turns NetsimError into one line on stderr and exit code 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:  # a bad option or argument: one line too, exit 2
            where = exc.ctx.command_path if exc.ctx is not None else ctx.command_path
            click.echo(f"netsim: error: {exc.format_message()} (see '{where} --help')", err=True)
            sys.exit(2)
        except NetsimError as exc:
            click.echo(f"netsim: error: {exc}", err=True)
            sys.exit(2)
        except MemoryError as exc:  # past the size guard (netsim.prepare.check_size)
            click.echo(f"netsim: error: out of memory{': ' + str(exc) if str(exc) else ''}"
                       " (the run is larger than this machine; use fewer GPUs or tokens)",
                       err=True)
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


def _spec_params() -> list[click.Option]:
    """One ``--name`` option per run parameter of :data:`netsim.spec.RUN_PARAMETERS` (its
    default, help, unit and choices come from there; nothing is repeated here)."""
    from netsim.spec import RUN_PARAMETERS

    out = []
    for name, p in RUN_PARAMETERS.items():
        flag = "--" + name.replace("_", "-")
        unit = f" [{p.unit}]" if p.unit and not p.unit.startswith(("1", "count")) else ""
        models = f" (fabric={'|'.join(p.models)})" if p.models and len(p.models) < 4 else ""
        help_ = p.help + unit + models
        if isinstance(p.default, bool):
            out.append(click.Option([f"{flag}/--no-{name.replace('_', '-')}", name], default=None,
                                    help=f"{help_} [default: {'on' if p.default else 'off'}]"))
            continue
        typ = click.Choice(list(p.choices)) if p.choices else type(p.default)
        shown = f" [default: {p.default!r}]" if p.default != "" else ""
        out.append(click.Option([flag, name], default=None, type=typ, help=help_ + shown))
    return out


class SpecCommand(click.Command):
    """``netsim run``: its run-parameter options are made on first use (parsing or help), so
    that the other commands and ``--version`` do not import the specification (and numba)."""

    def get_params(self, ctx):
        if not getattr(self, "_spec_added", False):
            self.params.extend(_spec_params())
            self._spec_added = True
        return super().get_params(ctx)


@main.command(cls=SpecCommand)
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="topology or MoE layer parameter (repeatable), e.g. --set gpus=64")
@click.option("--json", "as_json", is_flag=True, help="print the row as JSON")
@click.option("--out", type=click.Path(dir_okay=False), help="write the row to FILE.parquet")
@click.option("--progress/--no-progress", "show_progress", default=None,
              help="a progress line on stderr: stage, simulated time, events, share of bytes"
                   " delivered [default: when stderr is a terminal]")
def run(sets, as_json, out, show_progress, **options):
    """Simulate one MoE layer and print its metrics.

    Every run parameter is an option; topology and MoE layer parameters are --set KEY=VALUE.
    Options left out take their one default (netsim.spec); a setting the chosen model would
    ignore is an error."""
    from netsim.kernels import compile_ahead
    from netsim.scenario import run_spec
    from netsim.spec import RunSpec

    params = {k: v for k, v in options.items() if v is not None}
    for k, v in _parse_sets(sets).items():
        if k in params:
            raise ConfigError(f"--set {k}={v}: {k} is also given as --{k.replace('_', '-')}")
        params[k] = v
    if out:
        from netsim.experiment.sweep import check_out_dir

        check_out_dir(Path(out).resolve().parent)
    spec = RunSpec.parse(params)
    compile_ahead(spec.fabric)  # a cold numba cache: the run's kernels in two processes
    if show_progress is None:
        show_progress = sys.stderr.isatty()
    if show_progress:
        from netsim import progress

        with progress.active(sys.stderr):
            row = run_spec(spec)
    else:
        row = run_spec(spec)
    if out:
        from netsim.columns import UNITS
        from netsim.experiment.sweep import git_commit, write_rows

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
@click.option("--compact/--no-compact", default=True, show_default=True,
              help="merge the part files into one compact.parquet per status at the end"
                   " (a dataset of thousands of points then reads in well under a second)")
@click.option("--quiet", is_flag=True, help="no progress bar (the summary line is still printed)")
def sweep(experiment, out, jobs, backend, address, timeout, retry_failed, compact, quiet):
    """Run every point of EXPERIMENT (experiments/NAME.py or a path) into OUT/NAME/ as Parquet.

    Points already in OUT are skipped (resume); Ctrl-C keeps every finished point (exit 130).
    Exit status 0: every point ok; 3: the dataset holds error or timeout rows (--retry-failed);
    2: bad input (a misspelt parameter or name in any point, checked before the first run)."""
    from netsim.experiment.sweep import EXIT_FAILED, run_sweep, summary_line

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
    if s.get("stored_failed"):
        sys.exit(EXIT_FAILED)  # docs/sweeps.md: exit status


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


@main.command()
@click.argument("model")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="trace file to write (.parquet or .npz)")
@click.option("--text", "text_files", multiple=True, metavar="FILE",
              help="real text: .txt (documents separated by blank lines) or .jsonl (a 'text'"
                   " field a line); repeatable")
@click.option("--mock", type=int, default=None, metavar="N",
              help="instead of text: N sequences of random token ids (the study's mock)")
@click.option("--seq-len", default=512, show_default=True, type=int,
              help="tokens per sequence (text is cut into pieces of this length)")
@click.option("--max-sequences", default=None, type=int, help="stop after this many sequences")
@click.option("--batch-size", default=8, show_default=True, type=int,
              help="sequences per forward pass")
@click.option("--seed", default=0, show_default=True, type=int, help="RNG seed of --mock")
@click.option("--tokenizer", default=None, metavar="FOLDER",
              help="tokenizer folder (default: MODEL's)")
@click.option("--device", default=None,
              help="cpu, cuda, cuda:N, or auto (device_map=auto; needs accelerate)"
                   " [default: cuda if available]")
@click.option("--dtype", default="auto", show_default=True,
              type=click.Choice(["auto", "float32", "bfloat16", "float16"]))
@click.option("--download", is_flag=True, help="allow MODEL to be a hub id fetched from the"
                                               " network (default: a local folder only)")
def capture(model, out, text_files, mock, seq_len, max_sequences, batch_size, seed, tokenizer,
            device, dtype, download):
    """Record the MoE routing of checkpoint MODEL (a Hugging Face folder) into a trace.

    Forward hooks on every router record each token's top-k experts and gate weights, on real
    text (--text) or random token ids (--mock N); the trace runs with --routing trace:OUT[:LAYER].
    Needs pip install 'netsim[capture]'."""
    from netsim.tools.capture import capture as run_capture

    path, trace = run_capture(model, out, text_files=text_files, mock=mock, seq_len=seq_len,
                              max_sequences=max_sequences, batch_size=batch_size, seed=seed,
                              tokenizer=tokenizer, device=device, dtype=dtype,
                              download=download)
    m = trace.meta["model"]
    n_tok = trace.meta["sequences"]["tokens"]
    click.echo(f"capture: {sum(n_tok)} tokens in {len(n_tok)} sequences x {len(m['moe_layers'])}"
               f" MoE layers ({m['n_experts']} experts, top-{m['top_k']}) of {model}"
               f" on {trace.meta['source']['kind']} -> {path}")
    click.echo(f"run it:  netsim run --routing trace:{path}:{m['moe_layers'][0]}"
               f" --set experts={m['n_experts']} --set top_k={m['top_k']}")
    click.echo(f"study:   NETSIM_ROUTING_TRACE={path} netsim sweep routing_study"
               f" --out results_{Path(path).stem}/   (every layer; docs/capture.md)")


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
