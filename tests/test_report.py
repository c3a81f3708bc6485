"""netsim report: valid PNG figures, index.html with the parameter table (fixed only for what
every row shares), no figure of a metric that is absent, NaN or constant (with the reason), seed
bands, the mitigation table from the rows, the routing Gini beside the published values, every
legend entry visible and every label inside the frame; loaded in headless Chromium with every
image present (skipped when chromium is not installed)."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from netsim.cli import main
from netsim.experiment.sweep import run_sweep

EXP = '''
NAME = "rep"
BASE = {"workload": "olmoe_1b_7b", "tokens_per_gpu": 32, "topology": "crossbar"}
GRID = {"gpus": [4, 8, 16], "routing": ["uniform", "zipf:1.2", "zipf:-1"]}
SEEDS = [0, 1]


def plots(df, outdir):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = df[df.status == "ok"]
    fig, ax = plt.subplots()
    ax.scatter(ok["imbalance"], ok["ratio_to_serial_ideal"])
    p = outdir / "custom_scatter.png"
    fig.savefig(p)
    plt.close(fig)
    return [p]
'''

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    exp = tmp / "rep.py"
    exp.write_text(EXP)
    run_sweep(str(exp), tmp / "out", jobs=2, quiet=True)
    r = CliRunner().invoke(main, ["report", str(tmp / "out" / "rep"), "--out", str(tmp / "r")])
    assert r.exit_code == 0, r.output
    return tmp / "r"


def _imgs(index: Path) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', index.read_text())


def test_pngs_are_valid_images(report):
    from PIL import Image

    index = report / "index.html"
    srcs = _imgs(index)
    assert any("layer_s" in s for s in srcs) and any("ratio_to_serial_ideal" in s for s in srcs)
    assert srcs[-1].endswith("custom_scatter.png")  # the experiment's own plots() figure
    for s in srcs:
        p = report / s
        assert p.read_bytes()[:8] == PNG_MAGIC
        with Image.open(p) as im:
            im.verify()
        with Image.open(p) as im:
            assert im.format == "PNG" and im.size[0] > 200 and im.size[1] > 150


def test_index_has_parameter_table_and_failures(report):
    text = (report / "index.html").read_text()
    assert '<td>gpus</td><td>4, 8, 16</td><td class="role">varying (x axis)</td>' in text
    # uniform and skewed routing in separate panels
    assert '<td>routing</td><td>uniform, zipf:1.2</td><td class="role">varying (panels)</td>' in text
    assert "<td>seed</td><td>0, 1</td>" in text
    assert '<td>workload</td><td>olmoe_1b_7b</td><td class="role">fixed (every row)</td>' in text
    assert "6 failed points" in text and "zipf" in text


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        exe = shutil.which(name)
        if exe:
            return exe
    return None


PROBE = """<script>window.addEventListener('load', function () {
  var imgs = Array.from(document.images);
  var bad = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); });
  var d = document.createElement('div'); d.id = 'imgcheck';
  d.textContent = 'images=' + imgs.length + ' broken=' + bad.length;
  document.body.appendChild(d); });</script></body>"""


def _load_in_chromium(exe, html: Path, profile: Path) -> str:
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run",
           f"--user-data-dir={profile}", "--virtual-time-budget=5000", "--dump-dom",
           html.resolve().as_uri()]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    m = re.search(r'<div id="imgcheck">images=(\d+) broken=(\d+)</div>', p.stdout)
    assert m, (p.returncode, p.stdout[-2000:], p.stderr[-2000:])
    return m.group(1), m.group(2)


def test_index_loads_in_headless_chromium_with_every_image(report, tmp_path):
    exe = _chromium()
    if exe is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    n = len(_imgs(report / "index.html"))
    probe = report / "_probe.html"  # same folder: the same relative image paths
    probe.write_text((report / "index.html").read_text().replace("</body>", PROBE))
    assert _load_in_chromium(exe, probe, tmp_path / "profile1") == (str(n), "0")
    # the probe does see a missing image
    broken = tmp_path / "broken"
    shutil.copytree(report, broken)
    next(broken.glob("*.png")).unlink()
    assert _load_in_chromium(exe, broken / "_probe.html", tmp_path / "profile2") == (str(n), "1")
    probe.unlink()


def test_relative_out_with_experiment_plots(report, tmp_path, monkeypatch):
    """--out relative to the current folder, for an experiment with its own plots(): the
    figure's path was joined to the output folder twice (exit 2, "does not exist")."""
    monkeypatch.chdir(tmp_path)
    data = report.parent / "out" / "rep"
    r = CliRunner().invoke(main, ["report", str(data), "--out", "rel/report", "--metric",
                                  "layer_s"])
    assert r.exit_code == 0, r.output
    index = tmp_path / "rel" / "report" / "index.html"
    srcs = _imgs(index)
    assert srcs == ["rep__layer_s.png", "rep/custom_scatter.png"]
    assert all((index.parent / s).is_file() for s in srcs)
    assert not (tmp_path / "rel" / "report" / "rep" / "rel").exists()


