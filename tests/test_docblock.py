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
