"""Dropout and stochastic depth in :func:`~equivalence.training.compare_training`: torch's random
masks recorded in the float32 run and replayed in the float64 runs and on the jaxconv side.

Each of torch's dropout-like modules (``nn.Dropout``, ``Dropout1d/2d/3d``, torchvision's
``StochasticDepth``, timm's ``DropPath``) computes ``x * noise``, ``noise`` the kept elements
scaled. In the float32 run a forward hook records, per call in call order, the CPU generator's
state before the call and the keep mask: the module run once more from that state on ones is
``noise`` itself (checked: ``output == x * noise`` exactly, else the module is refused). The
float64 runs (the twin and each step's reference) draw their own ``noise`` from the same states,
so the same elements are kept (checked) and scaled in float64. The jaxconv module of the same
name is called with ``mask=`` (:class:`jaxconv.nn.Dropout`), through
:func:`jaxconv.trace.intercept`, so its own scaling is what is compared.

Random numbers drawn elsewhere in the forward (``F.dropout`` called in a ``forward``) cannot be
matched to a module and are refused, naming the function where it goes through torch's function
dispatch, else by the generator's state moving outside the replayed calls.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np

from .._torch import to_numpy

#: Classes replayed by name besides torch.nn's (timm's DropPath, torchvision's StochasticDepth).
BY_NAME = ("DropPath", "StochasticDepth")
_DROPOUTS = ("dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout",
             "feature_alpha_dropout")
_RANDOM = ("bernoulli", "bernoulli_", "rand", "rand_like", "randn", "randn_like", "randint",
           "randperm", "multinomial", "uniform_", "normal_")


@dataclass
class Draw:
    """One call of a dropout-like module: its torch name, the generator state before it and the
    keep mask (booleans of the input's shape)."""

    name: str
    state: object
    keep: np.ndarray


def stochastic_modules(torch, model) -> dict:
    """``{id(module): name}`` of ``model``'s dropout-like modules; refuses alpha dropout."""
    nn = torch.nn
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, (nn.AlphaDropout, nn.FeatureAlphaDropout)) and m.p > 0:
            raise ValueError(f"compare_training: torch_model's {name!r} ({type(m).__name__}, "
                             f"p={m.p}) adds noise that is not a mask on its input, so it is not "
                             f"replayed on the jaxconv side: compare with p=0")
        if isinstance(m, (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)) or \
                type(m).__name__ in BY_NAME:
            out.setdefault(id(m), name)
    return out


def _noise(torch, module, x, state):
    """The module's ``noise`` drawn from generator ``state`` (the generator left as it was)."""
    after = torch.get_rng_state()
    torch.set_rng_state(state)
    try:
        with torch.no_grad():
            return type(module).forward(module, torch.ones_like(x))
    finally:
        torch.set_rng_state(after)


