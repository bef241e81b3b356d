"""`benchmarks.devices`, the check a GPU session runs: the same run twice agrees exactly, and the words are real."""

import numpy as np

from benchmarks import devices
from training.metrics import tokens
from training.synth import render_lines

LINES = ["Invoice number 4521", "Total due 38.90"]


def test_a_run_agrees_with_itself_and_reads_the_page(tmp_path, capsys):
    image, _ = render_lines(LINES, size=30)
    image.save(tmp_path / "page.png")
    rows = devices.main(devices.get_args_parser().parse_args([str(tmp_path / "page.png"),
                                                               "--runs", "cpu:fp32", "cpu:fp32"]))
    assert [(r["run"], r["precision"], r["f1_vs_reference"], r["same_words"]) for r in rows] == [
        ("cpu:fp32", "fp32", 1.0, 1), ("cpu:fp32", "fp32", 1.0, 1)]
    assert "| cpu:fp32 | fp32 | 1 | 1.000 | 1 |" in capsys.readouterr().out
    words, seconds = devices.read_all(devices.predictor(devices.AppConfig(), "cpu", "fp32"), [np.asarray(image)])
    assert words == [tokens(" ".join(LINES))] and len(seconds) == 1  # what is compared is the page's words
