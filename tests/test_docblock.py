"""netsim.tools.docblock: the generated blocks that the benchmark scripts write into the README
and docs from a run's rows (--write) and compare with them (--check)."""
from __future__ import annotations

import pytest

from netsim.tools.docblock import replace_block, write_block

B, E = "<!-- t -->", "<!-- /t -->"


def test_replace_keeps_what_lies_outside_the_markers():
    doc = f"intro\n{B}\nold\nrows\n{E}\noutro {B} is not reread\n"
    new = replace_block(doc, B, E, "new", "doc.md")
    assert new == f"intro\n{B}\nnew\n{E}\noutro {B} is not reread\n"
    assert replace_block(new, B, E, "new") == new


@pytest.mark.parametrize("doc", ["no markers", f"{B} but no end", f"{E} then {B}"])
def test_a_missing_marker_names_the_file_and_the_markers(doc):
    with pytest.raises(SystemExit, match=r"doc\.md has no <!-- t --> \.\.\. <!-- /t --> block"):
        replace_block(doc, B, E, "x", "doc.md")


def test_check_reports_a_difference_and_writes_nothing(tmp_path, capsys):
    f = tmp_path / "doc.md"
    f.write_text(f"a\n{B}\nold\n{E}\nb\n")
    assert write_block(f, B, E, "new", check=True, what="the table") == 1
    assert "the table differs from the rows" in capsys.readouterr().out
    assert "old" in f.read_text()
    assert write_block(f, B, E, "new", check=False) == 0
    assert f.read_text() == f"a\n{B}\nnew\n{E}\nb\n"
    assert write_block(f, B, E, "new", check=True) == 0


#: the README blocks of bench_packet, bench_ocs_layer, bench_routing, bench_sweep, bench_startup
BLOCKS = [(f"<!-- {t} -->", f"<!-- /{t} -->") for t in
          ("bench-packet", "bench-ocs-layer", "bench-routing", "bench-sweep", "bench-startup")]


@pytest.mark.parametrize("begin,end", [*BLOCKS, ("<!-- bench-flow -->", "<!-- /bench-flow -->"),
                                       ("<!-- bench-schedule -->", "<!-- /bench-schedule -->"),
                                       ("<!-- peers -->", "<!-- /peers -->")])
def test_the_readme_blocks_are_where_the_scripts_write(begin, end):
    """Each README block the benchmark scripts write exists once and checks against its own
    content (the scripts' --check compares it with the rows instead)."""
    from pathlib import Path

    readme = Path(__file__).resolve().parents[1] / "README.md"
    text = readme.read_text()
    assert text.count(begin) == 1 and text.count(end) == 1
    inner = text.split(begin, 1)[1].split(end, 1)[0].strip("\n")
    assert write_block(readme, begin, end, inner, check=True) == 0


def test_bench_schedule_table_renders_rows_and_checks(tmp_path):
    """bench_schedule.py --out rows render as the README's table (--table), and --check fails
    when the file's block differs from them."""
    pd = pytest.importorskip("pandas")
    mod = _script("bench_schedule")
    rows = tmp_path / "rows.parquet"
    pd.DataFrame([dict(n=8, scheduler="greedy:8", wall_s=0.25, matchings=7, cleanup=0,
                       padded=float("nan"), total_over_ideal=1.0125, bubble=0.5,
                       wall_over_greedy8=1.0, traffic="zipf:1.2")]).to_parquet(rows)
    text = mod.table(str(rows))
    assert text.splitlines()[2] == "| 8 | zipf:1.2 | greedy:8 | 0.25 | 7 | 1.012 | 1.0 |"
    doc = tmp_path / "doc.md"
    doc.write_text(f"{mod.BEGIN}\nstale\n{mod.END}\n")
    assert write_block(doc, mod.BEGIN, mod.END, text, check=True) == 1
    write_block(doc, mod.BEGIN, mod.END, text, check=False)
    assert write_block(doc, mod.BEGIN, mod.END, text, check=True) == 0