def test_report_of_out_folder_and_bad_input(tmp_path):
    exp = tmp_path / "two.py"
    exp.write_text('NAME = "two"\nBASE = {"workload": "olmoe_1b_7b", "tokens_per_gpu": 16}\n'
                   'GRID = {"gpus": [4, 8], "topology": ["crossbar", "leaf_spine"]}\n')
    run_sweep(str(exp), tmp_path / "out", quiet=True)
    exp2 = tmp_path / "one.py"
    exp2.write_text('NAME = "one"\nBASE = {"workload": "olmoe_1b_7b", "tokens_per_gpu": 16}\n'
                    'GRID = {"routing": ["uniform", "zipf:1.5"]}\n')
    run_sweep(str(exp2), tmp_path / "out", quiet=True)
    r = CliRunner().invoke(main, ["report", str(tmp_path / "out"), "--out", str(tmp_path / "r"),
                                  "--metric", "layer_s"])
    assert r.exit_code == 0, r.output
    srcs = _imgs(tmp_path / "r" / "index.html")
    assert sorted(srcs) == ["one__layer_s.png", "two__layer_s.png"]
    (tmp_path / "empty").mkdir()
    r = CliRunner().invoke(main, ["report", str(tmp_path / "empty"), "--out", str(tmp_path / "r")])
    assert r.exit_code == 2 and "no sweep dataset" in r.output
    r = CliRunner().invoke(main, ["report", str(tmp_path / "out"), "--out", str(tmp_path / "r"),
                                  "--metric", "nope_s"])
    assert r.exit_code == 2 and "nope_s" in r.output and "Traceback" not in r.output


# ---------------------------------------------------------------------------------------------
# the rules of a report that tells the story


def _read(ddir):
    from netsim.experiment import dataset
    from netsim.report import _plain

    df = _plain(dataset.read(ddir))
    return df[df["status"] == "ok"]


def _frame_problems(fig):
    """What a reader would miss: an axes (its tick labels, labels, title) or a legend drawn past
    the figure's edge, a legend entry without a label or a visible handle."""
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    box = fig.bbox
    bad = []

    def outside(e):
        return e.x0 < box.x0 - 1 or e.y0 < box.y0 - 1 or e.x1 > box.x1 + 1 or e.y1 > box.y1 + 1

    for ax in fig.axes:
        if ax.get_visible() and outside(ax.get_tightbbox(r)):
            bad.append(f"axes {ax.get_title()!r} outside the frame")
    if fig._suptitle is not None and outside(fig._suptitle.get_window_extent(r)):
        bad.append("suptitle outside the frame")
    for leg in fig.legends + [a.get_legend() for a in fig.axes if a.get_legend()]:
        if outside(leg.get_window_extent(r)):
            bad.append("legend outside the frame")
        for h, t in zip(leg.legend_handles, leg.get_texts()):
            if not t.get_text().strip():
                bad.append("an empty legend label")
            if h is None or not h.get_visible() or h.get_alpha() == 0:
                bad.append(f"legend entry {t.get_text()!r} has no visible handle")
    return bad


