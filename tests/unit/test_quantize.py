"""Int8 convolutions from stored calibration: stored, reloaded, close to fp32, and refused without calibration."""

import typing

import numpy as np
import pytest
import torch

from serve_app.config import Precision
from serve_app.ocr import predictor
from serve_app.ocr.models import quantize
from serve_app.ocr.models.crnn import build_crnn
from serve_app.ocr.models.ctpn import build_ctpn
from serve_app.ocr.models.weights import read_weights, save_weights
from serve_app.ocr.predictor import (
    BF16_ROW_MULTIPLE,
    PRECISIONS,
    DetectorRunner,
    RecognizerRunner,
    native_bf16,
    resolve_precision,
)
from training.calibrate import calibrate

pytestmark = pytest.mark.skipif(quantize.engine() is None, reason="no quantized CPU engine in this build")


def _quantized_modules(model: torch.nn.Module) -> list[str]:
    return [type(m).__name__ for m in model.modules() if ".quantized." in type(m).__module__]


def _crops(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    """Stand-ins for normalised line crops: dark strokes on light ground, of varied width, in [-1, 1]."""
    out = []
    for _ in range(n):
        w = int(rng.integers(8, 40)) * 4
        img = np.ones((32, w), np.float32) * rng.uniform(0.3, 1.0)
        for x in rng.integers(0, w - 3, size=w // 6):
            img[8:24, x:x + 2] = rng.uniform(-1.0, -0.3)
        out.append(img)
    return out


@pytest.fixture(scope="module")
def crnn_path(tmp_path_factory):
    torch.manual_seed(0)
    path = save_weights(build_crnn(variant="slim").eval(), tmp_path_factory.mktemp("q") / "crnn.pt", {"v": 1})
    calibrate(path, _crops(np.random.default_rng(0), 40), "random strokes")
    return path


def test_calibration_adds_observer_ranges_and_keeps_the_weights(crnn_path, tmp_path):
    blob = read_weights(crnn_path)
    assert blob["meta"]["v"] == 1 and "random strokes" in blob["meta"]["int8_calibration"]
    assert all("activation_post_process" in k for k in blob["int8"])
    mins = [v for k, v in blob["int8"].items() if k.endswith("min_val")]
    assert mins and all(torch.isfinite(v).all() for v in mins)  # every observer saw data
    assert blob["state_dict"]["features.0.weight"].dtype == torch.float16


def test_int8_crnn_reads_like_fp32(crnn_path):
    fp32 = RecognizerRunner(crnn_path, precision="fp32", lexicon_path=None)
    int8 = RecognizerRunner(crnn_path, precision="int8", lexicon_path=None)
    assert int8.precision == "int8"
    assert "QuantizedConv2d" not in _quantized_modules(fp32.model)
    assert any(name.startswith("Conv") for name in _quantized_modules(int8.model))
    crops = _crops(np.random.default_rng(1), 12)  # not the calibration crops
    a, b = fp32.column_probs(crops), int8.column_probs(crops)
    assert [p.shape for p in a] == [p.shape for p in b]
    diff = np.concatenate([np.abs(x - y).ravel() for x, y in zip(a, b)])
    assert diff.max() > 0  # really a different computation
    assert diff.mean() < 0.01


@pytest.fixture(scope="module")
def ctpn_path(tmp_path_factory):
    torch.manual_seed(0)
    path = save_weights(build_ctpn(head_channels=64).eval(), tmp_path_factory.mktemp("q") / "ctpn.pt")
    rng = np.random.default_rng(0)
    calibrate(path, [rng.normal(0, 1, (96, 128, 3)).astype(np.float32) for _ in range(6)], "noise")  # as preprocessed
    return path


def test_int8_ctpn_detects_like_fp32(ctpn_path):
    fp32, int8 = DetectorRunner(ctpn_path, precision="fp32"), DetectorRunner(ctpn_path, precision="int8")
    x = torch.from_numpy(np.random.default_rng(1).normal(0, 1, (1, 3, 96, 128)).astype(np.float32))
    with torch.inference_mode():
        a, b = fp32.model(x), int8.model(x)
    assert any(name.startswith("Conv") for name in _quantized_modules(int8.model))
    for key in ("scores", "vertical", "side"):
        rel = (a[key] - b[key]).norm() / a[key].norm()
        assert 0 < rel < 0.1, key


def test_int8_ctpn_keeps_its_stem_apart(ctpn_path):
    int8 = DetectorRunner(ctpn_path, precision="int8").model
    assert len(int8.backbone) == 2 and int8.stem_modules == 1  # stem graph, rest graph
    x = torch.from_numpy(np.random.default_rng(1).normal(0, 1, (1, 3, 96, 128)).astype(np.float32))
    with torch.inference_mode():
        assert int8.stem(x).shape[2:] == (96 // int8.stem_stride, 128 // int8.stem_stride)
    with pytest.raises(ValueError, match="no module named"):
        quantize.split_graph(int8.backbone[1], "0.99.")


def test_int8_needs_calibration(tmp_path):
    path = save_weights(build_crnn(variant="slim").eval(), tmp_path / "plain.pt")
    with pytest.raises(ValueError, match=r"training\.calibrate"):
        RecognizerRunner(path, precision="int8", lexicon_path=None)
    assert RecognizerRunner(path, precision="fp32", lexicon_path=None).precision == "fp32"


def test_auto_never_picks_emulated_bf16():
    assert typing.get_args(Precision) == PRECISIONS  # the config accepts exactly what the runners resolve
    assert resolve_precision("fp32", calibrated=True) == "fp32"
    if quantize.auto_ok():
        assert resolve_precision("auto", calibrated=True) == "int8"
    else:
        assert resolve_precision("auto", calibrated=True) == ("bf16" if native_bf16() else "fp32")
    assert resolve_precision("auto", calibrated=False) == ("bf16" if native_bf16() else "fp32")


@pytest.mark.parametrize(("x86", "bf16", "calibrated", "expected"), [
    (True, False, True, "int8"),  # AVX2 only: bf16 would be emulated
    (True, True, True, "int8"),  # native bf16, AMX tiles or not: int8 was a quarter to a third faster
    (True, True, False, "bf16"),  # no calibration: the fastest float
    (True, False, False, "fp32"),
    (False, True, True, "bf16"),  # Arm BF16: int8 is untested there, so it must be asked for
])
def test_auto_picks_by_cpu_features(monkeypatch, x86, bf16, calibrated, expected):
    # CPU features cannot be switched off on a real CPU, so the probes are replaced
    monkeypatch.setattr(predictor, "native_bf16", lambda: bf16)
    monkeypatch.setattr(quantize, "auto_ok", lambda: x86)
    assert resolve_precision("auto", calibrated) == expected


@pytest.mark.parametrize("bf16", [True, False])
def test_int8_lstm_runs_in_bf16_only_where_bf16_is_native(monkeypatch, crnn_path, bf16):
    # emulated bf16 is slower than fp32, so the LSTM stays fp32 there; the probe is replaced to test both paths
    monkeypatch.setattr(predictor, "native_bf16", lambda: bf16)
    int8 = RecognizerRunner(crnn_path, precision="int8", lexicon_path=None)
    fp32 = RecognizerRunner(crnn_path, precision="fp32", lexicon_path=None)
    lstm_dtype = next(int8.model.rnn.parameters()).dtype
    assert lstm_dtype == (torch.bfloat16 if bf16 else torch.float32)
    assert next(fp32.model.rnn.parameters()).dtype == torch.float32  # only int8 mixes precisions
    crops = _crops(np.random.default_rng(2), 12)
    a, b = fp32.column_probs(crops), int8.column_probs(crops)
    assert all(p.dtype == np.float32 for p in b)
    diff = np.concatenate([np.abs(x - y).ravel() for x, y in zip(a, b)])
    assert 0 < diff.mean() < 0.02


def test_int8_ctpn_with_a_bf16_lstm_detects_like_fp32(monkeypatch, ctpn_path):
    monkeypatch.setattr(predictor, "native_bf16", lambda: True)
    fp32, mixed = DetectorRunner(ctpn_path, precision="fp32"), DetectorRunner(ctpn_path, precision="int8")
    assert isinstance(mixed.model.rnn, quantize.Bf16Recurrent)
    x = torch.from_numpy(np.random.default_rng(1).normal(0, 1, (1, 3, 96, 128)).astype(np.float32))
    with torch.inference_mode():
        a, b = fp32.model(x), mixed.model(x)
    for key in ("scores", "vertical", "side"):
        assert b[key].dtype == torch.float32
        rel = (a[key] - b[key]).norm() / a[key].norm()
        assert 0 < rel < 0.1, key


@pytest.mark.parametrize(("precision", "bf16", "expected"), [
    ("int8", True, BF16_ROW_MULTIPLE),  # its LSTM runs in bf16
    ("int8", False, 1),
    ("bf16", True, BF16_ROW_MULTIPLE),  # autocast runs the LSTM in bf16 too
    ("fp32", True, 1),  # fp32's LSTM has no slow batch sizes: padding would only cost
])
def test_ctpn_lstm_rows_are_padded_only_where_the_lstm_runs_in_bf16(monkeypatch, ctpn_path, precision, bf16,
                                                                     expected):
    monkeypatch.setattr(predictor, "native_bf16", lambda: bf16)
    assert DetectorRunner(ctpn_path, precision=precision).model.row_multiple == expected


@pytest.mark.parametrize(("precision", "gpu_bf16", "expected"), [
    ("auto", True, "bf16"),  # Ampere and later
    ("auto", False, "fp32"),  # a T4, a V100: no bf16
    ("fp32", True, "fp32"),
    ("bf16", True, "bf16"),
])
def test_on_a_gpu_auto_is_bf16_where_the_gpu_has_it_and_never_int8(monkeypatch, precision, gpu_bf16, expected):
    # no GPU here: its bf16 probe is replaced; the int8 refusal needs no GPU
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: gpu_bf16)
    assert resolve_precision(precision, calibrated=True, device="cuda") == expected
    with pytest.raises(ValueError, match="CPUs only"):
        resolve_precision("int8", calibrated=True, device="cuda")


def test_a_replica_given_a_gpu_that_torch_cannot_see_fails_at_start_and_cpu_runs_as_before(crnn_path, ctpn_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the refusal cannot happen here")
    with pytest.raises(RuntimeError, match="no CUDA device"):
        RecognizerRunner(crnn_path, lexicon_path=None, device="cuda")
    with pytest.raises(RuntimeError, match="no CUDA device"):
        DetectorRunner(ctpn_path, device="cuda")
    with pytest.raises(ValueError, match="choose one of cpu, cuda"):
        DetectorRunner(ctpn_path, device="mps")
    runner = DetectorRunner(ctpn_path, precision="fp32", device="cpu")
    assert runner.device == torch.device("cpu") and runner.precision == "fp32"
