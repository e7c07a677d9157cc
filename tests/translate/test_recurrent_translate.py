"""Models built on torch's recurrent layers through the translator: an OCR-style CRNN (conv
features read as a sequence by a bidirectional 2-layer LSTM, batch first), GRU and RNN
sequence mixers. Each is translated, proven by ``compare`` (with the recurrent error model:
real float32 ports pass, a planted bug fails) and keeps torch's state_dict names."""
import numpy as np
import pytest
import torch

import equivalence


class CRNN(torch.nn.Module):
    """conv features -> (N, W, C*H) sequence -> recurrent layer -> per-step classes."""

    def __init__(self, rnn: torch.nn.Module, channels=8, classes=7):
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(1, channels, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2))
        self.rnn = rnn
        width = (getattr(rnn, "proj_size", 0) or rnn.hidden_size) * (2 if rnn.bidirectional else 1)
        self.head = torch.nn.Linear(width, classes)

    def forward(self, x):
        f = self.features(x).permute(0, 3, 1, 2).flatten(2)  # (N, W, C*H)
        if not self.rnn.batch_first:
            f = f.transpose(0, 1)
        out, _ = self.rnn(f)
        return self.head(out)


def _model(kind, **kw):
    torch.manual_seed(0)
    rnn = getattr(torch.nn, kind)(8 * 4, 12, **kw)
    return CRNN(rnn).eval()


X = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 1, 8, 16)).astype(np.float32))


def _planted(jm, name, index, delta, layer="rnn"):
    """Move one element of a parameter of the translated model's recurrent layer."""
    p = getattr(getattr(jm, layer), name)
    p[...] = p[...].at[index].add(delta)


def test_lstm_crnn_translates_is_proven_and_a_planted_bug_fails():
    tm = _model("LSTM", bidirectional=True, batch_first=True)
    jm = equivalence.translate(tm, X)
    assert type(jm.rnn).__name__ == "LSTM" and jm.rnn.bidirectional and jm.rnn.batch_first
    report = equivalence.compare(tm, jm, X)
    assert report.passed, report.to_text()
    rnn_row = next(r for r in report.rows if r.name == "rnn")
    assert rnn_row.ratio < 0.5 and rnn_row.tol < 1e-5  # not vacuous: a few float32 ulps
    # state_dict names round-trip with torch
    sd = equivalence.state_dict(jm)
    assert list(sd) == list(tm.state_dict())
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=True)
    # a gate bias off by 1e-3 in the reverse direction: caught at the layer
    _planted(jm, "bias_hh_l0_reverse", 5, 1e-3)
    bad = equivalence.compare(tm, jm, X)
    assert not bad.passed
    assert [r.name for r in bad.rows if r.ratio > 1][:1] == ["rnn"]


@pytest.mark.slow
@pytest.mark.parametrize("kind,kw", [
    ("LSTM", dict(num_layers=2, bidirectional=True, batch_first=True)),
    ("LSTM", dict(num_layers=2, proj_size=5)),
    ("GRU", dict(num_layers=2, bidirectional=True)),
    ("RNN", dict(nonlinearity="relu", batch_first=True)),
])
def test_recurrent_models_are_proven_with_gradients(kind, kw):
    tm = _model(kind, **kw)
    jm = equivalence.translate(tm, X)
    report = equivalence.compare(tm, jm, X, grads=True)
    assert report.passed, report.to_text()
    worst = max(r.ratio for r in report.rows if r.name.startswith("rnn"))
    assert worst < 0.5, report.to_text()
    # swapped gate blocks (LSTM i <-> f, GRU r <-> z, RNN: a weight row) fail the forward and
    # every gradient of the layer
    w = jm.rnn.weight_ih_l0
    h = tm.rnn.hidden_size
    rows = np.r_[h:2 * h, 0:h, 2 * h:w.shape[0]] if kind != "RNN" else np.r_[1, 0, 2:w.shape[0]]
    w[...] = w[...][rows]
    bad = equivalence.compare(tm, jm, X, grads=True)
    failed = {r.name for r in bad.rows if r.ratio > 1}
    assert "rnn" in failed and "rnn.weight_hh_l0" in failed, bad.to_text()


class Seq2Seq(torch.nn.Module):
    """An encoder's final (h, c) handed to a decoder LSTM, its h to a GRU: states as inputs."""

    def __init__(self):
        super().__init__()
        self.enc = torch.nn.LSTM(6, 8, batch_first=True)
        self.dec = torch.nn.LSTM(6, 8, batch_first=True)
        self.gru = torch.nn.GRU(8, 8, batch_first=True)

    def forward(self, x):
        _, (h, c) = self.enc(x)
        y, _ = self.dec(x.flip(1), (h, c))
        z, hn = self.gru(y, h)
        return z + hn.transpose(0, 1)


@pytest.mark.slow
def test_states_passed_between_layers_are_checked():
    # forward only: compare's local gradients follow a leaf's first output, and here the final
    # states, the other outputs, carry gradient too
    torch.manual_seed(0)
    tm, x = Seq2Seq().eval(), torch.randn(2, 5, 6)
    jm = equivalence.translate(tm, x)
    report = equivalence.compare(tm, jm, x)
    assert report.passed, report.to_text()
    assert {r.name for r in report.rows} >= {"enc", "dec", "gru"}
    _planted(jm, "bias_ih_l0", 3, 1e-3, layer="dec")
    bad = equivalence.compare(tm, jm, x)
    assert [r.name for r in bad.rows if r.ratio > 1][:1] == ["dec"]
