"""The result of a comparison: per-layer rows, verdict, text, JSON certificate and plot."""
from __future__ import annotations

import json
import math
import platform
from dataclasses import asdict, dataclass, field

from . import tolerance as tol_mod


def write_json(data, path=None, indent: int = 2) -> str:
    """``data`` as JSON text; also written to ``path`` (with a final newline) when given."""
    text = json.dumps(data, indent=indent)
    if path is not None:
        with open(path, "w") as f:
            f.write(text + "\n")
    return text


@dataclass
class Row:
    """One check: a layer's forward (``section='layer'``), a gradient or a buffer.

    ``max_abs`` / ``max_rel``: largest absolute and relative difference from torch; ``ratio``:
    the largest error / tolerance over the elements; ``tol``: the tolerance (absolute, from
    :mod:`equivalence.tolerance`) at the element where ``ratio`` is reached, whose error is
    ``err_at``; when both sides agree exactly everywhere (``ratio`` 0), the largest tolerance
    of the check; ``nan`` when there is nothing to compare with. ``check``: ``'local'`` (a leaf
    on torch's inputs) or ``'glue'`` (a composite's own code); ``e2e``: the free-running
    difference, for information; ``dtype``: the dtype it was checked in (see
    :mod:`equivalence.tolerance`).
    """

    section: str
    name: str
    type: str
    shape: tuple
    max_abs: float
    max_rel: float
    tol: float
    ratio: float
    note: str = ""
    check: str = ""
    e2e: float | None = None
    err_at: float | None = None  # the error at the element with the worst ratio (where ``tol`` is)
    dtype: str = ""  # the dtype the check's tolerance is computed in

    @property
    def passed(self) -> bool:
        """Whether the error is within tolerance (``ratio <= 1``)."""
        return self.ratio <= 1.0


