"""The result of :func:`~equivalence.training.compare_training`: every check of every step, a
per-step table, the verdict, a JSON certificate and a plot of divergence against its bound."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from ..report import _devices, _versions, write_json
from ..tolerance import C

#: The stages of one step's local check, in the order a step computes them.
LOCAL = ("start", "loss", "grad", "buffer", "clip", "update", "schedule")
TRAJECTORY = "trajectory"

POLICY = (
    "start: jaxconv's model holds torch's parameters and buffers before training. "
    "Each step is checked locally: jaxconv starts from torch's exact float32 state (parameters, "
    "buffers, optimizer state, learning rate) and batch, so the only allowed difference is the "
    "rounding of that one step. Stages: loss, grad (every parameter), buffer (train-mode "
    "BatchNorm statistics after the forward), clip (the total norm and the clipped gradients of "
    "torch's gradients), update (every optimizer slot and every parameter after jaxconv's update "
    "of torch's clipped gradients from torch's optimizer state). Each elementwise: |jax - torch| "
    "<= c * max(E, |torch32 - torch64|) + {f:g} ulps of the value, E the running error bound of "
    "jaxconv's code for that stage (each op's rounding carried to first order through its jaxpr: "
    "for the update the terms of the update formula, |p|, lr |m|, |m| / (sqrt(v) + eps), ...; "
    "for gradients it sees cancellation), torch64 the same stage of torch in float64 on the same "
    "float32 inputs (its own rounding): a correct port is within E of the exact result and torch "
    "within |torch32 - torch64|, so within their sum of each other. "
    "schedule (learning rate, and a "
    "cycled momentum or beta1, per group, before the step): |jax - torch| <= c * "
    "eps(hyperparameter dtype) * (t + 1) * S, the rounding of t + 1 scheduler steps relative to S, "
    "the largest value the schedule combines (the value, initial_lr, max_lr, min_lr, the momentum "
    "bounds). trajectory: both "
    "run on their own from the same start; at step t each parameter, buffer and optimizer slot "
    "(and the loss) satisfies ||jax_t - torch32_t|| <= c * max(||R_t||, ||torch32_t - "
    "torch64_t||) + {f:g} ulps, torch64 the same recipe run in float64 (model, optimizer state, "
    "scheduler deep-copied), R_t the rounding the local checks allow (each step's gradient "
    "rounding and the update's) carried through the optimizer's recursion by the running error "
    "bound (a buffer's: its local roundings added up): rounding alone moves torch that far, a "
    "wrong recipe moves jaxconv much further. The loss's R_t follows from the parameters' "
    "allowances to first order: sum over parameters p of ||dL/dp|| * A_p / c (Cauchy-Schwarz "
    "per tensor; dL/dp torch's gradient at step t, A_p the parameter's trajectory bound after "
    "step t - 1) plus the loss's local rounding |torch32 - torch64|. c = {c:g}. A check passes "
    "when error / bound <= 1; the first failing check (step, stage, parameter, quantity) is the "
    "first divergence, local checks before the trajectory."
)

#: Ulps of the value every bound allows at least (two implementations of one rounded op may
#: differ by an ulp each way).
FLOOR_ULPS = 2.0


def policy_text(c: float = C) -> str:
    """The training check's tolerance policy, as one paragraph."""
    return POLICY.format(c=c, f=FLOOR_ULPS)


