"""What tools see of the public API: torch's signatures, docstrings, real definitions.

Every 1d/2d/3d function and module is an ordinary ``def`` / ``class`` in the module that
exports it, so ``inspect``, ``help()``, editors and type checkers find it; its parameters
are torch's (names, order, defaults), read from torch itself.
"""
import ast
import inspect
import pickle
import pydoc
import typing

import pytest
import torch
import torch.nn.functional as TF

import jaxconv.functional as F
import jaxconv.nn as J

_EMPTY = inspect.Parameter.empty

FUNCTIONS = [f"{name}{n}d" for n in (1, 2, 3) for name in (
    "conv", "conv_transpose", "max_pool", "avg_pool", "adaptive_avg_pool", "adaptive_max_pool",
    "lp_pool")] + ["interpolate", "pixel_shuffle", "pixel_unshuffle", "channel_shuffle", "unfold",
                   "fold", "pad", "group_norm"]

LOSS_FUNCTIONS = [
    "cross_entropy", "nll_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits", "mse_loss",
    "l1_loss", "smooth_l1_loss", "huber_loss", "kl_div", "poisson_nll_loss", "gaussian_nll_loss",
    "soft_margin_loss", "multilabel_soft_margin_loss", "multilabel_margin_loss", "multi_margin_loss",
    "margin_ranking_loss", "hinge_embedding_loss", "cosine_embedding_loss", "triplet_margin_loss",
    "triplet_margin_with_distance_loss", "ctc_loss", "pairwise_distance"]
FUNCTIONS += LOSS_FUNCTIONS

CLASSES = [f"{name}{n}d" for n in (1, 2, 3) for name in (
    "Conv", "ConvTranspose", "BatchNorm", "InstanceNorm", "MaxPool", "AvgPool", "AdaptiveAvgPool",
    "AdaptiveMaxPool", "LPPool", "ZeroPad", "ConstantPad", "ReflectionPad", "ReplicationPad",
    "CircularPad")] + ["ReLU", "ReLU6", "SELU", "SiLU", "Mish", "Hardswish", "Hardsigmoid",
                       "Sigmoid", "Tanh", "GroupNorm", "SyncBatchNorm", "RNN", "LSTM", "GRU", "RNNCell",
                       "LSTMCell", "GRUCell"] + [
    "L1Loss", "MSELoss", "CrossEntropyLoss", "NLLLoss", "BCELoss", "BCEWithLogitsLoss", "KLDivLoss",
    "SmoothL1Loss", "HuberLoss", "PoissonNLLLoss", "GaussianNLLLoss", "SoftMarginLoss",
    "MultiLabelSoftMarginLoss", "MultiLabelMarginLoss", "MultiMarginLoss", "MarginRankingLoss",
    "HingeEmbeddingLoss", "CosineEmbeddingLoss", "TripletMarginLoss", "TripletMarginWithDistanceLoss",
    "CTCLoss", "PairwiseDistance"]


def _torch_function_params(name):
    """``[(name, default)]`` of a torch.nn.functional function's positional parameters, builtins
    included."""
    fn = getattr(TF, name)
    if name.startswith(("max_pool", "adaptive_max_pool")):  # boolean_dispatch hides them
        fn = getattr(TF, f"{name}_with_indices")
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin: its docstring's first line is the signature
        line = fn.__doc__.strip().splitlines()[0]
        sig = ast.parse(f"def {line.split(' -> ')[0]}: pass").body[0].args
        names = [a.arg for a in sig.args]
        defaults = [_EMPTY] * (len(names) - len(sig.defaults)) + [ast.literal_eval(d) for d in sig.defaults]
        return list(zip(names, defaults))
    return _positional(sig)


