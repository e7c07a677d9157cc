"""The tolerance policy: how far a correct float port may differ from torch, and one registry of
per-layer error models that says what the policy means for each kind of layer.

Every check compares one computation done by both sides on the *same* inputs (torch's recorded
inputs; see :mod:`equivalence.compare`), so the only legitimate difference is rounding in that
one computation. Its size follows the standard probabilistic rounding-error model of a sum of
``n`` products (errors of about ``eps`` per operation, accumulating like a random walk):

    |jax - torch|  <=  c * eps(dtype) * sqrt(n) * S        (elementwise)

with ``S`` the magnitude of the computation (the op evaluated on absolute values) and ``n`` the
number of terms it sums. Which ``S`` and ``n`` a layer gets is the *error model* of its kind
(:func:`kind_of`; :func:`register` adds a kind). Each built-in model's docstring states its rule:

- :func:`dot` (Conv*, ConvTranspose*, Linear): the layer with ``|weight|``, ``|bias|`` on
  ``|x|``; ``n`` read from the weight's shape (:func:`fan`).
- :func:`batchnorm` and :func:`normalization` (InstanceNorm, GroupNorm, LayerNorm, RMSNorm):
  ``|w| (|x| + mean|x|) / sqrt(var + eps) + |b|`` and a variance term (:mod:`.norms`), with
  the layer's statistics over its own axes;
  ``n`` the elements each statistic averages (0 with running statistics) plus 4; BatchNorm's
  updated buffers too. Both also bound torch subclasses whose forward was translated as code
  (timm's ``BatchNormAct2d`` and ``LayerNorm2d``; see :func:`kind_for`).
- :func:`recurrent` (RNN, LSTM, GRU and their cells): ``S`` the layer's sampled rounding error
  over ``eps`` (:mod:`.sampled`: every op's rounding with a random sign, carried through the
  layer's signed linearization over the whole sequence), ``n = 1``; the same for gradients.
- :func:`elementwise`, the fallback for every other layer and for a composite module's glue
  code (a residual add): the op on absolute values; ``n`` the operand count or reduction ratio.
  A composite's code also gets its running error bound (:mod:`.running`: each op's rounding
  carried through the code's jaxpr, which sees a softmax's sensitivity to its scores), the
  larger of the two counting.
- module code (:mod:`.code`): a layer whose class brings its own ``__call__`` (a translated
  timm ``StdConv2d``, a jaxconv subclass overriding ``__call__``) keeps its kind's model, each
  tolerance at least ``c`` times the running error bound of its code (:func:`kind_for`);
  :func:`softmax` (masked logits) and :func:`resize` (``Upsample``) use that bound alone.
- :func:`loss` (``CrossEntropyLoss``, ``MSELoss``, ..., ``CTCLoss``): ``S = |loss|``, ``n`` the
  entries reduced into each value (``N * C`` for a mean cross entropy), at least ``c`` times
  the running error bound of the loss's code, which sees each term's cancellation
  (``logsumexp(x) - x[t]``); its gradients (of every floating input) the same (:mod:`.losses`).
- gradients: ``S`` is the absolute-valued layer's vector-Jacobian product at ``|x|`` with
  ``|g|`` (torch's gradient of the layer's output), ``n`` the number of terms it sums.

NaN or inf at the same positions on both sides (inf of the same sign) is agreement: both ran
the same computation into the same overflow or domain error. NaN or inf on one side only fails.

``c`` (:data:`C`) was chosen by measurement (tests/equivalence/test_sensitivity.py): float32
ports of the seed models reach at most a few percent of the tolerance while each planted bug
exceeds it by orders of magnitude.
"""
from ._errors import errors, max_difference
from ._policy import (C, ELEMENTWISE_N, FALLBACK, POLICY, REDUCED, ROUNDING, Bound, BufferModel,
                      Kind, LayerBounds, LayerCall, Model, compute_dtype, dot, elementwise, eps,
                      fan, kind_of, kinds, policy_text, reduction_ratio, register, tolerance,
                      unregister)
from .norms import batchnorm, normalization
from .recurrence import recurrent
from .code import is_module_code, kind_for, resize, running_only, softmax, with_running_bound
from .losses import loss

__all__ = ["C", "ELEMENTWISE_N", "FALLBACK", "POLICY", "REDUCED", "ROUNDING", "Bound", "BufferModel",
           "Kind", "LayerBounds", "LayerCall", "Model", "batchnorm", "compute_dtype", "dot", "elementwise", "eps", "errors", "fan",
           "is_module_code", "kind_for", "kind_of", "kinds", "loss", "max_difference", "normalization",
           "policy_text", "recurrent", "reduction_ratio", "register", "resize", "running_only", "softmax",
           "tolerance", "unregister", "with_running_bound"]