@dataclass
class Check:
    """One checked quantity at one step.

    ``stage``: ``'start'`` (the models before training), ``'loss'``, ``'grad'``, ``'buffer'``, ``'clip'``, ``'update'``, ``'schedule'``
    (the local check) or ``'trajectory'``; ``name``: the parameter or buffer (torch name), or
    ``'group k'``; ``quantity``: what of it (``'param'``, ``'grad'``, a slot such as
    ``'momentum_buffer'`` or ``'exp_avg'``, ``'running_mean'``, ``'total_norm'``, ``'lr'``);
    ``error`` / ``bound``: at the element with the worst ratio (norm-wise checks: the norms);
    ``ratio``: error / bound, passing when ``<= 1``."""

    step: int
    stage: str
    name: str
    quantity: str
    error: float
    bound: float
    ratio: float
    note: str = ""

    @property
    def passed(self) -> bool:
        """Whether the error is within its bound."""
        return self.ratio <= 1.0

    def where(self) -> str:
        """``step 3, update of fc.weight (exp_avg)``."""
        return f"step {self.step}, {self.stage} of {self.name} ({self.quantity})"


@dataclass
class StepRow:
    """One line of the table: the step's losses (torch's and jaxconv's free-running), torch's
    learning rates and gradient norm (before clipping), and its worst local and trajectory
    checks."""

    step: int
    loss_torch: float
    loss_jax: float
    lr: list
    grad_norm: float
    local: Check | None
    trajectory: Check | None


def _finite(x):
    return x if x is None or math.isfinite(x) else str(x)


def _check_dict(c: Check | None) -> dict | None:
    if c is None:
        return None
    d = asdict(c)
    d.update(passed=c.passed, error=_finite(c.error), bound=_finite(c.bound), ratio=_finite(c.ratio))
    return d


def _cell(c: Check | None) -> str:
    if c is None:
        return ""
    return f"{c.error:.2e}/{c.bound:.2e} {c.name} {c.quantity}"