def _versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("torch", "jax", "jaxlib", "flax", "jaxconv", "numpy"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


def _devices() -> dict:
    import jax

    out = {"jax": [str(d) for d in jax.devices()], "jax_backend": jax.default_backend()}
    try:
        import torch

        out["torch"] = "cuda" if torch.cuda.is_available() else "cpu"
        out["torch_threads"] = torch.get_num_threads()
    except ImportError:  # pragma: no cover
        out["torch"] = None
    return out


def _finite(x):
    if x is None:
        return None
    return x if math.isfinite(x) else str(x)


_HEAD = ("", "name", "type", "shape", "dtype", "max abs", "max rel", "tol", "ratio", "end-to-end")
_LEFT = 5  # the first five columns are text, aligned left; the numbers align right


def _cells(r: Row) -> tuple:
    """The text cells of one row of the table."""
    return ("ok" if r.passed else "FAIL", r.name, r.type + (" [code]" if r.check == "glue" else ""),
            "x".join(map(str, r.shape)) or "()", r.dtype, f"{r.max_abs:.2e}", f"{r.max_rel:.2e}",
            f"{r.tol:.2e}", f"{r.ratio:.2e}", "" if r.e2e is None else f"{r.e2e:.2e}")


def _widths(rows) -> list:
    """Each column's width: its widest cell, so no name, type or shape is ever cut."""
    return [max(len(cells[i]) for cells in [_HEAD] + [_cells(r) for r in rows])
            for i in range(len(_HEAD))]


def _line(cells, widths) -> str:
    return "  ".join(c.ljust(w) if i < _LEFT else c.rjust(w)
                    for i, (c, w) in enumerate(zip(cells, widths))).rstrip()


@dataclass
class Report:
    """What :func:`equivalence.compare` found.

    ``rows``: every check in data-flow order (layers, then gradients, then buffers);
    ``meta``: seed, inputs, mode, precision flags, timing; ``structure``: call-structure
    mismatches (a layer called by one side only). ``passed`` is the verdict.
    """

    rows: list
    meta: dict
    c: float = tol_mod.C
    structure: list = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when every check is within tolerance and both sides called the same layers."""
        return not self.structure and all(r.passed for r in self.rows)

    @property
    def first_divergence(self) -> Row | None:
        """The first failing forward check in data-flow order (else the first failing row)."""
        failing = [r for r in self.rows if not r.passed]
        layers = [r for r in failing if r.section == "layer"]
        return (layers or failing or [None])[0]

    @property
    def policy(self) -> str:
        """The tolerance policy this report used, as text."""
        return tol_mod.policy_text(self.c)

    def worst_ratio(self, section: str | None = None) -> float:
        """Largest error/tolerance ratio over the rows (of one ``section``)."""
        return max((r.ratio for r in self.rows if section in (None, r.section)), default=0.0)

    def verdict(self) -> str:
        """One line: PASS or FAIL with the first diverging layer."""
        n = len(self.rows)
        if self.passed:
            return (f"PASS: {n} checks within tolerance (worst error/tolerance ratio "
                    f"{self.worst_ratio():.3g})")
        first = self.first_divergence
        where = f"first divergence at {first.name} ({first.type}, {first.section}, ratio {first.ratio:.3g})" \
            if first else "call structure differs"
        bad = sum(not r.passed for r in self.rows)
        return f"FAIL: {bad} of {n} checks out of tolerance; {where}"

    def to_text(self) -> str:
        """The report as a table, the policy and the verdict line."""
        m = self.meta
        lines = [f"equivalence: {m.get('torch_type')} (torch) vs {m.get('jax_type')} (jaxconv), "
                 f"{'train' if m.get('train') else 'eval'} mode, seed {m.get('seed')}, inputs "
                 + ", ".join(f"{tuple(i['shape'])} {i['dtype']}" for i in m.get("inputs", []))
                 + (f", autocast {m['autocast']}" if m.get("autocast") else "")]
        widths = _widths(self.rows)
        titles = {"layer": "forward, per layer (local check on torch's inputs)",
                  "grad": "gradients of sum(output * cotangent)",
                  "buffer": "BatchNorm buffers after the training forward (local: the update on torch's inputs)"}
        for section in ("layer", "grad", "buffer"):
            rows = [r for r in self.rows if r.section == section]
            if rows:
                lines += ["", titles[section], _line(_HEAD, widths)]
                lines += [_line(_cells(r), widths) + (f"  {r.note}" if r.note else "") for r in rows]
        if self.structure:
            lines += ["", "call structure differs:"] + [f"  {s}" for s in self.structure]
        lines += ["", "policy: " + self.policy, "", self.verdict()]
        return "\n".join(lines)

    __str__ = to_text

    def to_dict(self) -> dict:
        """The certificate as plain data (see :meth:`to_json`)."""
        rows = []
        for r in self.rows:
            d = asdict(r)
            d["shape"] = list(r.shape)
            d["passed"] = r.passed
            for k in ("max_abs", "max_rel", "tol", "ratio", "e2e", "err_at"):
                d[k] = _finite(d[k])
            rows.append(d)
        first = self.first_divergence
        return {
            "verdict": "PASS" if self.passed else "FAIL",
            "passed": self.passed,
            "summary": self.verdict(),
            "first_divergence": None if first is None else first.name,
            "seed": self.meta.get("seed"),
            "inputs": self.meta.get("inputs"),
            "mode": "train" if self.meta.get("train") else "eval",
            "grads": self.meta.get("grads"),
            "autocast": self.meta.get("autocast"),
            "models": {"torch": self.meta.get("torch_type"), "jax": self.meta.get("jax_type")},
            "versions": _versions(),
            "devices": _devices(),
            "precision": self.meta.get("precision"),
            "policy": {"text": self.policy, "c": self.c,
                       "formula": "c * eps(dtype) * sqrt(n) * S",
                       "formula_reduced": f"{tol_mod.ROUNDING:g} * eps(dtype) * R + c * eps(float32) * sqrt(n) * S"},
            "structure": list(self.structure),
            "worst_ratio": _finite(self.worst_ratio()),
            "seconds": self.meta.get("seconds"),
            "rows": rows,
        }

    def to_json(self, path=None, indent: int = 2) -> str:
        """The certificate as JSON text; also written to ``path`` when given."""
        return write_json(self.to_dict(), path, indent)

    def plot(self, path) -> None:
        """Write a PNG of each check's max error against its tolerance (log scale)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = self.rows
        x = list(range(len(rows)))
        tol = [r.tol if math.isfinite(r.tol) and r.tol > 1e-30 else float("nan") for r in rows]
        finite = [t for t in tol if t == t]
        floor = (min(finite) if finite else 1e-8) / 1e3  # exact agreement is drawn here
        raw = [r.err_at if r.err_at is not None else r.max_abs for r in rows]
        err = [max(e, floor) if math.isfinite(e) else max(finite or [1.0]) * 1e6 for e in raw]
        fig, ax = plt.subplots(figsize=(max(6.0, 0.28 * len(rows) + 2), 4.5))
        ax.semilogy(x, tol, "_", markersize=14, color="tab:gray", label="tolerance")
        colors = ["tab:green" if r.passed else "tab:red" for r in rows]
        ax.scatter(x, err, c=colors, s=18, zorder=3,
                   label="|jaxconv - torch| at the worst element (bottom line: exact)")
        ax.axhline(floor, color="tab:green", linewidth=0.5, linestyle=":")
        ax.set_xticks(x)
        ax.set_xticklabels([f"{r.name or '(root)'}" + ("'" if r.section == "grad" else "")
                            for r in rows], rotation=90, fontsize=7)
        ax.set_ylabel("absolute error vs tolerance (log)")
        ax.set_title(self.verdict(), fontsize=9)
        ax.legend(fontsize=8, loc="lower left", bbox_to_anchor=(0, 1.06), ncol=2, frameon=False)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