def test_fixed_only_when_every_row_shares_it():
    import pandas as pd

    from netsim.report import parameter_table

    rows = pd.DataFrame({"topology": ["crossbar", "leaf_spine", "leaf_spine"],
                         "spines": [None, 2, 2], "scheduler": ["", "", ""],
                         "trace_links": [None, None, None], "gpus": [8, 8, 16]})
    varying, fixed = parameter_table(rows, list(rows.columns))
    assert fixed == {"scheduler": ""}  # spines is set on 2 rows of 3: not fixed
    assert varying == {"topology": ["crossbar", "leaf_spine"], "spines": [2, None],
                       "gpus": [8, 16]}
    assert "trace_links" not in varying and "trace_links" not in fixed


def test_parameter_table_of_a_mixed_sweep_lists_na_values(tmp_path):
    exp = tmp_path / "mixed.py"
    exp.write_text('NAME = "mixed"\nBASE = {"workload": "olmoe_1b_7b", "tokens_per_gpu": 16}\n'
                   'GRID = {"gpus": [4, 8], "topology": ["crossbar", "leaf_spine"]}\n')
    run_sweep(str(exp), tmp_path / "out", quiet=True)
    r = CliRunner().invoke(main, ["report", str(tmp_path / "out"), "--out", str(tmp_path / "r")])
    assert r.exit_code == 0, r.output
    text = (tmp_path / "r" / "index.html").read_text()
    # leaf-spine parameters do not apply to the crossbar rows: varying, never "fixed"
    m = re.search(r"<tr><td>spines</td><td>([^<]*)</td><td[^>]*>([^<]*)</td></tr>", text)
    assert m and "n/a" in m.group(1) and m.group(2).startswith("varying"), m
    assert "follows topology" in m.group(2)
    for name, role in re.findall(r"<tr><td>(\w+)</td><td>[^<]*</td><td[^>]*>(fixed[^<]*)</td>", text):
        assert name not in ("spines", "gpus_per_server", "topology", "gpus"), name


ANALYTIC = '''
NAME = "flat"
BASE = {"workload": "olmoe_1b_7b", "tokens_per_gpu": 64, "topology": "crossbar", "gpus": 8,
        "fabric": "analytic", "routing": "zipf:1.2"}
GRID = {"latency_us": [0.5, 1.0]}
'''


def test_absent_nan_or_constant_metric_yields_no_figure_and_says_why(tmp_path):
    import numpy as np
    import pandas as pd

    from netsim.report import plan_metric

    df = pd.DataFrame({"gpus": [4, 8, 4, 8], "seed": [0, 0, 1, 1],
                       "layer_s": [1e-3, 2e-3, 1.1e-3, 2.1e-3], "compute_s": [5e-4] * 4,
                       "combine_s": [np.nan] * 4})
    units = {"layer_s": "s", "compute_s": "s", "combine_s": "s"}
    plan, why = plan_metric(df, "layer_s", ["gpus"], units)
    assert why is None and plan.x == "gpus" and plan.hue == [] and plan.seeds == [0, 1]
    assert plan_metric(df, "compute_s", ["gpus"], units) == (
        None, "the same value on every row that has it (4 rows): 0.5 ms")
    assert plan_metric(df, "combine_s", ["gpus"], units)[1].startswith("NaN on every")
    assert plan_metric(df, "dispatch_s", ["gpus"], units)[1] == "not a column of this dataset"
    # link latency moves the times but not the routing, the compute, nor the ratio to the
    # (latency-aware) reference: those figures are left out, each with its reason
    exp = tmp_path / "flat.py"
    exp.write_text(ANALYTIC)
    run_sweep(str(exp), tmp_path / "out", quiet=True)
    r = CliRunner().invoke(main, ["report", str(tmp_path / "out"), "--out", str(tmp_path / "r")])
    assert r.exit_code == 0, r.output
    text = (tmp_path / "r" / "index.html").read_text()
    assert sorted(_imgs(tmp_path / "r" / "index.html")) == [
        "flat__combine_s.png", "flat__dispatch_over_balanced.png", "flat__dispatch_s.png",
        "flat__layer_s.png"]
    reasons = dict(re.findall(r'<li class="leftout"><b>(\w+)</b>: ([^<]*)</li>', text))
    assert set(reasons) == {"ratio_to_serial_ideal", "compute_s", "imbalance"}
    assert all(w.startswith("the same value on every row") for w in reasons.values())


