import pytest
import torch

from serve_app.ocr.models.crnn import build_crnn
from serve_app.ocr.models.ctpn import BACKBONES, build_ctpn
from serve_app.ocr.models.weights import load_model, save_weights


@pytest.mark.parametrize("backbone", BACKBONES)
def test_ctpn_outputs_one_set_of_anchors_per_16px_cell(backbone):
    model = build_ctpn(backbone=backbone, head_channels=64).eval()
    with torch.inference_mode():
        out = model(torch.zeros(2, 3, 64, 96))
    assert out["scores"].shape == (2, 4, 6, 10, 2)
    assert out["vertical"].shape == (2, 4, 6, 10, 2)
    assert out["side"].shape == (2, 4, 6, 10)


def test_unknown_names_are_errors():
    with pytest.raises(ValueError, match="unknown CTPN backbone"):
        build_ctpn(backbone="alexnet")
    with pytest.raises(ValueError, match="unknown CRNN variant"):
        build_crnn(variant="huge")


@pytest.mark.parametrize("variant", ["slim", "full"])
def test_crnn_gives_one_column_per_4_pixels_in_train_and_eval(variant):
    model = build_crnn(variant=variant)
    for mode in (model.train(), model.eval()):
        out = mode(torch.zeros(3, 1, 32, 128))
        assert out.shape == (3, 32, 96)


def test_weights_round_trip_in_half_precision(tmp_path):
    model = build_crnn().eval()
    path = save_weights(model, tmp_path / "crnn.pt", {"steps": 7})
    loaded, meta = load_model(path)
    assert meta == {"steps": 7}
    x = torch.randn(1, 1, 32, 64)
    with torch.inference_mode():
        assert torch.allclose(model(x), loaded(x), atol=5e-2)
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        load_model(tmp_path / "missing.pt")
