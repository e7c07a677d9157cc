"""The README's Python examples run, each block on its own, and print what the README says they
print (the convention is in ``tests/_readme.py`` and the README's Tests section)."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests import _readme

ROOT = Path(__file__).resolve().parents[1]


DOCS = ["README.md", "ARCHITECTURE.md", "benchmarks/README.md"]


def _anchors(text: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens, repeats numbered."""
    seen, fence = {}, False
    for line in text.splitlines():
        if line.startswith("```"):
            fence = not fence
        elif not fence and re.match(r"#{1,6} ", line):
            slug = re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
            seen[slug] = seen.get(slug, -1) + 1
            if seen[slug]:
                seen[f"{slug}-{seen[slug]}"] = 0
    return set(seen)


@pytest.mark.parametrize("doc", DOCS)
def test_links_lead_somewhere(doc):
    """Every relative link of the documentation names a file that exists and, with ``#``, one of
    its headings (the README's table of contents among them)."""
    path = ROOT / doc
    text = path.read_text()
    prose = re.sub(r"`[^`\n]*`", "", re.sub(r"^```.*?^```", "", text, flags=re.S | re.M))
    links = re.findall(r"\]\(([^)\s]+)\)", prose)
    assert doc != "README.md" or len(links) > 30
    broken = []
    for link in links:
        if re.match(r"[a-z]+:", link):
            continue
        target, _, anchor = link.partition("#")
        file = (path.parent / target).resolve() if target else path
        if not file.exists() or (anchor and anchor not in _anchors(file.read_text())):
            broken.append(link)
    assert not broken, f"{doc}: links to nothing: {broken}"


@pytest.mark.parametrize("doc", DOCS[1:])
def test_only_the_readme_holds_python_examples(doc):
    """Only the README's blocks are run (below); the other documents hold none to go stale."""
    assert "```python" not in (ROOT / doc).read_text()


def test_the_anchor_rule_is_githubs():
    text = "# Port a model: translate, compare\n## `jaxconv.nn` and Copying a layer's weights\n## Tests\n## Tests\n"
    assert _anchors(text) == {"port-a-model-translate-compare", "jaxconvnn-and-copying-a-layers-weights",
                              "tests", "tests-1"}


def test_readme_blocks_print_what_they_state(tmp_path):
    readme = ROOT / "README.md"
    results = tmp_path / "results.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "_readme.py"), str(readme), str(results)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(results.read_text())
    assert len(report) >= 10
    problems = [f"README.md:{p['line']}: " + "; ".join(f"{k}: {p[k]!r}" for k in p if k != "line")
                for block in report for p in block["problems"]]
    assert not problems, "\n".join(problems)
    assert sum(block["checked"] for block in report) >= 50     # printed lines compared


@pytest.mark.parametrize("printed, want, ok", [
    ("(2, 6, 9, 8)\n", "(2, 6, 9, 8)", True),
    ("(2, 6, 9, 8)\n", "(2, 6, 9, 9)", False),
    ("PASS: 34 checks, worst ratio 0.1\n", "PASS: ...", True),
    ("FAIL: 34 checks, worst ratio 3.1\n", "PASS: ...", False),
    ("(20, 33, 26, 100) 2.4e-06\n", "(20, 33, 26, 100) ~1e-6", True),
    ("(20, 33, 26, 100) 2.4e-04\n", "(20, 33, 26, 100) ~1e-6", False),
    ("(20, 33, 26, 100) nan\n", "(20, 33, 26, 100) ~1e-6", False),
    ("[[12 14]\n [22 24]]\n", "[[12 14] [22 24]]", True),
])
def test_the_comparison_can_fail(printed, want, ok):
    assert _readme.matches(printed, want) is ok


def test_expected_output_is_read_from_the_statement_and_the_comments_below():
    import ast

    code = ("x = 1  # a note, not output\n"
            "print(x)  # 1 -- the note is not compared\n"
            "print([x] * 3)\n"
            "# [1, 1, 1]\n"
            "\n"
            "# the next statement's description\n"
            "print(2)\n")
    stmts = ast.parse(code).body
    assert [_readme.expected(code, s) for s in stmts] == ["a note, not output", "1", "[1, 1, 1]", None]
    problems, checked = _readme.run_block("<test>", 1, code)
    assert checked == 2 and [p["line"] for p in problems] == [7] and "no expected output" in problems[0]["error"]
