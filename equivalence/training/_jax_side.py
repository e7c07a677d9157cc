"""The jaxconv side of :func:`~equivalence.training.compare_training`: the model (a clone), its
loss and optimizer; the free run, and the stages of one step from a given state."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxconv.optim import Optimizer
from jaxconv.optim.optimizer import param_name

from ..tolerance import running
from ._masks import replaying


def clip_fn(max_grad_norm):
    """``grads -> (clipped, total_norm)`` with :func:`jaxconv.nn.utils.clip_grad_norm`."""
    from jaxconv.nn import utils

    return lambda grads: utils.clip_grad_norm(grads, max_grad_norm)


def _updated(frozen: frozenset):
    """The ``nnx`` filter of the parameters the optimizer updates (all but ``frozen``)."""
    if not frozen:
        return nnx.Param
    return lambda path, value: isinstance(value, nnx.Param) and param_name(path) not in frozen


def _loss_grad(graphdef, loss_graph, frozen, params, rest, loss_state, x, y, masks):
    """jaxconv's loss of ``(x, y)``, its gradients and the buffers after the forward, torch's
    dropout ``masks`` replayed (:func:`._masks.replaying`). Module level, with the graphs
    static, so one model's compilation serves every comparison of it."""
    def f(p):
        m = nnx.merge(graphdef, p, jax.tree.map(lambda a: a, rest))
        with replaying(m, masks):
            y_hat = m(x)
        out = nnx.merge(loss_graph, loss_state)(y_hat, y)
        return out, nnx.split(m, _updated(frozen), ...)[2]
    (loss, new_rest), grads = jax.value_and_grad(f, has_aux=True)(params)
    return loss, grads, new_rest


_loss_grad_jit = jax.jit(_loss_grad, static_argnums=(0, 1, 2))


class JaxSide:
    """The jaxconv model (a clone), its loss and optimizer: the free run, and the local step
    from a given state."""

    def __init__(self, jax_model, jax_loss, tx: Optimizer, max_grad_norm, start=None,
                 frozen=frozenset()):
        """``start``: the optimizer state to start from (``tx.init``'s layout, or leaves in
        its order such as an ``nnx.Optimizer``'s pure state; or a function of ``tx.init``'s
        state giving it), else ``tx.init(params)``."""
        model = nnx.clone(jax_model)
        model.train()
        self.frozen = frozenset(frozen)
        self.graphdef, self.params, self.rest = nnx.split(model, _updated(self.frozen), ...)
        self.loss_graph, self.loss_state = nnx.split(jax_loss)
        self.tx, self.clip = tx, None if max_grad_norm is None else clip_fn(max_grad_norm)
        self.opt_state = tx.init(self.params)
        if callable(start):
            start = start(self.opt_state)
        if start is not None:
            self.opt_state = _like(self.opt_state, start)
        self.carried: dict = {}     # (name, quantity) -> the rounding the free run carries (see _carry)
        # committed, as the step's outputs will be: one compilation, not one per placement
        device = jax.devices()[0]
        self.params, self.rest, self.opt_state = jax.device_put(
            (self.params, self.rest, self.opt_state), device)
        self.update = jax.jit(self._update)
        # the running error bounds of the local stages, each traced once per signature
        self.running_forward = running.RunningBound(self.local_forward)
        self.running_update = running.RunningBound(self.local_update)
        self.running_carry = running.RunningBound(
            lambda *a: tuple(self.local_update(*a)[k] for k in ("params", "slots")))

    def loss_grad(self, params, rest, x, y, masks, jit=True):
        """:func:`_loss_grad` of this model and loss."""
        fn = _loss_grad_jit if jit else _loss_grad
        return fn(self.graphdef, self.loss_graph, self.frozen, params, rest, self.loss_state, x, y,
                  masks)

    def _update(self, params, grads, opt_state, loss):
        if self.clip is not None:
            grads, _ = self.clip(grads)
        updates, opt_state = self.tx.update(grads, opt_state, params, value=loss)
        return optax.apply_updates(params, updates), opt_state

    def step(self, x, y, masks) -> np.ndarray:
        """One free-running training step (torch's dropout ``masks`` replayed); the loss."""
        loss, grads, self.rest = self.loss_grad(self.params, self.rest, x, y, masks)
        self.params, self.opt_state = self.update(self.params, grads, self.opt_state, loss)
        return np.asarray(loss)

    def at(self, tree, values: dict):
        """``tree`` (the params' or the rest's) with the leaves ``values`` names, by torch name."""
        return jax.tree_util.tree_map_with_path(
            lambda path, leaf: jnp.asarray(values[param_name(path)], leaf.dtype)
            if param_name(path) in values else leaf, tree)

    def local_forward(self, params, rest, x, y, masks):
        """The loss, gradients and buffers from torch's ``(params, rest)`` (unjitted, for the
        running error bound)."""
        loss, grads, new_rest = self.loss_grad(params, rest, x, y, masks, jit=False)
        return {"loss": loss, "grads": grads, "rest": new_rest}

    def local_update(self, grads, clipped, state, flat_params, loss_value):
        """The clipping of torch's ``grads`` and the update of torch's ``clipped`` gradients
        from ``state`` (flat ``{name: array}`` trees)."""
        out = {}
        if self.clip is not None:
            out["clipped"], out["norm"] = self.clip(grads)
        updates, new = self.tx.update(clipped, state, flat_params, value=loss_value)
        out["params"], out["slots"] = optax.apply_updates(flat_params, updates), new.slots
        return out


def _like(init, start):
    """``start``'s leaves in ``init``'s tree (an ``nnx.Optimizer``'s pure state holds the same
    leaves in the same order, without the ``Param`` wrappers)."""
    ours, theirs = jax.tree_util.tree_leaves(init), jax.tree_util.tree_leaves(start)
    if [np.shape(a) for a in ours] != [np.shape(b) for b in theirs]:
        raise ValueError(f"compare_training: jax_optimizer's state does not fit jax_model's "
                         f"parameters ({len(theirs)} leaves, {len(ours)} expected, or shapes "
                         f"differ): build the nnx.Optimizer over jax_model with wrt=nnx.Param")
    return jax.tree_util.tree_structure(init).unflatten(
        [jnp.asarray(b, np.asarray(a).dtype) for a, b in zip(ours, theirs)])


def with_running(bound: running.RunningBound, *args):
    """``(outputs, running error bounds)`` of ``bound.fn(*args)``; bounds ``None`` without a rule."""
    try:
        return bound(*args)
    except running.Unsupported:
        return bound.fn(*args), None


def flat(values: dict, like: dict):
    return {n: jnp.asarray(values[n], np.asarray(like[n]).dtype) for n in like}
