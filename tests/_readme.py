"""Run the README's Python blocks and compare what they print with what the README says.

Run as ``python tests/_readme.py README.md results.json`` (a fresh interpreter, so that the
examples see JAX's defaults, not the test suite's x64). Each block runs on its own, in a fresh
namespace, one top-level statement at a time, with the statement's printed text captured.

**The convention** (stated in the README's Tests section): a top-level statement that prints
carries its expected output as comments, on its last line and on the comment lines right below
it. In the expected text,

- ``...`` matches anything (doctest's ELLIPSIS);
- ``~1e-6`` matches a number no larger than ten times that (an error of about 1e-6);
- `` -- `` starts a note for the reader, which is not compared;
- runs of whitespace compare equal (numpy prints arrays over several lines).

A statement that prints and states no expected output is an error too, so every printed line
in the README is checked.
"""
from __future__ import annotations

import ast
import contextlib
import io
import json
import linecache
import math
import re
import sys
import time
import tokenize
import traceback
import types

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_TOKEN = re.compile(rf"(\.\.\.|~{_NUMBER})")


def blocks(text: str) -> list[tuple[int, str]]:
    """``(first line number, code)`` of every fenced ``python`` block."""
    out = []
    for m in re.finditer(r"^```python\n(.*?)^```", text, re.S | re.M):
        out.append((text.count("\n", 0, m.start()) + 2, m.group(1)))
    return out


def _comments(code: str) -> dict[int, tuple[str, bool]]:
    """line -> (comment text, whether the line holds nothing else)."""
    out = {}
    for tok in tokenize.generate_tokens(io.StringIO(code).readline):
        if tok.type == tokenize.COMMENT:
            line = tok.start[0]
            alone = not code.splitlines()[line - 1][:tok.start[1]].strip()
            out[line] = (tok.string[1:].strip(), alone)
    return out


def expected(code: str, stmt: ast.stmt) -> str | None:
    """The expected output a statement states, or ``None``."""
    comments, lines = _comments(code), code.splitlines()
    texts, line = [], stmt.end_lineno
    if line in comments and not comments[line][1]:
        texts.append(comments[line][0])
    line += 1
    while line <= len(lines) and line in comments and comments[line][1]:
        texts.append(comments[line][0])
        line += 1
    if not texts:
        return None
    return " ".join(t.split(" -- ")[0] for t in texts).strip()


def matches(printed: str, want: str) -> bool:
    """Whether ``printed`` is what ``want`` (the convention above) describes."""
    printed, want = " ".join(printed.split()), " ".join(want.split())
    pattern, bounds = "", []
    for piece in _TOKEN.split(want):
        if piece == "...":
            pattern += ".*?"
        elif piece.startswith("~") and re.fullmatch(_NUMBER, piece[1:]):
            pattern += f"({_NUMBER})"
            bounds.append(10 * float(piece[1:]))
        else:
            pattern += re.escape(piece)
    m = re.fullmatch(pattern, printed, re.S)
    return bool(m) and all(math.isfinite(float(v)) and abs(float(v)) <= b
                           for v, b in zip(m.groups(), bounds))


def run_block(path: str, first: int, code: str) -> tuple[list[dict], int]:
    """Run one block: its problems (none when every print matched) and how many printing
    statements it compared."""
    padded = "\n" * (first - 1) + code      # line numbers are the README's
    tree = ast.parse(padded, path)
    main = types.ModuleType("__main__")     # a fresh __main__: what the block defines is importable
    saved, sys.modules["__main__"] = sys.modules["__main__"], main
    settings = _settings()
    try:
        return _run(path, padded, tree, main.__dict__)
    finally:
        sys.modules["__main__"] = saved
        _restore(settings)      # a block's jax.config.update(...) does not reach the next


def _settings():
    """JAX's configuration and torch's default dtype (the runner imports both first)."""
    import jax
    import torch

    return dict(jax.config.values), torch.get_default_dtype()


def _restore(settings) -> None:
    import jax
    import torch

    config, dtype = settings
    for name, value in config.items():
        if jax.config.values.get(name, value) != value:
            jax.config.update(name, value)
    torch.set_default_dtype(dtype)


def _run(path, padded, tree, namespace):
    problems, checked = [], 0
    for stmt in tree.body:
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                exec(compile(ast.Module([stmt], []), path, "exec"), namespace)
        except BaseException:  # noqa: BLE001 - reported with the README line
            problems.append({"line": stmt.lineno, "error": traceback.format_exc(limit=-3)})
            return problems, checked
        printed = out.getvalue()
        want = expected(padded, stmt)
        if printed and want is None:
            problems.append({"line": stmt.lineno, "printed": printed,
                             "error": "prints but states no expected output"})
        elif printed:
            checked += 1
            if not matches(printed, want):
                problems.append({"line": stmt.lineno, "printed": printed, "expected": want})
        elif want is not None and not printed and _prints(stmt):
            problems.append({"line": stmt.lineno, "expected": want, "error": "printed nothing"})
    return problems, checked


def _prints(stmt) -> bool:
    return any(isinstance(n, ast.Call) and getattr(n.func, "id", None) == "print"
               for n in ast.walk(stmt))


def main(readme: str, results: str) -> None:
    text = open(readme).read()
    linecache.cache[readme] = (len(text), None, text.splitlines(True), readme)
    report = []
    for first, code in blocks(text):
        start = time.perf_counter()
        problems, checked = run_block(readme, first, code)
        report.append({"first": first, "problems": problems, "checked": checked,
                       "seconds": round(time.perf_counter() - start, 2)})
    with open(results, "w") as f:
        json.dump(report, f)


if __name__ == "__main__":
    sys.path.pop(0)     # this folder: its equivalence/ (the tests) would shadow the package
    main(*sys.argv[1:])
