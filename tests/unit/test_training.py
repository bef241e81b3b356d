"""Training runs end to end on tiny synthetic data, resumes from its checkpoint, and exports loadable weights."""

import random

import numpy as np
import pytest

from serve_app.ocr.models.weights import load_model
from serve_app.ocr.predictor import DetectorRunner, RecognizerRunner
from training import train_crnn, train_ctpn
from training.metrics import bag_counts, cer, prf
from training.synth import render_crop, render_lines, render_page


@pytest.mark.parametrize(("variant", "amp"), [("slim", "bf16"), ("full", "off")])
def test_crnn_trains_resumes_and_exports(tmp_path, variant, amp):
    args = train_crnn.get_args_parser().parse_args(
        ["--variant", variant, "--steps", "2", "--batch-size", "4", "--no-real", "--val-every", "2", "--val-size", "4",
         "--amp", amp, "--arc-share", "0.5", "--out", str(tmp_path / "run"),
         "--snapshot", str(tmp_path / "snap{step}.pt")]
    )
    record = train_crnn.main(args)
    assert record["step"] == 2 and 0 <= record["synthetic_clean"]["cer"]
    args.steps = 3  # resume: one more step from the checkpoint
    assert train_crnn.main(args)["step"] == 3
    for step in (2, 3):  # servable weights at every save: a run cut short still leaves a result
        _, snap = load_model(tmp_path / f"snap{step}.pt")
        assert snap["steps"] == step and snap["trained_by"] == "training/train_crnn.py"
        assert snap["history"][-1]["step"] == step
    train_crnn.main(train_crnn.get_args_parser().parse_args(  # the export call names no training options
        ["--variant", variant, "--out", str(tmp_path / "run"), "--export", "--export-path", str(tmp_path / "crnn.pt")]))
    model, meta = load_model(tmp_path / "crnn.pt")
    assert meta["steps"] == 3 and meta["args"]["no_real"] and meta["args"]["steps"] == 3  # the run's own options
    assert meta["args"]["arc_share"] == 0.5
    params = sum(p.numel() for p in model.parameters())
    assert (params < 3e6) if variant == "slim" else (params > 8e6)
    assert (tmp_path / "crnn.pt").stat().st_size < 20e6  # fp16 weights stay under the size budget
    runner = RecognizerRunner(tmp_path / "crnn.pt")
    assert len(runner.read([np.zeros((32, 64), np.float32)])) == 1
    assert isinstance(runner.read_word(np.full((30, 90), 200, np.uint8)).text, str)  # the five-width word path


@pytest.mark.parametrize("amp", ["off", "bf16"])
def test_ctpn_trains_and_exports(tmp_path, amp):
    args = train_ctpn.get_args_parser().parse_args(
        ["--steps", "2", "--batch-size", "2", "--size", "128", "--no-real", "--save-every", "2",
         "--head-channels", "32", "--amp", amp, "--out", str(tmp_path / "run"), "--snapshot", str(tmp_path / "snap.pt")]
    )
    record = train_ctpn.main(args)
    assert record["step"] == 2 and record["cls"] > 0
    _, snap = load_model(tmp_path / "snap.pt")  # servable weights at the save, named after the script that made them
    assert snap["steps"] == 2 and snap["trained_by"] == "training/train_ctpn.py" and snap["history"] == [record]
    args.export, args.export_path = True, str(tmp_path / "ctpn.pt")
    train_ctpn.main(args)
    lines = DetectorRunner(tmp_path / "ctpn.pt").detect([np.full((64, 96, 3), 255, np.uint8)])
    assert lines == [[]] or isinstance(lines[0], list)


def test_synthetic_data_is_reproducible_and_labelled():
    a, ta = render_crop(random.Random(7))
    b, tb = render_crop(random.Random(7))
    assert ta == tb and np.array_equal(a, b)
    img, lines = render_page(random.Random(3), 400, 300)
    assert img.size == (400, 300) and lines
    for ln in lines:
        x0, y0, x1, y1 = ln.box
        assert 0 <= x0 < x1 <= 400 and y0 < y1
        assert " ".join(w for w, _ in ln.words) == " ".join(ln.text.split())
    img, (line,) = render_lines(["two words"])
    assert [w for w, _ in line.words] == ["two", "words"] and line.words[0][1][2] < line.words[1][1][0]


def test_metrics():
    assert bag_counts(["Hello, World!", "again"], ["hello world", "AGAIN", "missing"]) == (3, 3, 4)
    assert prf(3, 3, 4) == (1.0, 0.75, 6 / 7)
    assert cer("kitten", "sitting") == 3 / 7


def test_soup_interpolates_two_weights_files_of_one_model(tmp_path):
    import argparse

    import torch

    from serve_app.ocr.models.crnn import build_crnn
    from serve_app.ocr.models.weights import save_weights
    from training import soup

    torch.manual_seed(0)
    a, b = build_crnn(), build_crnn()
    save_weights(a, tmp_path / "a.pt"), save_weights(b, tmp_path / "b.pt")
    soup.main(argparse.Namespace(start=tmp_path / "a.pt", tuned=tmp_path / "b.pt", alpha=0.25, out=tmp_path / "s.pt"))
    (sa, _), (sb, _), (ss, meta) = (load_model(tmp_path / f"{n}.pt") for n in "abs")
    assert meta["alpha"] == 0.25 and meta["trained_by"] == "training/soup.py"
    name = next(k for k, v in ss.state_dict().items() if v.is_floating_point() and v.numel() > 100)
    want = 0.75 * sa.state_dict()[name] + 0.25 * sb.state_dict()[name]
    assert torch.allclose(ss.state_dict()[name], want, atol=2e-3)  # fp16 storage
    assert not torch.allclose(ss.state_dict()[name], sb.state_dict()[name], atol=2e-3)
    with pytest.raises(ValueError, match="different parameters"):
        soup.interpolate({"w": torch.zeros(2)}, {"v": torch.zeros(2)}, 0.5)
