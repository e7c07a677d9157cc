"""The translator's two tables cover the same jaxconv vocabulary, checked mechanically.

Every function of ``jaxconv.functional`` and ``jaxconv.tensor`` that torch also has as an ATen
operator translates from each of its overloads that a ``torch.export`` graph can hold, unless
:data:`NOT_TRANSLATED` says why not; and every one that torch has as a ``torch`` /
``torch.nn.functional`` function or Tensor method translates from there too.
"""
import inspect

import pytest
import torch
import torch.nn.functional as TF

import jaxconv.functional as jF
from equivalence.translator import aten, ops
from jaxconv import tensor as jT

#: ATen overloads of jaxconv's names that have no translation, and why.
NOT_TRANSLATED = {
    # products accumulated and returned in another dtype: torch's functions do not expose them
    "mm.dtype", "bmm.dtype", "addmm.dtype", "baddbmm.dtype",
    # torch.einsum turns the sublist form into an equation before it dispatches
    "einsum.sublist",
    # sizes that depend on the values: repeat_interleave(repeats) alone, where(condition) alone
    "repeat_interleave.Tensor", "where.default",
    # TorchScript's overloads; export records to.dtype and _to_copy
    "to.prim_Device", "to.prim_dtype", "to.prim_other",
    # Tensor.unfold (windows along one dimension), not F.unfold (im2col has no ATen op of that name)
    "unfold.default",
    # a bit cast (Tensor.view(dtype)): jaxconv.tensor has no such view
    "view.dtype",
    # packed sequences (PackedSequence's data, batch_sizes): jaxconv's recurrent functions take
    # padded batches
    "lstm.data", "gru.data", "rnn_tanh.data", "rnn_relu.data",
}


def _functions(namespace):
    return sorted(n for n in dir(namespace) if not n.startswith("_")
                  and inspect.isfunction(getattr(namespace, n)))


NAMES = sorted(set(_functions(jF)) | set(_functions(jT)))


def _exportable(overload) -> bool:
    """Whether an export graph can hold this overload: it takes a tensor (the others are
    TorchScript's arithmetic on Python numbers), writes into none of its arguments (in-place
    and ``out=`` forms are made functional first) and names no dimension by a string."""
    args = overload._schema.arguments
    return (any("Tensor" in str(a.type) for a in args)
            and not any(a.alias_info is not None and a.alias_info.is_write for a in args)
            and "name" not in overload._overloadname.lower())


def _aten_overloads():
    for name in NAMES:
        try:
            packet = getattr(torch.ops.aten, name)
        except (AttributeError, RuntimeError):
            continue
        for overload in packet.overloads():
            if _exportable(getattr(packet, overload)):
                yield f"{name}.{overload}"


ATEN = list(_aten_overloads())


def test_the_vocabulary_is_large_enough_to_mean_something():
    assert len(NAMES) > 150 and len(ATEN) > 200


def test_every_aten_overload_of_a_jaxconv_name_translates():
    missing = []
    for key in ATEN:
        name, overload = key.split(".")
        if aten.function(getattr(getattr(torch.ops.aten, name), overload)) is None and key not in NOT_TRANSLATED:
            missing.append(key)
    assert not missing, f"ATen overloads with no translation: {missing}"


def test_the_exclusions_are_current():
    translated = [k for k in NOT_TRANSLATED
                  if aten.function(getattr(getattr(torch.ops.aten, k.split(".")[0]), k.split(".")[1]))]
    assert not translated and NOT_TRANSLATED <= set(ATEN)


def test_every_torch_function_and_method_of_a_jaxconv_name_translates():
    missing = []
    for name in NAMES:
        for namespace in (torch, TF):
            fn = getattr(namespace, name, None)
            if callable(fn) and ops.function(fn) is None:
                missing.append(f"{namespace.__name__}.{name}")
        if hasattr(torch.Tensor, name) and ops.method(name) is None:
            missing.append(f"Tensor.{name}")
    assert not missing, f"torch functions with no translation: {missing}"


@pytest.mark.parametrize("key, expected", [
    ("cumsum.default", True), ("where.self", True), ("pixel_shuffle.default", True),
    ("roll.default", False),        # dims=[] against jaxconv's dims=None: the defaults differ
    ("unfold.default", False),      # Tensor.unfold's parameters are not F.unfold's
    ("max.other", False),           # other is keyword-only in T.max
])
def test_the_schema_check(key, expected):
    name, overload = key.split(".")
    schema = getattr(getattr(torch.ops.aten, name), overload)._schema
    fn = getattr(jT, name, None) or getattr(jF, name)
    assert aten.agrees(schema, fn) is expected