def _script(name: str):
    """benchmarks/NAME.py, imported by path (the benchmarks are not a package)."""
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def _rows(tmp_path, name: str, rows: list[dict]) -> str:
    pd = pytest.importorskip("pandas")
    f = tmp_path / f"{name}.parquet"
    pd.DataFrame(rows).to_parquet(f, index=False)
    return str(f)


def _cli_round_trip(mod, rows: str, tmp_path, monkeypatch):
    """``--table ROWS --check DOC`` exits 1 on a stale block, ``--write`` puts ``table(ROWS)``
    between the script's markers, and ``--check`` then exits 0."""
    import sys

    doc = tmp_path / "doc.md"
    doc.write_text(f"before\n{mod.BEGIN}\nstale\n{mod.END}\nafter\n")
    for flag, code in (("--check", 1), ("--write", 0), ("--check", 0)):
        monkeypatch.setattr(sys, "argv", [mod.__name__, "--table", rows, flag, str(doc)])
        with pytest.raises(SystemExit) as exc:
            mod.main()
        assert exc.value.code == code, flag
    assert doc.read_text() == f"before\n{mod.BEGIN}\n{mod.table(rows)}\n{mod.END}\nafter\n"


def test_bench_packet_table_renders_rows(tmp_path, monkeypatch):
    mod = _script("bench_packet")
    row = dict(gpus=256, engine="lindley", multipath="ecmp", threads_asked=2, threads=2,
               flows=65280, packets=16711680, hops=98304000, merged=48168960, wall_s=1.5,
               rate=6.6e7, makespan_ms=5.35, flow_ms=5.0, peak_rss_mib=512.0,
               max_queue_kib=57123.0, bare_rate=2.2e8, ratio=0.3, diff_pct=7.0, order_ns=16.94,
               cap1=0.5, repeat=3, commit="0123456789abcdef")
    rows = _rows(tmp_path, "packet", [row, row | dict(threads=1, wall_s=2.25, ratio=0.2)])
    lines = mod.table(rows).splitlines()
    assert lines[2] == ("| 256 | lindley | 2 | 16,711,680 | 1.5 | 66 | 220 | 0.300 | 0.50 | 0.50 "
                        "| 1.0700 |")
    assert lines[3].startswith("| 256 | lindley | 1 | 16,711,680 | 2.25 | ")
    assert lines[-1] == ("Multipath ecmp; ordering step alone (merge window, 16 runs): 16.9 ns per "
                         "arrival; commit `0123456789ab`.")
    _cli_round_trip(mod, rows, tmp_path, monkeypatch)


def test_bench_ocs_layer_table_renders_both_runs(tmp_path, monkeypatch):
    """The plain and the --hybrid run's files in one table; --against columns when a file has
    them (blank for the rows of a file without)."""
    mod = _script("bench_ocs_layer")
    base = dict(fabric="ocs_direct", gpus=128, servers=0, fallback=0, events=100, first="greedy:4",
                repeat=3, commit="abcdef0123456789")
    plain = _rows(tmp_path, "ocs", [
        base | dict(scheduler="greedy:4", cpu_s=0.5, layer_ms=23.04, ratio_to_bound=1.927,
                    matchings=8, batches=16384, cpu_over_first=1.0, against="cde1444",
                    old_cpu_s=1.0, old_over_new=2.0, rows="identical"),
        base | dict(scheduler="bvn:any", cpu_s=2.75, layer_ms=205.44, ratio_to_bound=17.18,
                    matchings=18525, batches=346726, cpu_over_first=5.5, against="cde1444",
                    old_cpu_s=11.0, old_over_new=4.0, rows="identical")])
    hybrid = _rows(tmp_path, "hyb", [
        base | dict(fabric="hybrid", servers=16, scheduler="greedy:4", cpu_s=0.25, layer_ms=5.685,
                    ratio_to_bound=1.742, matchings=8, batches=2176, cpu_over_first=1.0,
                    commit="fedcba9876543210")])
    lines = mod.table(f"{plain},{hybrid}").splitlines()
    assert lines[0] == ("| fabric | GPUs | scheduler | cpu_s | cpu/first | matchings | batches | "
                        "layer_ms | /bound | against | old_cpu_s | old/new | rows |")
    assert lines[3] == ("| ocs_direct | 128 | bvn:any | 2.75 | 5.50 | 18,525 | 346,726 | 205.4 | "
                        "17.180 | cde1444 | 11 | 4.00 | identical |")
    assert lines[4] == ("| hybrid (16 x 8 GPUs) | 128 | greedy:4 | 0.25 | 1.00 | 8 | 2,176 | 5.685 "
                        "| 1.742 |  |  |  |  |")
    assert lines[-1] == ("ocs_direct: cpu/first over greedy:4, best of 3, commit `abcdef012345`; "
                         "hybrid: cpu/first over greedy:4, best of 3, commit `fedcba987654`.")
    assert "against" not in mod.table(hybrid)
    _cli_round_trip(mod, f"{plain},{hybrid}", tmp_path, monkeypatch)


