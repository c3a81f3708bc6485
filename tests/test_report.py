"""netsim report: valid PNG figures, index.html with the parameter table, loaded in headless
Chromium with every image present (skipped when chromium is not installed)."""
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
    assert "<td>gpus</td><td>4, 8, 16</td><td>x axis</td>" in text
    assert "<td>routing</td><td>uniform, zipf:1.2</td><td>lines</td>" in text
    assert "<td>seed</td><td>0, 1</td>" in text and "<td>workload</td><td>olmoe_1b_7b</td>" in text
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