def test_seed_bands_drawn_when_several_seeds_legend_visible_labels_inside(report):
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection

    from netsim.experiment import dataset
    from netsim.report import draw_metric, plan_metric

    ddir = report.parent / "out" / "rep"
    ok = _read(ddir)
    params = [c for c in dataset.metadata(ddir)["params"] if c != "seed"]
    units = dataset.run_tables()[0]
    plan, why = plan_metric(ok, "layer_s", params, units)
    assert why is None and plan.seeds == [0, 1] and plan.panel == "routing"
    fig = draw_metric(plan, units, "rep")
    bands = [c for a in fig.axes for c in a.collections if isinstance(c, PolyCollection)]
    assert len(bands) == 2  # one per panel's line: uniform and zipf:1.2, min-max over seeds
    assert "2 seeds" in fig._suptitle.get_text()
    assert _frame_problems(fig) == []
    plt.close(fig)
    one = ok[ok["seed"] == 0]
    plan, _ = plan_metric(one, "layer_s", params, units)
    fig = draw_metric(plan, units, "rep")
    assert not [c for a in fig.axes for c in a.collections if isinstance(c, PolyCollection)]
    assert "one seed" in fig._suptitle.get_text()
    plt.close(fig)


MITIGATION = '''
NAME = "mit"
BASE = {"workload": "olmoe_1b_7b", "tokens_per_gpu": 64, "topology": "leaf_spine", "gpus": 8,
        "gpus_per_server": 2, "servers_per_leaf": 2, "spines": 2, "oversubscription": 2.0,
        "iterations": 2, "routing": "zipf:1.2"}
GRID = {"relayout": ["none", "static", "eplb:1"]}
SEEDS = [0, 1]
'''


