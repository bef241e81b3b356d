import pytest
import torch

from serve_app.ocr.alphabet import encode
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


@pytest.mark.parametrize("backbone", BACKBONES)
def test_ctpn_stem_ends_at_its_stride_and_the_trunk_finishes_the_pass(backbone):
    model = build_ctpn(backbone=backbone, head_channels=64).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.inference_mode():
        stem = model.stem(x)
        assert stem.shape[2:] == (64 // model.stem_stride, 96 // model.stem_stride)
        whole, parts = model(x), model.trunk(stem)
    for key in whole:
        torch.testing.assert_close(whole[key], parts[key])


def test_ctpn_pads_its_lstm_rows_without_changing_the_answer():
    model = build_ctpn(head_channels=64).eval()
    x = torch.randn(1, 3, 80, 96)  # 5 feature rows of 6 cells
    batches: list[int] = []
    model.rnn.register_forward_hook(lambda _m, args, _out: batches.append(args[0].shape[0]))
    with torch.inference_mode():
        plain = model(x)
        model.row_multiple = 8
        padded = model(x)
    assert batches == [5, 8]
    for key in plain:
        assert padded[key].shape == plain[key].shape
        torch.testing.assert_close(padded[key], plain[key])


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


def test_each_runner_refuses_the_other_models_weights_by_name(tmp_path):
    """A config that swaps the two files fails at start naming both (before, an AttributeError on `stem`, `charset`)."""
    from serve_app.ocr.predictor import DetectorRunner, RecognizerRunner

    crnn = save_weights(build_crnn(), tmp_path / "crnn.pt")
    with pytest.raises(ValueError, match="holds a CRNN, not the CTPN"):
        DetectorRunner(crnn, precision="fp32")
    ctpn = save_weights(build_ctpn(), tmp_path / "ctpn.pt")
    with pytest.raises(ValueError, match="holds a CTPN, not the CRNN"):
        RecognizerRunner(ctpn, precision="fp32", lexicon_path=None)


def test_case_head_gives_a_distribution_whose_case_only_trusted_labels_train():
    torch.manual_seed(0)
    model = build_crnn(case_head=True)
    logp = model(torch.randn(2, 1, 32, 64))
    assert logp.shape == (2, 16, 96)
    assert torch.allclose(logp.exp().sum(-1), torch.ones(2, 16), atol=1e-5)
    from training.train_crnn import case_folded_log_probs

    targets, lens = torch.tensor(encode("AB") * 2), torch.tensor([2, 2])
    ctc = torch.nn.CTCLoss(blank=0, reduction="sum")
    folded = case_folded_log_probs(logp.transpose(0, 1), torch.tensor([True, True]))
    ctc(folded, targets, torch.tensor([16, 16]), lens).backward(retain_graph=True)
    assert model.case.weight.grad.abs().max() < 1e-6  # case-free labels leave the case scores alone ...
    assert model.classifier.weight.grad.abs().max() > 0  # ... and still train the folded classes
    model.zero_grad()
    ctc(logp.transpose(0, 1), targets, torch.tensor([16, 16]), lens).backward()
    assert model.case.weight.grad.abs().max() > 0


def test_case_head_warm_start_keeps_the_plain_models_case_decisions():
    from training.train_crnn import factor_output_layer

    torch.manual_seed(0)
    plain, cased = build_crnn().eval(), build_crnn(case_head=True).eval()
    x = torch.randn(4, 1, 32, 96)
    assert factor_output_layer(cased, plain.state_dict(), [x]) == 4 * 24
    with torch.inference_mode():
        a, b = plain(x).log_softmax(-1), cased(x)
    up, lo = cased.upper, cased.lower
    assert torch.allclose(a[..., up] - a[..., lo], b[..., up] - b[..., lo], atol=1e-4)  # exact: same case odds
    assert (a.argmax(-1) == b.argmax(-1)).float().mean() > 0.9  # and nearly the same readings
