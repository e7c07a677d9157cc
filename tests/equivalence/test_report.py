"""The report's table: a status column of its own, columns as wide as their cells, aligned numbers."""
import math

from equivalence.report import Report, Row

LONG = "layer4.1.downsample.0.a_really_long_parameter_name"


def _report():
    rows = [
        Row("layer", "conv1", "Conv2d", (2, 32, 28, 28), 2.98e-7, 3.6e-3, 1.66e-6, 0.144, e2e=2.9e-7,
            check="local"),
        Row("layer", "resblock1", "ResidualBlock", (2, 64, 14, 14), 0.0, 0.0, 9.7e-8, 0.0, check="glue"),
        Row("layer", "(root)", "AVeryLongCompositeModuleName", (2, 10), 1e-3, 1.0, 1e-7, 1e4,
            check="glue", note="worst at input of fc"),
        Row("grad", LONG, "parameter", (512, 1152), math.inf, math.inf, math.nan, math.inf,
            note="no jaxconv gradient of that name"),
    ]
    return Report(rows=rows, meta={"inputs": [{"shape": [2, 1, 28, 28], "dtype": "float32"}]})


def _table(text):
    lines = text.splitlines()
    heads = [i for i, line in enumerate(lines) if line.split()[:2] == ["name", "type"]]
    return lines, heads


def test_status_is_its_own_column_and_nothing_is_cut():
    report = _report()
    lines, heads = _table(report.to_text())
    assert len(heads) == 2  # the forward and the gradient section
    body = [line for line in lines if line.startswith(("ok ", "FAIL "))]
    assert len(body) == 4
    for line, row in zip(body, report.rows):
        status, name = line.split()[:2]
        assert status == ("ok" if row.passed else "FAIL") and name == row.name
    assert "ResidualBlock [code]" in body[1] and "AVeryLongCompositeModuleName [code]" in body[2]
    assert LONG in body[3] and "512x1152" in body[3]
    assert body[2].endswith("  worst at input of fc")


def test_columns_align_under_their_headers():
    report = _report()
    lines, heads = _table(report.to_text())
    head = lines[heads[0]]
    body = [line for line in lines if line.startswith(("ok ", "FAIL "))]
    for column, value in (("type", lambda r: r.type + (" [code]" if r.check == "glue" else "")),
                          ("shape", lambda r: "x".join(map(str, r.shape)))):
        start = head.index(column)  # text columns start under their header
        for line, r in zip(body, report.rows):
            assert line[start:].startswith(value(r) + " "), (column, line)
    for column, value in (("max abs", lambda r: f"{r.max_abs:.2e}"), ("tol", lambda r: f"{r.tol:.2e}"),
                          ("ratio", lambda r: f"{r.ratio:.2e}")):  # numbers end under theirs
        end = head.index(column) + len(column)
        for line, r in zip(body, report.rows):
            assert line[:end].endswith(" " + value(r)), (column, line)