@pytest.fixture(scope="module")
def mitigation(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mit")
    (tmp / "mit.py").write_text(MITIGATION)
    run_sweep(str(tmp / "mit.py"), tmp / "out", jobs=2, quiet=True)
    r = CliRunner().invoke(main, ["report", str(tmp / "out"), "--out", str(tmp / "r")])
    assert r.exit_code == 0, r.output
    return tmp


def test_mitigation_table_from_rows(mitigation):
    import numpy as np

    from netsim.experiment import dataset
    from netsim.report import draw_mitigations, mitigation_table

    ddir = mitigation / "out" / "mit"
    ok = _read(ddir)
    t = mitigation_table(ok, dataset.metadata(ddir)["params"])
    assert list(t["mitigation"]) == ["none", "relayout=eplb:1", "relayout=static"]
    assert t.attrs["point"] == []  # one point: nothing but the mitigation varies
    base = ok[ok["relayout"] == "none"].set_index("seed")
    for m, cell in zip(t["mitigation"], t.to_dict("records")):
        rows = ok[ok["relayout"] == m.split("=")[-1] if m != "none" else ok["relayout"] == "none"]
        rows = rows.set_index("seed")
        b = base.loc[rows.index]
        bal_layer = (b["serial_ideal_s"] - b["ideal_dispatch_s"] - b["ideal_combine_s"]
                     + b["ideal_balanced_dispatch_s"] * (1 + b["combine_bytes"]
                                                         / b["dispatch_bytes"]))
        layer_share = (b["layer_s"] - rows["layer_s"]) / (b["layer_s"] - bal_layer)
        disp_share = ((b["dispatch_s"] - rows["dispatch_s"])
                      / (b["dispatch_s"] - b["ideal_balanced_dispatch_s"]))
        assert cell["recovered, whole layer"] == pytest.approx(layer_share.mean())
        assert cell["recovered, dispatch only"] == pytest.approx(disp_share.mean())
        assert cell["recovered, dispatch only min"] == pytest.approx(disp_share.min())
        assert cell["cost: layer over baseline"] == pytest.approx(
            (rows["layer_s"] / b["layer_s"] - 1).mean())
        assert cell["cost: weights moved (MB)"] == pytest.approx(rows["migration_bytes"].mean())
        gap = rows["dispatch_s"] / rows["ideal_balanced_dispatch_s"]
        assert cell["gap: dispatch / balanced bound"] == pytest.approx(gap.mean())
        assert cell["rows"] == 2 and cell["seeds"] == 2 and cell["layers"] == 0
    # the balanced dispatch is a bound on every row it is printed beside
    assert (ok["dispatch_s"] >= ok["ideal_balanced_dispatch_s"] * (1 - 1e-9)).all()
    static = t[t["mitigation"] == "relayout=static"].iloc[0]
    assert static["recovered, dispatch only"] > 0  # a static relayout of zipf routing helps
    text = (mitigation / "r" / "index.html").read_text()
    assert "<h3>Mitigations</h3>" in text and "relayout=static" in text
    assert "mit__mitigations.png" in text
    fig = draw_mitigations(t, "mit")
    assert _frame_problems(fig) == []
    # whiskers: min-max over the two seeds
    assert any(len(c.get_segments()) for a in fig.axes for c in a.collections)
    import matplotlib.pyplot as plt
    plt.close(fig)
    assert np.isfinite(static["layer (ms)"])


def test_trace_layers_fold_into_one_routing():
    from netsim.report import layer_of

    assert layer_of("trace:/x/mixtral.jsonl:14") == ("trace:/x/mixtral.jsonl", 14)
    assert layer_of("trace:/x/mixtral.jsonl") == ("trace:/x/mixtral.jsonl", None)
    assert layer_of("trace:/x/m.jsonl", 3) == ("trace:/x/m.jsonl", 3)
    assert layer_of("zipf:1.2") == ("zipf:1.2", None)


def test_published_bands_hold_the_profile_targets():
    from netsim.workload.profiles import PROFILES, PUBLISHED_GINI

    assert PUBLISHED_GINI[("deepseek_moe_16b", "wikitext")] == (0.105, 0.105)
    for (ck, cond), (lo, hi) in PUBLISHED_GINI.items():
        t = PROFILES[f"{ck}:{cond}"]["target_gini"]
        assert lo <= t and (hi is None or t <= hi), (ck, cond)
        if PROFILES[f"{ck}:{cond}"]["profile_source"] == "published":
            assert lo == hi == t


GINI = '''
NAME = "gini"
BASE = {"workload": "deepseek_v2_lite", "tokens_per_gpu": 4096, "topology": "crossbar", "gpus": 8,
        "fabric": "analytic"}
GRID = {"routing": ["profile:deepseek_moe_16b:wikitext", "profile:qwen3_30b_a3b:wikitext",
                    "profile:deepseek_v2_lite:wikitext"]}
'''


def test_gini_figure_draws_the_published_values(tmp_path):
    import matplotlib.pyplot as plt
    import numpy as np

    from netsim.report import draw_gini
    from netsim.workload.profiles import PUBLISHED_GINI

    (tmp_path / "gini.py").write_text(GINI)
    run_sweep(str(tmp_path / "gini.py"), tmp_path / "out", quiet=True)
    ok = _read(tmp_path / "out" / "gini")
    fig, why = draw_gini(ok, "gini")
    assert why is None
    ax = fig.axes[0]
    # the published value as a line at its height, bands as hatched spans from their floor
    lines = [seg for c in ax.collections if hasattr(c, "get_segments") and not c.get_hatch()
             for seg in c.get_segments()]
    mha = PUBLISHED_GINI[("deepseek_moe_16b", "wikitext")][0]
    assert any(np.allclose(seg[:, 1], mha) for seg in lines)
    hatched = [c for c in ax.collections if c.get_hatch()]
    floors = sorted(round(float(c.get_paths()[0].vertices[:, 1].min()), 6) for c in hatched)
    assert floors == sorted([PUBLISHED_GINI[("qwen3_30b_a3b", "wikitext")][0],
                             PUBLISHED_GINI[("deepseek_v2_lite", "wikitext")][0]])
    assert _frame_problems(fig) == []
    plt.close(fig)
    # no profile row at the reference batch: no figure, and the reason
    fig, why = draw_gini(ok.assign(tokens_per_gpu=64), "gini")
    assert fig is None and "reference batch" in why


def _study_rows():
    """Rows shaped like a study's parts: an EP scan at a fixed global batch (gpus x tokens =
    1024), a batch scan at 32 GPUs, one mitigation point, for two workloads; one routing is a
    two-layer trace. Metrics made up from the parameters (the report draws, it does not
    simulate)."""
    import pandas as pd

    rows = []
    for wl, routings in (("a", ["uniform", "trace:/t/x.jsonl:0", "trace:/t/x.jsonl:1"]),
                         ("b", ["uniform", "zipf:1.2"])):
        for rt in routings:
            skew = 1.0 + (0.5 if rt != "uniform" else 0.0) + (0.2 if rt.endswith(":1") else 0)
            for seed in (0, 1):
                for g in (4, 8, 16):  # EP scan
                    rows.append(dict(workload=wl, routing=rt, gpus=g, tokens_per_gpu=1024 // g,
                                     relayout="none", seed=seed, imbalance=skew,
                                     rank_max_mean=skew * (1 + g / 100), layer_s=1e-3 * g))
                for t in (256, 512):  # batch scan at 32 GPUs
                    rows.append(dict(workload=wl, routing=rt, gpus=32, tokens_per_gpu=t,
                                     relayout="none", seed=seed, imbalance=skew + seed * 0.01,
                                     rank_max_mean=skew, layer_s=1e-6 * t * skew))
                rows.append(dict(workload=wl, routing=rt, gpus=8, tokens_per_gpu=1024,
                                 relayout="static", seed=seed, imbalance=skew,
                                 rank_max_mean=skew, layer_s=2e-3))
    return pd.DataFrame(rows)


def test_lines_of_one_point_are_counted_and_trace_layers_fold():
    from netsim.report import plan_metric

    df = _study_rows()
    params = ["workload", "routing", "gpus", "tokens_per_gpu", "relayout"]
    plan, why = plan_metric(df, "layer_s", params, {"layer_s": "s"})
    assert why is None
    # the batch scan: the EP scan's tokens per GPU move with gpus only on its own rows (its
    # figure is ep_scan_plans'), the mitigation rows are a relayout of their own
    assert plan.x == "tokens_per_gpu"
    # workloads apart, routings as lines; the trace's two layers are one routing
    assert plan.panel == "workload" and plan.hue == ["routing"]
    assert set(plan.rows["routing"]) == {"uniform", "trace:/t/x.jsonl", "zipf:1.2"}
    assert plan.traces == 1
    # every row not on a line of two x values is counted: EP scan and mitigation rows
    assert plan.dropped == len(df) - len(plan.rows) == 5 * 2 * 3 + 5 * 2
    assert set(plan.rows["gpus"]) == {32} and set(plan.rows["relayout"]) == {"none"}
    fig = __import__("netsim.report", fromlist=["draw_metric"]).draw_metric(plan, {}, "study")
    assert "median over its layers" in fig._suptitle.get_text()
    import matplotlib.pyplot as plt
    plt.close(fig)


def test_ep_scan_figure_at_a_fixed_global_batch():
    from netsim.report import ep_scan_plans

    df = _study_rows()
    g, plans = ep_scan_plans(df, ["workload", "routing", "gpus", "tokens_per_gpu", "relayout"])
    assert g == [1024] and [p.metric for p in plans] == ["imbalance", "rank_max_mean"]
    for p in plans:
        assert p.x == "gpus" and p.panel == "workload" and p.hue == ["routing"]
        assert p.follows["gpus"] == ["tokens_per_gpu"]
        assert set(p.rows["gpus"]) == {4, 8, 16}
        assert (p.rows["gpus"] * p.rows["tokens_per_gpu"] == 1024).all()
    # a dataset that is only the scan: the standard figures already show it
    scan = df[df["gpus"] * df["tokens_per_gpu"] == 1024]
    scan = scan[scan["relayout"] == "none"]
    assert ep_scan_plans(scan, ["workload", "routing", "gpus", "tokens_per_gpu"]) == ([], [])
