"""jaxconv.trace: intercepting and recording named submodule calls."""
import jax
import jax.numpy as jnp
import numpy as np
import torch

from jaxconv import nn
from jaxconv.trace import intercept, record_calls


class Shared(nn.Module):
    def __init__(self, lib=nn):
        self.conv = lib.Conv1d(2, 2, 3, padding=1)
        self.again = self.conv  # the same module under a second name
        self.out = lib.Conv1d(2, 1, 1)

    def __call__(self, x):
        return self.out(self.again(self.conv(x)))


class TorchShared(torch.nn.Module):
    def __init__(self):
        super().__init__()
        Shared.__init__(self, torch.nn)


def test_named_modules_lists_a_shared_module_once_like_torch():
    assert [n for n, _ in nn.named_modules(Shared())] == [n for n, _ in TorchShared().named_modules()] == ["", "conv", "out"]
    every = [n for n, _ in TorchShared().named_modules(remove_duplicate=False)]
    assert [n for n, _ in Shared().named_modules(remove_duplicate=False)] == every == ["", "conv", "again", "out"]


def test_record_calls_in_call_order_eagerly_and_under_jit_and_restores_classes():
    model = Shared()
    x = jnp.asarray(np.random.default_rng(0).standard_normal((1, 2, 5)), jnp.float32)
    with record_calls(model) as calls:
        y = model(x)
    assert [c.name for c in calls] == ["conv", "conv", "out"]
    np.testing.assert_array_equal(np.asarray(calls[-1].output), np.asarray(y))
    np.testing.assert_array_equal(np.asarray(calls[1].inputs[0]), np.asarray(calls[0].output))
    assert type(model.conv) is nn.Conv1d and type(model) is Shared

    shapes = []

    def traced(x):
        with record_calls(model) as calls:
            out = model(x)
        shapes.extend(c.output.shape for c in calls)
        return out

    np.testing.assert_allclose(np.asarray(jax.jit(traced)(x)), np.asarray(y), rtol=1e-6)
    assert shapes == [(1, 2, 5), (1, 2, 5), (1, 1, 5)]


def test_intercept_can_replace_a_call():
    model = Shared()
    x = jnp.ones((1, 2, 4), jnp.float32)

    def zero(module, cls, args, kwargs):
        return jnp.zeros_like(cls.__call__(module, *args, **kwargs))

    with intercept({model.out: zero}):
        assert not np.any(np.asarray(model(x)))
    assert np.any(np.asarray(model(x)))  # restored


def _tagging(tag, log, through=False):
    """A hook that logs ``tag`` and either runs the module or calls through to the outer hook."""
    def hook(module, cls, args, kwargs):
        log.append(tag)
        return module(*args, **kwargs) if through else cls.__call__(module, *args, **kwargs)
    return hook


def test_nested_intercepts_on_one_module():
    model = Shared()
    x = jnp.asarray(np.random.default_rng(1).standard_normal((1, 2, 4)), jnp.float32)
    y = model(x)
    log = []
    with intercept({model.out: _tagging("outer", log)}):
        model(x)
        assert log == ["outer"]
        with intercept({model.out: _tagging("inner", log)}):
            model(x)  # the innermost hook wins, and runs the module itself
            assert log == ["outer", "inner"]
        model(x)  # the outer hook is active again
        assert log == ["outer", "inner", "outer"]
        with intercept({model.out: _tagging("through", log, through=True)}):
            np.testing.assert_array_equal(np.asarray(model(x)), np.asarray(y))
            assert log[3:] == ["through", "outer"]  # module(...) calls the next outer hook
        assert type(model.out) is not nn.Conv1d  # still hooked by the outer block
    assert type(model.out) is nn.Conv1d
    model(x)
    assert len(log) == 5


def test_an_exception_inside_the_block_restores_everything():
    model = Shared()
    x = jnp.ones((1, 2, 4), jnp.float32)
    log = []
    try:
        with intercept({model.out: _tagging("outer", log)}):
            try:
                with intercept({model.out: _tagging("inner", log), model.conv: _tagging("c", log)}):
                    raise KeyError("boom")
            except KeyError:
                pass
            model(x)  # the outer hook only: the inner block's hooks are gone
            assert log == ["outer"]
            assert type(model.conv) is nn.Conv1d  # only the inner block had hooked it
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert type(model.out) is nn.Conv1d and type(model.conv) is nn.Conv1d
    model(x)
    assert log == ["outer"]


def test_another_thread_sees_no_hook():
    import threading

    model = Shared()
    x = jnp.asarray(np.random.default_rng(2).standard_normal((1, 2, 4)), jnp.float32)
    y = np.asarray(model(x))
    inside, done, log, result = threading.Event(), threading.Event(), [], {}

    def zero(module, cls, args, kwargs):
        log.append(threading.current_thread().name)
        return jnp.zeros_like(cls.__call__(module, *args, **kwargs))

    def hooked():
        with intercept({model.out: zero}):
            inside.set()
            done.wait(60)
            result["hooked"] = np.asarray(model(x))

    def plain():
        inside.wait(60)
        result["plain"] = np.asarray(model(x))  # while the other thread is inside the block
        done.set()

    threads = [threading.Thread(target=hooked, name="hooked"), threading.Thread(target=plain)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    np.testing.assert_array_equal(result["plain"], y)
    assert not np.any(result["hooked"]) and log == ["hooked"]
    assert type(model.out) is nn.Conv1d


def test_two_threads_intercepting_one_module_restore_its_class_last():
    import threading

    model = Shared()
    x = jnp.ones((1, 2, 4), jnp.float32)
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def first():
        with intercept({model.out: _tagging("a", [])}):
            first_in.set()
            second_in.wait(60)
        first_out.set()

    def second():
        first_in.wait(60)
        log = []
        with intercept({model.out: _tagging("b", log)}):
            second_in.set()
            first_out.wait(60)
            seen["hooked"] = type(model.out) is not nn.Conv1d  # the first block's exit kept it
            model(x)
        seen["log"] = log

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert seen == {"hooked": True, "log": ["b"]}
    assert type(model.out) is nn.Conv1d


def test_jit_inside_nested_intercepts():
    model = Shared()
    x = jnp.asarray(np.random.default_rng(3).standard_normal((1, 2, 5)), jnp.float32)
    log = []

    def scaled(module, cls, args, kwargs):
        log.append("scaled")
        return 2 * module(*args, **kwargs)  # through to record_calls' hook

    with record_calls(model) as calls:
        with intercept({model.out: scaled}):
            y = jax.jit(lambda x: model(x))(x)
    np.testing.assert_allclose(np.asarray(y), 2 * np.asarray(model(x)), rtol=1e-6)
    assert [c.name for c in calls] == ["conv", "conv", "out"] and log == ["scaled"]