def _positional(sig):
    return [(p.name, p.default) for p in sig.parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


@pytest.mark.parametrize("name", FUNCTIONS)
def test_functions_have_torchs_parameters(name):
    ours = _positional(inspect.signature(getattr(F, name)))
    assert ours == _torch_function_params(name)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_functions_are_defined_where_they_live_with_a_docstring(name):
    fn = getattr(F, name)
    module = inspect.getmodule(fn)
    assert fn.__name__ == fn.__qualname__ == name and getattr(module, name) is fn
    assert inspect.getsource(fn).startswith(f"def {name}(")
    doc = inspect.getdoc(fn)
    assert f"torch.nn.functional.{name}" in doc or f"F.{name}" in doc
    assert "**Arguments:**" in doc
    rendered = pydoc.render_doc(fn, renderer=pydoc.plaintext)
    params = list(inspect.signature(fn).parameters)
    assert all(p in rendered for p in params[1:])  # the signature line and the argument docs


@pytest.mark.parametrize("name", LOSS_FUNCTIONS)
def test_losses_have_torchs_keyword_only_parameters_too(name):
    """All parameters with their kinds: torch's keyword-only ones stay keyword-only."""
    def params(sig):
        return [(p.name, p.default, p.kind == p.KEYWORD_ONLY) for p in sig.parameters.values()]

    try:
        theirs = params(inspect.signature(getattr(TF, name)))
    except (TypeError, ValueError):   # a builtin (pairwise_distance): positional only
        theirs = [(n, d, False) for n, d in _torch_function_params(name)]
    assert params(inspect.signature(getattr(F, name))) == theirs


@pytest.mark.parametrize("name", [c for c in CLASSES if c.endswith("Loss")])
def test_loss_modules_have_torchs_keyword_only_parameters_too(name):
    def params(sig):
        return [(p.name, p.default, p.kind == p.KEYWORD_ONLY) for p in sig.parameters.values()
                if p.name not in ("device", "dtype")]

    assert params(inspect.signature(getattr(J, name))) == params(inspect.signature(getattr(torch.nn, name)))


def _torch_class_params(cls):
    sig = inspect.signature(cls)
    if any(p.kind is p.VAR_POSITIONAL for p in sig.parameters.values()):
        # RNN, LSTM, GRU take (*args, **kwargs); their documented signature is an overload
        named = [inspect.signature(o) for o in typing.get_overloads(cls.__init__)
                 if "input_size" in inspect.signature(o).parameters]
        sig = named[0].replace(parameters=list(named[0].parameters.values())[1:]) if named else sig
    return [(name, default) for name, default in _positional(sig) if name not in ("device", "dtype")]


@pytest.mark.parametrize("name", CLASSES)
def test_modules_have_torchs_constructor_parameters(name):
    ours = [(n, d) for n, d in _positional(inspect.signature(getattr(J, name))) if n != "dtype"]
    assert ours == _torch_class_params(getattr(torch.nn, name))


@pytest.mark.parametrize("name", CLASSES)
def test_modules_are_classes_defined_where_they_live_with_a_docstring(name):
    cls = getattr(J, name)
    module = inspect.getmodule(cls)
    assert cls.__name__ == cls.__qualname__ == name and getattr(module, name) is cls
    assert module.__name__.startswith("jaxconv.nn.")
    assert inspect.getsource(cls).startswith(f"class {name}(")
    assert f"torch.nn.{name}" in inspect.getdoc(cls)
    params = list(inspect.signature(cls).parameters)
    if params:  # help() prints the constructor's signature (pydoc leaves out an empty one)
        doc = pydoc.render_doc(cls, renderer=pydoc.plaintext)
        assert f" {name}({params[0]}" in doc or f" {name}(*, {params[0]}" in doc


def test_help_shows_the_shared_argument_docs():
    conv = pydoc.render_doc(J.Conv2d, renderer=pydoc.plaintext)
    assert "padding_mode" in conv and "**Arguments:**" in conv and "kaiming-uniform" in conv
    bn = pydoc.render_doc(J.BatchNorm2d, renderer=pydoc.plaintext)
    assert "track_running_stats" in bn and "cumulative average" in bn
    pool = pydoc.render_doc(F.max_pool3d, renderer=pydoc.plaintext)
    assert "max_pool3d(input, kernel_size, stride=None" in pool and "return_indices" in pool


def test_an_instance_keeps_the_signature_of_its_call():
    def params(obj):
        return list(inspect.signature(obj).parameters)

    assert params(J.Conv2d(2, 3, 1)) == ["x"]
    assert params(J.ConvTranspose1d(2, 3, 1)) == ["x", "output_size"]
    assert params(J.Conv2d) == params(J.Conv2d.__init__)[1:]


def test_modules_pickle_as_their_own_classes():
    for module in (J.Conv2d(2, 3, 3, stride=2), J.BatchNorm3d(4), J.AvgPool1d(3), J.ReflectionPad2d(1)):
        copy = pickle.loads(pickle.dumps(module))
        assert type(copy) is type(module) and repr(copy) == repr(module)


def test_sampling_is_split_into_resize_and_rearrange():
    from jaxconv.functional import rearrange, resize

    assert F.interpolate is resize.interpolate
    for name in ("pixel_shuffle", "pixel_unshuffle", "channel_shuffle", "unfold", "fold"):
        assert getattr(F, name) is getattr(rearrange, name)


def _own_calls() -> dict:
    """Every ``__call__`` a class in ``jaxconv.nn``'s modules defines itself (private bases
    included), by ``module.Class``."""
    import importlib
    import pkgutil

    calls = {}
    for info in pkgutil.iter_modules(J.__path__):
        module = importlib.import_module(f"{J.__name__}.{info.name}")
        for cls in vars(module).values():
            if inspect.isclass(cls) and cls.__module__ == module.__name__ and "__call__" in vars(cls):
                calls[f"{info.name}.{cls.__qualname__}"] = vars(cls)["__call__"]
    return calls


def _call_doc_problems(fn) -> list[str]:
    """What the ``__call__`` docstring lacks: ``**Returns:**`` and, when the call takes
    arguments, an ``**Arguments:**`` section (before ``**Returns:**``) naming each one as
    ````name````."""
    doc = inspect.getdoc(fn) or ""
    problems = [] if "**Returns:**" in doc else ["no **Returns:**"]
    params = [p for p in inspect.signature(fn).parameters if p != "self"]
    if params and "**Arguments:**" not in doc:
        return problems + ["no **Arguments:**"]
    arguments = doc.partition("**Arguments:**")[2].partition("**Returns:**")[0]
    return problems + [f"**Arguments:** does not name ``{p}``" for p in params
                       if f"``{p}``" not in arguments]


def test_every_module_documents_its_call():
    """Each ``__call__`` jaxconv defines documents its arguments (every parameter of its
    signature, by name) and what it returns, in the constructors' **Arguments:** /
    **Returns:** style; every exported module runs one of them."""
    import flax.nnx

    def own_call(cls):      # the __call__ this class runs, if jaxconv defines it
        owner = next((k for k in cls.__mro__ if "__call__" in vars(k)), object)
        return vars(owner)["__call__"] if owner.__module__.startswith("jaxconv") else None

    classes = [c for c in vars(J).values()
               if inspect.isclass(c) and issubclass(c, flax.nnx.Module) and own_call(c)]
    assert len(classes) > 60
    calls = _own_calls()
    assert len(calls) > 50
    assert [c.__name__ for c in classes if own_call(c) not in calls.values()] == []
    problems = {name: p for name, fn in calls.items() if (p := _call_doc_problems(fn))}
    assert problems == {}