def test_bench_routing_tables_render_both_parts(tmp_path, monkeypatch):
    """Sampler rows and multi-iteration rows in one file (each part NaN in the other's columns)
    render as two tables with integers printed as integers."""
    mod = _script("bench_routing")
    smp = dict(part="sampling", sampler="uniform choices", gpus=1024, tokens=4096, top_k=8,
               experts=256, pairs=33554432, wall_s=0.5, ns_per_pair=14.9, uniforms_s=0.1,
               x_uniforms=5.0, np_random_s=0.625, x_np_random=0.8, repeat=3, commit="c0ffee" * 7)
    its = dict(part="iterations", relayout="eplb:8", gpus=256, ep=8, iterations=64, tokens=1024,
               workload="deepseek_v3", routing="zipf:1.2", tolerance=1e-3, wall_s=19.2,
               s_per_iter=0.3, flows=229376, events=37469, layer_ms=6.083,
               dispatch_over_ideal=1.0, rank_max_mean=1.19, migration_gb=4.5, relayouts=8,
               commit="c0ffee" * 7)
    rows = _rows(tmp_path, "routing", [smp, its])
    text = mod.table(rows)
    assert ("| uniform choices | 1024 | 4096 | 33,554,432 | 0.5 | 14.9 | 5.00 | 0.80 |"
            in text.splitlines())
    assert "Top-8 of 256 experts, best of 3; commit `c0ffeec0ffee`." in text.splitlines()
    assert ("| eplb:8 | 256 | 8 | 64 | 19.2 | 0.3 | 229,376 | 37,469 | 8 | 4.5 | 6.083 |"
            in text.splitlines())
    assert text.splitlines()[-1] == ("deepseek_v3, zipf:1.2 routing, 1024 tokens per GPU, "
                                     "tolerance 0.001; commit `c0ffeec0ffee`.")
    assert "relayout" not in mod.table(_rows(tmp_path, "smp", [smp]))
    _cli_round_trip(mod, rows, tmp_path, monkeypatch)


def test_bench_sweep_table_renders_rows_and_the_ratios_of_the_same_rows(tmp_path, monkeypatch):
    mod = _script("bench_sweep")
    run = dict(points=600, cpus=2, load_before=0.05, load_after=0.9, rounds=1, compare="",
               commit="1234567890abcdef")

    def r(label, wall, cpu):
        return dict(label=label, wall_s=wall, pps=600 / wall, ms_per_point=1e3 * wall / 600,
                    cpu_s=cpu) | run

    rows = _rows(tmp_path, "sweep", [r("local --jobs 1", 12.0, 12.0),
                                     r("local --jobs 1 (empty run)", 0.9, 0.9),
                                     r("local --jobs 2", 6.0, 12.5),
                                     r("ray, 2 CPUs", 7.5, None)])
    lines = mod.table(rows).splitlines()
    assert lines[2] == "| local --jobs 1 | 12 | 50 | 20 | 12 |"
    assert lines[5] == "| ray, 2 CPUs | 7.5 | 80 | 12.5 | - |"
    assert "- --jobs 2 / --jobs 1 speed-up: 2.00x (target >= 1.7x)." in lines
    assert "- executor overhead per point (empty run, --jobs 1): 1.50 ms (target < 20 ms)." in lines
    assert lines[-1] == ("600 points, best of 1 round(s) for the --jobs 2 pools; 2 CPUs, load "
                         "average 0.05 before, 0.90 after; commit `1234567890ab`.")
    _cli_round_trip(mod, rows, tmp_path, monkeypatch)


