"""The comparison of two arrays under a tolerance (:func:`errors`), the policy's one measure of a
check, and :func:`max_difference`."""
from __future__ import annotations

import numpy as np


def _difference(a, e):
    """``|a - e|`` with NaN/inf at the same positions (inf of the same sign) as 0, and NaN/inf on
    one side only as inf; also that one-sided mask."""
    same = (np.isnan(a) & np.isnan(e)) | (np.isinf(a) & (a == e))
    one_sided = ~same & ~(np.isfinite(a) & np.isfinite(e))
    with np.errstate(invalid="ignore"):
        return np.where(one_sided, np.inf, np.where(same, 0.0, np.abs(a - e))), one_sided


def max_difference(actual, expected) -> float:
    """The largest ``|actual - expected|``, NaN and inf compared as :func:`errors` does (finite
    values block by block, as in :func:`_finite_errors`)."""
    a, e = np.asarray(actual), np.asarray(expected)
    if a.shape == e.shape:
        a, e, top = a.reshape(-1), e.reshape(-1), 0.0
        for s in range(0, a.size, _BLOCK):
            block = float(np.max(np.abs(a[s:s + _BLOCK].astype(np.float64) - e[s:s + _BLOCK])))
            if not np.isfinite(block):  # NaN or inf on a side: the general path
                break
            top = max(top, block)
        else:
            return top
    diff, _ = _difference(np.asarray(a, np.float64), np.asarray(e, np.float64))
    return float(np.max(diff, initial=0.0))


def errors(actual, expected, tol) -> dict:
    """Max abs error, max relative error, the worst error/tolerance ratio and its tolerance.

    NaN at the same positions on both sides, and inf of the same sign, count as agreement (error
    0); NaN or inf on one side only is an infinite error, named in ``note``. ``tol`` is the
    tolerance at the element with the worst ratio; where the sides agree exactly everywhere, the
    largest tolerance of the check.

    Finite values and positive tolerances are checked block by block (:func:`_finite_errors`).
    """
    a, e = np.asarray(actual), np.asarray(expected)
    if a.shape != e.shape:
        return {"max_abs": float("inf"), "max_rel": float("inf"), "tol": float("nan"), "ratio": float("inf"),
                "err_at": float("inf"), "note": f"shape {a.shape} != torch's {e.shape}"}
    if a.size == 0:
        return {"max_abs": 0.0, "max_rel": 0.0, "tol": 0.0, "ratio": 0.0, "err_at": 0.0, "note": ""}
    tol = np.broadcast_to(np.asarray(tol, np.float64), a.shape)
    found = _finite_errors(a, e, tol)
    return found if found is not None else _general_errors(np.asarray(a, np.float64), np.asarray(e, np.float64), tol)


#: Elements per block of :func:`_finite_errors`: its float64 temporaries stay in cache.
_BLOCK = 1 << 15


def _finite_errors(a, e, tol) -> dict | None:
    """:func:`errors` block by block in float64, or ``None`` at a NaN or inf value or a tolerance
    that is not positive (:func:`_general_errors` handles those). Whole-array float64
    temporaries cost a page fault per 4 KB written and made this 5-6x slower (15 against 3 ms for
    600k elements; ~1 s of a 7.5 s ``compare`` of vit_b_16, 2-core VM)."""
    a, e = a.reshape(-1), e.reshape(-1)
    scalar = all(st == 0 for st in tol.strides)
    t = tol.reshape(-1)  # a view, unless tol is broadcast along some axes only (then a copy)
    if scalar and not tol.flat[0] > 0:
        return None
    top = max(float(e.max()), -float(e.min()))  # NaN or inf where e has one
    if not np.isfinite(top):
        return None
    floor = max(top * np.finfo(np.float32).eps, np.finfo(np.float64).tiny)
    worst, at, max_abs, max_rel = -1.0, 0, 0.0, 0.0
    for s in range(0, a.size, _BLOCK):
        x, y, tb = (v[s:s + _BLOCK].astype(np.float64) for v in (a, e, t))
        d = np.abs(x - y)
        if not np.isfinite(d).all() or not scalar and not (tb > 0).all():
            return None
        r = d / tb
        k = int(np.argmax(r))
        if r[k] > worst:     # the first of equal ratios, as one argmax would
            worst, at = float(r[k]), s + k
        max_abs = max(max_abs, float(d.max()))
        max_rel = max(max_rel, float(np.max(d / np.maximum(np.abs(y), floor))))
    if worst == 0:      # exact agreement everywhere: the largest tolerance
        at = int(np.argmax(t))
    return {"max_abs": max_abs, "max_rel": max_rel, "tol": float(t[at]), "ratio": worst,
            "err_at": abs(float(a[at]) - float(e[at])), "note": ""}


def _general_errors(a, e, tol) -> dict:
    """:func:`errors` of float64 arrays of one shape, NaN, inf and any tolerance handled."""
    diff, one_sided = _difference(a, e)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(diff == 0, 0.0, diff / tol)
        ratio = np.where(np.isnan(ratio), np.inf, ratio)  # a NaN tolerance proves nothing
        # relative to |torch|, floored at eps * max|torch| so exact zeros do not divide by zero
        finite = np.where(np.isfinite(e), np.abs(e), 0.0)
        floor = max(float(np.max(finite)) * np.finfo(np.float32).eps, np.finfo(np.float64).tiny)
        rel = np.where(diff == 0, 0.0, diff / np.maximum(finite, floor))
    worst = float(np.max(ratio))
    i = int(np.argmax(ratio)) if worst > 0 else int(np.argmax(np.where(np.isfinite(tol), tol, -1.0)))
    fa, fe = np.isfinite(a), np.isfinite(e)
    counts = [(int((one_sided & m).sum()), what) for m, what in (
        (~fa & fe, "in jaxconv only"), (fa & ~fe, "in torch only"), (~fa & ~fe, "different on the two sides"))]
    note = ("NaN/inf " + ", ".join(f"{what} at {k} element(s)" for k, what in counts if k)
            if one_sided.any() else "")
    return {"max_abs": float(np.max(diff)), "max_rel": float(np.max(rel)),
            "tol": float(tol.flat[i]), "ratio": worst, "err_at": float(diff.flat[i]), "note": note}