def _refusing_mode(torch, inside: list):
    """A torch function mode raising on a random function called outside the replayed modules."""
    from torch.overrides import TorchFunctionMode

    class Refuse(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            name = getattr(func, "__name__", "")
            if not inside[0] and name in _DROPOUTS + _RANDOM:
                p = kwargs.get("p", args[1] if len(args) > 1 else 0.5)
                training = kwargs.get("training", args[2] if len(args) > 2 else True)
                if name in _RANDOM or (p and training):
                    raise ValueError(f"compare_training: torch_model calls {name} in its forward, "
                                     f"outside a module: its random draws cannot be replayed on "
                                     f"the jaxconv side; use a module (nn.Dropout) or p=0")
            return func(*args, **kwargs)
    return Refuse()


@contextlib.contextmanager
def draws(torch, model, replay=None):
    """Within the block, record the draws of ``model``'s dropout-like modules into the yielded
    list (``replay=None``), or replay ``replay``'s (a recorded list) in the same order."""
    modules = stochastic_modules(torch, model)
    out: list = [] if replay is None else list(replay)
    pending, handles, count, inside = {}, [], [0], [0]
    start = torch.get_rng_state()
    last = [start]      # recording: where the generator must be, absent other draws

    def moved(where):
        if replay is None and not torch.equal(torch.get_rng_state(), last[0]):
            raise ValueError(f"compare_training: torch_model draws random numbers {where}, "
                             f"outside its dropout-like modules; they cannot be replayed on the "
                             f"jaxconv side")

    def pre(module, args):
        if not module.training:
            return
        name = modules[id(module)]
        moved(f"before calling {name!r}")
        inside[0] += 1
        if replay is not None:
            if count[0] >= len(replay) or replay[count[0]].name != name:
                got = repr(replay[count[0]].name) if count[0] < len(replay) else "nothing"
                raise RuntimeError(f"compare_training: the float64 run calls {name!r} where "
                                   f"torch's float32 run called {got}")
            torch.set_rng_state(replay[count[0]].state)
        x = args[0].detach()
        pending[id(module)] = (torch.get_rng_state(), x.clone() if getattr(module, "inplace", False) else x)

    def post(module, args, output):
        if not module.training:
            return
        state, x = pending.pop(id(module))
        noise = _noise(torch, module, x, state)
        inside[0] -= 1
        name = modules[id(module)]
        if replay is None:
            if not torch.equal(output.detach(), x * noise):
                raise ValueError(f"compare_training: torch_model's {name!r} ({type(module).__name__}) "
                                 f"does not return its input times a random mask, so its draws "
                                 f"cannot be replayed on the jaxconv side")
            out.append(Draw(name, state, to_numpy(noise != 0)))
            last[0] = torch.get_rng_state()
        else:
            if not np.array_equal(to_numpy(noise != 0), replay[count[0]].keep):
                raise RuntimeError(f"compare_training: {name!r} drew another mask in float64 than "
                                   f"in float32 from the same generator state")
            count[0] += 1

    by_id = {id(m): m for m in model.modules()}
    for key in modules:
        handles += [by_id[key].register_forward_pre_hook(pre), by_id[key].register_forward_hook(post)]
    try:
        if replay is None:
            with _refusing_mode(torch, inside):
                yield out
            moved("after its last dropout-like module" if out else "in its forward")
        else:
            yield out
            if count[0] != len(replay):
                raise RuntimeError(f"compare_training: the float64 run made {count[0]} dropout-like "
                                   f"calls, torch's float32 run {len(replay)}")
    finally:
        for h in handles:
            h.remove()
        if replay is not None:
            torch.set_rng_state(start)


def jax_masks(recorded) -> dict:
    """``{torch name: (keep mask, ...)}`` in call order, for :func:`replaying`."""
    out: dict = {}
    for d in recorded:
        out.setdefault(d.name, []).append(d.keep)
    return {k: tuple(v) for k, v in out.items()}


@contextlib.contextmanager
def replaying(model, masks: dict):
    """Within the block, the jaxconv modules named in ``masks`` apply the given masks, one per
    call in call order, instead of drawing (``mask=`` of :class:`jaxconv.nn.Dropout`)."""
    if not masks:
        yield
        return
    from jaxconv.nn import named_modules
    from jaxconv.trace import intercept

    found = dict(named_modules(model))
    missing = [n for n in masks if n not in found]
    if missing:
        raise ValueError(f"compare_training: torch_model's dropout-like module {missing[0]!r} has "
                         f"no module of that name in jax_model, so its masks cannot be replayed")
    used = dict.fromkeys(masks, 0)

    def hook(name):
        def call(module, cls, args, kwargs):
            if used[name] >= len(masks[name]):
                raise ValueError(f"compare_training: jax_model calls {name!r} more often than torch "
                                 f"({len(masks[name])} times)")
            mask = masks[name][used[name]]
            used[name] += 1
            return cls.__call__(module, *args, mask=mask, **kwargs)
        return call

    with intercept({found[n]: hook(n) for n in masks}):
        yield
    short = [n for n, k in used.items() if k != len(masks[n])]
    if short:
        raise ValueError(f"compare_training: jax_model calls {short[0]!r} {used[short[0]]} times, "
                         f"torch {len(masks[short[0]])}")