@dataclass
class TrainingReport:
    """What :func:`~equivalence.training.compare_training` found: ``steps`` (one
    :class:`StepRow` each), ``checks`` (every :class:`Check`), ``meta`` (models, optimizer,
    steps, timing) and the policy constant ``c``."""

    steps: list
    checks: list
    meta: dict = field(default_factory=dict)
    c: float = C

    @property
    def passed(self) -> bool:
        """True when every check of every step is within its bound."""
        return all(c.passed for c in self.checks)

    @property
    def first_divergence(self) -> Check | None:
        """The first failing check: the earliest step, local stages in computing order before
        the trajectory (``None`` when all pass)."""
        order = {s: i for i, s in enumerate(LOCAL + (TRAJECTORY,))}
        failing = [c for c in self.checks if not c.passed]
        return min(failing, key=lambda c: (c.step, order.get(c.stage, 99)), default=None)

    @property
    def policy(self) -> str:
        """The tolerance policy, as text."""
        return policy_text(self.c)

    def worst(self, stage: str | None = None) -> Check | None:
        """The check with the largest ratio (of one ``stage``)."""
        return max((c for c in self.checks if stage in (None, c.stage)), key=lambda c: c.ratio,
                   default=None)

    def verdict(self) -> str:
        """One line: PASS with the worst ratio, or FAIL naming the first divergence."""
        if self.passed:
            w = self.worst()
            return (f"PASS: {len(self.steps)} steps, {len(self.checks)} checks within their bounds "
                    f"(worst error/bound {0.0 if w is None else w.ratio:.3g})")
        first = self.first_divergence
        bad = sum(not c.passed for c in self.checks)
        hint = (" (equivalence.compare(..., train=True, grads=True) on that step's state names the layer)"
                if first.stage in ("loss", "grad", "buffer") else "")
        return (f"FAIL: {bad} of {len(self.checks)} checks out of bounds; first divergence at "
                f"{first.where()}: error {first.error:.3g} > bound {first.bound:.3g}"
                f"{' ' + first.note if first.note else ''}{hint}")

    def to_text(self) -> str:
        """The per-step table, the failing checks, the policy and the verdict."""
        m = self.meta
        head = ("step", "loss torch", "loss jax", "lr", "grad norm", "local err/bound (worst)",
                "trajectory err/bound (worst)", "")
        rows = [(str(s.step), f"{s.loss_torch:.6g}", f"{s.loss_jax:.6g}",
                 ",".join(f"{lr:.4g}" for lr in s.lr), f"{s.grad_norm:.4g}", _cell(s.local),
                 _cell(s.trajectory),
                 "ok" if all(c is None or c.passed for c in (s.local, s.trajectory)) else "FAIL")
                for s in self.steps]
        widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
        line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
        lines = [f"compare_training: {m.get('torch_type')} (torch) vs {m.get('jax_type')} (jaxconv), "
                 f"{m.get('optimizer')}, scheduler {m.get('scheduler')}, loss {m.get('loss')}, "
                 f"max_grad_norm {m.get('max_grad_norm')}, {len(self.steps)} steps"
                 + (f", resumed after torch's step {m['resumed_at']}" if m.get("resumed_at") else ""), "",
                 line(head)] + [line(r) for r in rows]
        failing = [c for c in self.checks if not c.passed]
        if failing:
            lines += ["", f"failing checks ({len(failing)}, first 20):"]
            lines += [f"  {c.where()}: error {c.error:.3g}, bound {c.bound:.3g}, ratio {c.ratio:.3g}"
                      + (f"  {c.note}" if c.note else "") for c in failing[:20]]
        lines += ["", "policy: " + self.policy, "", self.verdict()]
        return "\n".join(lines)

    __str__ = to_text

    def to_dict(self) -> dict:
        """The certificate as plain data: per step the worst checks, and every failing check."""
        return {
            "verdict": "PASS" if self.passed else "FAIL",
            "passed": self.passed,
            "summary": self.verdict(),
            "first_divergence": _check_dict(self.first_divergence),
            "recipe": {k: self.meta.get(k) for k in ("torch_type", "jax_type", "optimizer", "scheduler",
                                                     "loss", "max_grad_norm", "resumed_at")},
            "steps": [{"step": s.step, "loss_torch": _finite(s.loss_torch), "loss_jax": _finite(s.loss_jax),
                       "lr": s.lr, "grad_norm": _finite(s.grad_norm), "local": _check_dict(s.local),
                       "trajectory": _check_dict(s.trajectory)} for s in self.steps],
            "failing": [_check_dict(c) for c in self.checks if not c.passed],
            "checks": len(self.checks),
            "policy": {"text": self.policy, "c": self.c, "floor_ulps": FLOOR_ULPS},
            "precision": self.meta.get("precision"),
            "versions": _versions(),
            "devices": _devices(),
            "seconds": self.meta.get("seconds"),
        }

    def to_json(self, path=None, indent: int = 2) -> str:
        """The certificate as JSON text; also written to ``path`` when given."""
        return write_json(self.to_dict(), path, indent)

    def plot(self, path) -> None:
        """Write a PNG of each step's worst local and trajectory error against its bound (log)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7.0, 4.5))
        x = [s.step for s in self.steps]
        for key, color in (("local", "tab:blue"), ("trajectory", "tab:orange")):
            checks = [getattr(s, key) for s in self.steps]
            bound = [c.bound if c is not None and c.bound > 0 else float("nan") for c in checks]
            finite = [b for b in bound if b == b and math.isfinite(b)]
            floor = (min(finite) if finite else 1e-12) / 1e3    # exact agreement is drawn here
            err = [float("nan") if c is None else max(c.error, floor) if math.isfinite(c.error)
                   else max(finite or [1.0]) * 1e3 for c in checks]
            ax.semilogy(x, bound, "--", color=color, label=f"{key} bound")
            ax.semilogy(x, err, "o-", color=color, markersize=4, label=f"{key} |jax - torch|")
            bad = [(s, e) for s, e, c in zip(x, err, checks) if c is not None and not c.passed]
            if bad:
                ax.scatter(*zip(*bad), color="tab:red", zorder=3, s=30)
        ax.set_xlabel("step")
        ax.set_ylabel("error and its bound (worst check of the step, log)")
        ax.set_title(self.verdict()[:110], fontsize=8)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