def test_bench_startup_table_renders_fabrics_and_floors(tmp_path, monkeypatch):
    mod = _script("bench_startup")
    run = dict(rounds=3, commit="feedfacefeedface")
    rows = _rows(tmp_path, "startup", [
        dict(kind="floor", name="numpy + click", warm_s=0.25) | run,
        dict(kind="floor", name="numba + target", warm_s=1.5) | run,
        dict(kind="fabric", name="analytic", cold_s=8.0, one_proc_s=10.0, warm_s=1.5, kernels=9,
             one_proc_over_cold=1.25, cold_over_warm=8.0 / 1.5, warm_over_analytic=1.0,
             warm_over_numba=1.0) | run,
        dict(kind="fabric", name="flow", cold_s=13.0, one_proc_s=20.0, warm_s=3.0, kernels=18,
             one_proc_over_cold=20 / 13, cold_over_warm=13 / 3, warm_over_analytic=2.0,
             warm_over_numba=2.0) | run])
    lines = mod.table(rows).splitlines()
    assert lines[2:4] == ["| analytic | 8 | 10 | 1.5 | 5.3 | 1.00 | 1.00 | 9 |",
                          "| flow | 13 | 20 | 3 | 4.3 | 2.00 | 2.00 | 18 |"]
    assert lines[-1] == ("Floors, a fresh interpreter each: numpy + click 0.25 s; numba + target "
                         "1.5 s. Best of 3; commit `feedfacefeed`.")
    _cli_round_trip(mod, rows, tmp_path, monkeypatch)


def test_tagged_blocks_each_render_from_their_own_argument(tmp_path):
    """replace_blocks / write_blocks: every ``<!-- tag ARG -->`` block is rendered from its ARG,
    text between blocks kept; check mode writes nothing."""
    from netsim.tools.docblock import replace_blocks, write_blocks

    doc = "a\n<!-- t d1 -->\nold1\n<!-- /t -->\nmid\n<!-- t d2 -->\nold2\n<!-- /t -->\nz\n"
    new = replace_blocks(doc, "t", lambda arg: f"rows of {arg}")
    assert new == ("a\n<!-- t d1 -->\nrows of d1\n<!-- /t -->\nmid\n"
                   "<!-- t d2 -->\nrows of d2\n<!-- /t -->\nz\n")
    f = tmp_path / "doc.md"
    f.write_text(doc)
    assert write_blocks(f, "t", lambda arg: f"rows of {arg}", check=True) == 1
    assert f.read_text() == doc
    assert write_blocks(f, "t", lambda arg: f"rows of {arg}", check=False) == 0
    assert write_blocks(f, "t", lambda arg: f"rows of {arg}", check=True) == 0


@pytest.mark.parametrize("doc", ["none here", "<!-- t d1 -->\nno end\n",
                                 "<!-- t -->\nx\n<!-- /t -->"])
def test_a_tagged_block_without_its_end_or_argument_is_reported(doc):
    from netsim.tools.docblock import replace_blocks

    with pytest.raises(SystemExit, match=r"doc\.md has"):
        replace_blocks(doc, "t", str, "doc.md")


