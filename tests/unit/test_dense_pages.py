"""The dense-page benchmark's pages: what it says is on them is what is drawn."""

import io

import numpy as np
import pytest
from PIL import Image

from benchmarks.dense_pages import KINDS, render


@pytest.mark.parametrize("kind", ["a4-200-8", "screenshot-1280x2000"])
def test_a_page_holds_its_lines_inside_its_margins_and_the_same_seed_draws_the_same_page(kind):
    width, height, _, size, pitch, margin = KINDS[kind]
    data, words, lines = render(kind, 0)
    ink = np.asarray(Image.open(io.BytesIO(data)).convert("L")) < 128
    assert ink.shape == (height, width) and lines == len(range(margin, height - margin - size, pitch))
    assert not ink[:, width - margin + 2:].any() and not ink[:, :margin - 2].any()  # every line fits its width
    rows = np.flatnonzero(ink.any(1))
    assert rows[0] >= margin and rows[-1] < margin + lines * pitch
    assert len(words) > 8 * lines and render(kind, 0)[1] == words and render(kind, 1)[1] != words
