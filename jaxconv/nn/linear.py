"""``Linear``, ``Identity``, ``Flatten``, ``Unflatten`` and the dropout modules."""
from __future__ import annotations

from flax import nnx

from .. import _rng
from ..functional.conv import DEFAULT_PRECISION
from ..functional.linear import (_check_p, dropout, dropout1d, dropout2d, dropout3d, flatten,
                                 linear, stochastic_depth, unflatten)
from . import init
from .module import Module, RandomInTraining


class Linear(Module):
    """``y = x @ weight.T + bias`` (``torch.nn.Linear``).

    **Arguments:**

    - ``in_features``, ``out_features``: sizes of the last input / output axis.
    - ``bias``: learn a ``(out_features,)`` bias.
    - ``dtype``: parameter dtype (float32 when ``None``).
    - ``precision``: the ``lax.Precision`` of the product; full float32 by default
      (``lax.Precision.DEFAULT`` lets GPUs and TPUs use faster, reduced-precision passes).
    - ``rngs``: ``nnx.Rngs`` (its ``params`` stream) or a key; ``None`` draws from the
      stream seeded by ``jaxconv.manual_seed``.

    Parameters: ``weight`` ``(out_features, in_features)`` and ``bias``, initialised as
    torch does (kaiming-uniform with ``a=sqrt(5)``, bias ``U(-1/sqrt(in), 1/sqrt(in))``).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, dtype=None,
                 *, precision=DEFAULT_PRECISION, rngs=None):
        self.in_features, self.out_features, self.precision = in_features, out_features, precision
        weight, b = init.torch_default(_rng.key_from(rngs), (out_features, in_features),
                                       out_features if bias else None, dtype)
        self.weight = nnx.Param(weight)
        self.bias = nnx.Param(b) if bias else None

    def extra_repr(self) -> str:
        s = f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
        return s + (f", precision={self.precision}" if self.precision != DEFAULT_PRECISION else "")

    def __call__(self, x):
        """Computes ``x @ weight.T + bias``.

        **Arguments:** ``x``: ``(*, in_features)``, any leading dims (none included).

        **Returns:** ``(*, out_features)``.
        """
        return linear(x, self.weight[...], None if self.bias is None else self.bias[...],
                      precision=self.precision)


class Identity(Module):
    """Returns its input (``torch.nn.Identity``); any constructor arguments are ignored."""

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, x):
        """Returns ``x`` unchanged.

        **Arguments:** ``x``: anything.

        **Returns:** ``x`` itself.
        """
        return x


class Flatten(Module):
    """Merge dims ``start_dim..end_dim`` into one (``torch.nn.Flatten``).

    **Arguments:** ``start_dim`` (1, so the batch axis is kept), ``end_dim`` (-1).
    """

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        self.start_dim, self.end_dim = start_dim, end_dim

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"

    def __call__(self, x):
        """Merges dims ``start_dim`` to ``end_dim`` of ``x`` into one.

        **Arguments:** ``x``: ``(*, S_start, ..., S_end, *)``: it must have dims ``start_dim``
        and ``end_dim`` (at least 2 dims with the default ``start_dim=1``).

        **Returns:** ``(*, S_start * ... * S_end, *)``.
        """
        return flatten(x, self.start_dim, self.end_dim)


class Unflatten(Module):
    """Split dim ``dim`` into ``unflattened_size`` (``torch.nn.Unflatten``).

    **Arguments:** ``dim`` (an int), ``unflattened_size`` (tuple or list of ints; one may
    be ``-1``).
    """

    def __init__(self, dim: int, unflattened_size):
        if not isinstance(unflattened_size, (tuple, list)):
            raise TypeError(
                f"unflattened_size must be a tuple of ints, but found type "
                f"{type(unflattened_size).__name__}"
            )
        for i, v in enumerate(unflattened_size):
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(
                    f"unflattened_size must be a tuple of ints, but found element of type "
                    f"{type(v).__name__} at pos {i}"
                )
        self.dim, self.unflattened_size = dim, unflattened_size

    def extra_repr(self) -> str:
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"

    def __call__(self, x):
        """Splits dim ``dim`` of ``x`` into ``unflattened_size``.

        **Arguments:** ``x``: ``(*, S_dim, *)``, ``S_dim`` the size of dim ``dim``.

        **Returns:** ``(*, U_1, ..., U_n, *)``, ``(U_1, ..., U_n) = unflattened_size`` (a ``-1``
        inferred), whose product is ``S_dim``.
        """
        return unflatten(x, self.dim, self.unflattened_size)


class Dropout(RandomInTraining, Module):
    """Zero elements with probability ``p`` and scale the rest by ``1 / (1 - p)`` (``torch.nn.Dropout``).

    **Arguments:**

    - ``p``: drop probability in ``[0, 1]``.
    - ``inplace``: accepted and ignored.
    - ``rngs``: ``nnx.Rngs`` (its ``dropout`` stream, or ``default``) or a key that seeds
      this module's own ``rngs`` stream; ``None`` draws the seed from the library stream.

    Mode: ``deterministic`` (``False`` at construction = torch's train mode); ``model.eval()``
    makes it the identity. Each call draws a fresh mask from ``self.rngs``, whose counter is
    module state, so masks differ across calls under ``nnx.jit`` too.
    """

    _fn = staticmethod(dropout)

    def __init__(self, p: float = 0.5, inplace: bool = False, *, rngs=None):
        _check_p(p)
        self.p, self.inplace = p, inplace
        self.deterministic = False
        self.rngs = init.dropout_rngs(rngs)

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"

    def __call__(self, x, *, mask=None):
        """Randomly zeros elements (``Dropout``) or channels (``Dropout1d/2d/3d``) in training.

        **Arguments:** ``x``: any shape for ``Dropout``; ``(N, C, L)`` or ``(C, L)`` for
        ``Dropout1d``; ``(N, C, H, W)`` (or ``(N, C, L)``) for ``Dropout2d``; ``(N, C, D, H, W)``
        or ``(C, D, H, W)`` for ``Dropout3d``. ``mask``: in training, the keep mask to apply
        instead of drawing one (booleans broadcasting to ``x``; torch's draw replayed by
        ``equivalence.compare_training``, through :func:`jaxconv.trace.intercept`).

        **Returns:** the shape and dtype of ``x``. Training (``deterministic=False``, as built):
        each element or channel zeroed with probability ``p``, the rest scaled by
        ``1 / (1 - p)``, a fresh mask per call from ``self.rngs``. Eval (``model.eval()``) or
        ``p = 0``: ``x`` unchanged.
        """
        if self.deterministic or self.p == 0:
            return self._fn(x, self.p, False)
        if mask is not None:
            return self._fn(x, self.p, True, mask=mask)
        return self._fn(x, self.p, True, key=self.rngs.dropout())


class Dropout1d(Dropout):
    """Zero whole channels of ``(N, C, L)`` / ``(C, L)`` input (``torch.nn.Dropout1d``);
    arguments and mode as ``Dropout``."""

    _fn = staticmethod(dropout1d)


class Dropout2d(Dropout):
    """Zero whole channels of ``(N, C, H, W)`` input (``torch.nn.Dropout2d``); arguments and
    mode as ``Dropout``. As torch, a 3-D input is read as ``(N, C, L)``."""

    _fn = staticmethod(dropout2d)


class Dropout3d(Dropout):
    """Zero whole channels of ``(N, C, D, H, W)`` / ``(C, D, H, W)`` input
    (``torch.nn.Dropout3d``); arguments and mode as ``Dropout``."""

    _fn = staticmethod(dropout3d)


class StochasticDepth(Dropout):
    """Drop whole residual branches per sample (``mode='row'``) or per batch
    (torchvision's ``ops.StochasticDepth``); mode and rngs as ``Dropout``."""

    def __init__(self, p: float, mode: str, *, rngs=None):
        super().__init__(p, rngs=rngs)
        self.mode = mode

    def extra_repr(self) -> str:
        return f"p={self.p}, mode={self.mode}"

    def __call__(self, x, *, mask=None):
        """Randomly zeros whole samples (``mode='row'``) or the batch (``'batch'``) in training.

        **Arguments:** ``x``: ``(N, *)``, the samples along dim 0. ``mask``: as ``Dropout``'s.

        **Returns:** the shape of ``x``. Training: each sample (or the batch) zeroed with
        probability ``p``, the survivors divided by ``1 - p`` (torchvision's). Eval: ``x``
        unchanged.
        """
        key = None if self.deterministic or self.p == 0 or mask is not None else self.rngs.dropout()
        return stochastic_depth(x, self.p, self.mode, not self.deterministic, key=key, mask=mask)


class DropPath(Dropout):
    """timm's ``DropPath``: per-sample stochastic depth, survivors scaled by ``1 / (1 - p)``
    when ``scale_by_keep``; mode and rngs as ``Dropout``."""

    def __init__(self, drop_prob: float = 0.0, scale_by_keep: bool = True, *, rngs=None):
        super().__init__(drop_prob, rngs=rngs)
        self.drop_prob, self.scale_by_keep = drop_prob, scale_by_keep

    def extra_repr(self) -> str:
        return f"drop_prob={round(self.drop_prob, 3):0.3f}"

    def __call__(self, x, *, mask=None):
        """Randomly zeros whole samples in training (timm's ``drop_path``).

        **Arguments:** ``x``: ``(N, *)``, the samples along dim 0. ``mask``: as ``Dropout``'s.

        **Returns:** the shape of ``x``. Training: each sample zeroed with probability
        ``drop_prob``, the survivors divided by ``1 - drop_prob`` when ``scale_by_keep``. Eval:
        ``x`` unchanged.
        """
        key = None if self.deterministic or self.p == 0 or mask is not None else self.rngs.dropout()
        return stochastic_depth(x, self.p, "row", not self.deterministic, self.scale_by_keep,
                                key=key, mask=mask)