def test_the_cluster_doc_blocks_are_where_bench_cluster_writes():
    """docs/cluster.md's bench_cluster blocks, rendered as their own content, leave the file
    unchanged (bench_cluster.py --check compares them with the rows instead)."""
    from pathlib import Path

    from netsim.tools.docblock import replace_blocks

    text = (Path(__file__).resolve().parents[1] / "docs" / "cluster.md").read_text()
    inner = {}
    for part in text.split("<!-- bench_cluster ")[1:]:
        arg, body = part.split(" -->\n", 1)
        inner[arg] = body.split("\n<!-- /bench_cluster -->", 1)[0]
    assert set(inner) == {"results/bench_cluster"}
    assert replace_blocks(text, "bench_cluster", inner.__getitem__) == text


@pytest.mark.parametrize("script,doc,tag,names", [
    ("plot_nvlink.py", "nvlink_validation.md", "nvlink_fit", {"fit", "ramp", "skewed"}),
    ("plot_calibration.py", "compute_model.md", "compute_model", {"fit", "monotone", "grouped"}),
])
def test_docs_blocks_from_committed_measurements_check(script, doc, tag, names):
    """The docs' tables that a benchmark script writes from the committed calibration CSVs are
    all there, and its --check finds them equal to what the rows give."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    path = root / "docs" / doc
    text = path.read_text()
    found = {part.split(" -->", 1)[0] for part in text.split(f"<!-- {tag} ")[1:]}
    assert found == names
    assert text.count(f"<!-- /{tag} -->") == len(names)
    assert _script(script[:-3]).main(["--check", str(path)]) == 0


def test_the_readme_scale_tables_are_where_scale_table_writes():
    """The README's scale-table blocks (one per rows directory: 512 and 4096 tokens per GPU),
    rendered as their own content, leave it unchanged (scale_table.py --check compares them with
    their rows instead)."""
    from pathlib import Path

    from netsim.tools.docblock import replace_blocks

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    inner = {}
    for part in text.split("<!-- scale-table ")[1:]:
        arg, body = part.split(" -->\n", 1)
        inner[arg] = body.split("\n<!-- /scale-table -->", 1)[0]
    assert sorted(inner) == ["results/scale_table", "results/scale_table_4096"]
    assert replace_blocks(text, "scale-table", inner.__getitem__) == text


def test_scale_table_renders_rows_and_names_the_fastest_simulator(tmp_path):
    """scale_table.py's table from hand-made rows: cells, the fastest-simulator line (analytic
    left out: not a simulator), a refusal as a numbered note."""
    pd = pytest.importorskip("pandas")
    mod = _script("scale_table")
    ok = dict(status="ok", tokens=512, layer_s=2.5e-3, maxrss_gib=0.25)
    rows = [dict(ok, model="analytic", gpus=256, wall_s=0.01),
            dict(ok, model="flow", gpus=256, wall_s=1.0),
            dict(ok, model="packet", gpus=256, wall_s=0.5),
            dict(ok, model="flow+aggregate", gpus=256, wall_s=0.05),
            dict(ok, model="flow", gpus=16, wall_s=0.02),
            dict(model="analytic", gpus=16, tokens=512, status="failed: NetsimError: too big",
                 wall_s=0.1)]
    for i, r in enumerate(rows):
        pd.DataFrame([r]).to_parquet(tmp_path / f"{i}.parquet")
    text = mod.table(tmp_path)
    assert "| 256 | 0.01 s (2.500 ms, 0.25 GiB) | 1.00 s (2.500 ms, 0.25 GiB) |" in text
    assert ("Fastest simulator per size (the others' wall time as a multiple of it): 16: flow; "
            "256: flow+aggregate (packet 10.0x, flow 20.0x)") in text
    assert "| 16 | refused (1) |" in text and "1. analytic, 16 GPUs: too big" in text
    assert "Rows from commit" not in text  # rows without the column: no line
    pd.DataFrame([dict(ok, model="packet", gpus=16, wall_s=0.03, commit="0123456789abcdef")]
                 ).to_parquet(tmp_path / "c.parquet")
    assert mod.table(tmp_path).endswith("\n\nRows from commit `0123456789ab`.")


def test_table_step_prints_writes_and_checks(tmp_path, capsys):
    """The --table ROWS [--write|--check DOC] step every benchmark script shares: printed
    without a document, written into its block, then checked equal (0) and stale (1)."""
    from netsim.tools.docblock import table_step

    doc = tmp_path / "doc.md"
    doc.write_text(f"a\n{B}\nold\n{E}\nb\n")
    assert table_step("rows.parquet", lambda r: f"table of {r}", None, False, B, E, "t") == 0
    assert capsys.readouterr().out == "table of rows.parquet\n"
    assert table_step("x", lambda r: f"table of {r}", str(doc), False, B, E, "t") == 0
    assert doc.read_text() == f"a\n{B}\ntable of x\n{E}\nb\n"
    assert table_step("x", lambda r: f"table of {r}", str(doc), True, B, E, "t") == 0
    assert table_step("y", lambda r: f"table of {r}", str(doc), True, B, E, "t") == 1
    assert doc.read_text() == f"a\n{B}\ntable of x\n{E}\nb\n"


def test_the_readme_tour_is_what_its_run_prints(tmp_path):
    """The README tour's output block and the figures its sentences quote are those of the run
    it shows (benchmarks/readme_tour.py prints them from the rows): a model change that moves
    them fails here until the README is regenerated. Wall time is left out."""
    import re
    from pathlib import Path

    import pandas as pd
    from click.testing import CliRunner

    from netsim.cli import main

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    cmd = ("run --topology leaf_spine --set gpus=64 --workload deepseek_v3 --routing zipf:1.2"
           " --seed 1")
    assert f"netsim {cmd}\n```\n```\n" in text
    block = text.split(f"netsim {cmd}\n```\n```\n", 1)[1].split("```", 1)[0]
    shown = dict(line.split() for line in block.strip().splitlines())

    def row(*extra):
        out = tmp_path / f"r{len(extra)}.parquet"
        r = CliRunner().invoke(main, cmd.split() + list(extra) + ["--out", str(out)])
        assert r.exit_code == 0, r.output
        return pd.read_parquet(out).iloc[0]

    r = row()
    assert {k: v for k, v in shown.items() if k != "sim_wall_s"} == {
        k: f"{float(r[k]):g}" for k in shown if k != "sim_wall_s"}
    tour = text.split(block, 1)[1][:1500]
    assert f"put {r.max_gpu_recv_bytes / r.mean_gpu_recv_bytes:.1f}x the mean load" in tour
    assert f"the layer takes {r.ratio_to_serial_ideal:.2f}x the congestion-free ideal" in tour
    exact = row("--tolerance", "0")
    assert re.search(rf"`--tolerance 0`, exact, gives {float(exact.layer_s):g} s", tour)


def test_scale_table_rows_of_failed_and_timed_out_cases_carry_the_commit(tmp_path, monkeypatch):
    """The rows the parent writes for a case whose process failed or ran past the limit carry
    the commit as a case's own row does, so the table's commit line covers every row."""
    import subprocess

    import pandas as pd

    from netsim.experiment.sweep import git_commit

    mod = _script("scale_table")
    commit = git_commit()
    calls = iter([subprocess.CompletedProcess([], 1, "", "x\nConfigError: too big"),
                  subprocess.TimeoutExpired("x", 1.0)])
    real_run = subprocess.run

    def fake_run(cmd, *a, **kw):  # the cases' processes only (git_commit runs git)
        if "--one" not in cmd:
            return real_run(cmd, *a, **kw)
        r = next(calls)
        if isinstance(r, Exception):
            raise r
        return r

    monkeypatch.setattr(subprocess, "run", fake_run)
    cases = [dict(model="analytic", gpus=16, tokens=512), dict(model="flow", gpus=16, tokens=512)]
    mod.run_missing(tmp_path, cases, 1.0)
    rows = pd.concat([pd.read_parquet(p) for p in sorted(tmp_path.glob("*.parquet"))])
    assert sorted(rows["status"]) == ["failed: ConfigError: too big", "over 1 s"]
    assert list(rows["commit"]) == [commit] * 2
