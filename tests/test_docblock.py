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


@pytest.mark.parametrize("begin,end", [("<!-- bench-flow -->", "<!-- /bench-flow -->"),
                                       ("<!-- bench-schedule -->", "<!-- /bench-schedule -->"),
                                       ("<!-- scale-table -->", "<!-- /scale-table -->"),
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
    import importlib.util
    import sys
    from pathlib import Path

    pd = pytest.importorskip("pandas")
    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("bench_schedule",
                                                  root / "benchmarks" / "bench_schedule.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_schedule"] = mod
    spec.loader.exec_module(mod)
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
    assert len(inner) == 2
    assert replace_blocks(text, "bench_cluster", inner.__getitem__) == text


@pytest.mark.parametrize("script,doc,tag,names", [
    ("plot_nvlink.py", "nvlink_validation.md", "nvlink_fit", {"fit", "ramp", "skewed"}),
    ("plot_calibration.py", "compute_model.md", "compute_model", {"fit", "monotone", "grouped"}),
])
def test_docs_blocks_from_committed_measurements_check(script, doc, tag, names):
    """The docs' tables that a benchmark script writes from the committed calibration CSVs are
    all there, and its --check finds them equal to what the rows give."""
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    path = root / "docs" / doc
    text = path.read_text()
    found = {part.split(" -->", 1)[0] for part in text.split(f"<!-- {tag} ")[1:]}
    assert found == names
    assert text.count(f"<!-- /{tag} -->") == len(names)
    spec = importlib.util.spec_from_file_location(script[:-3], root / "benchmarks" / script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--check", str(path)]) == 0
