"""A replica reads made-up pages before its first request: that must leave every later answer as it was."""

import numpy as np
import pytest
from pydantic import ValidationError

from serve_app.config import AppConfig
from serve_app.ocr.pipeline import make_crops
from serve_app.ocr.predictor import DetectorRunner, RecognizerRunner, warm_up_page
from training.synth import render_lines

LINES = ["Warm bread 2.40", "Cold milk 1.15", "Paid by card"]


def test_the_made_up_page_is_dark_bars_on_light_paper_of_the_size_asked():
    page = warm_up_page(1280, 720)
    assert page.shape == (720, 1280, 3) and page.dtype == np.uint8
    dark = (page[..., 0] < 128).mean()
    assert 0.15 < dark < 0.5  # rows of bars, not a blank page the network would pass through idly
    assert np.array_equal(page, warm_up_page(1280, 720))  # the same every start
    rows_with_ink = np.flatnonzero((page[..., 0] < 128).any(axis=1))
    assert len(rows_with_ink) and rows_with_ink.max() < 720 - 24


def test_warmed_up_models_read_a_page_as_fresh_ones_do():
    img, _ = render_lines(LINES, size=30)
    pixels = np.asarray(img.convert("RGB"))
    fresh_detector, warm_detector = DetectorRunner(), DetectorRunner()
    assert warm_detector.warm_up([(1280, 720), (600, 900)]) > 0
    fresh_lines, warm_lines = fresh_detector.detect([pixels])[0], warm_detector.detect([pixels])[0]
    assert len(fresh_lines) == len(LINES)
    assert [(ln.box, ln.poly, ln.score) for ln in warm_lines] == [(ln.box, ln.poly, ln.score) for ln in fresh_lines]

    crops = [c.pixels for c in make_crops(pixels, fresh_lines)]
    fresh_recognizer, warm_recognizer = RecognizerRunner(), RecognizerRunner()
    assert warm_recognizer.warm_up() > 0
    fresh, warm = fresh_recognizer.read(crops), warm_recognizer.read(crops)
    assert [d.text for d in fresh] == LINES
    assert [(d.text, d.probs) for d in warm] == [(d.text, d.probs) for d in fresh]


def test_warm_up_is_configured_once_for_every_replica():
    config = AppConfig.load(overrides={"detector": {"warm_up": [[640, 480]]}, "recognizer": {"warm_up": False}})
    assert config.detector.warm_up == [(640, 480)] and config.recognizer.warm_up is False
    assert AppConfig.load(overrides={"detector": {"warm_up": []}}).detector.warm_up == []
    for bad in ([[8, 8]], [[1280]], [[1280, 720]] * 9):
        with pytest.raises(ValidationError):
            AppConfig.load(overrides={"detector": {"warm_up": bad}})
