"""The page preview: scaled down to the side asked, never up, and the same picture the models read."""

import base64
import io

import numpy as np
import pytest
from PIL import Image

from serve_app.previews import page_preview


def decoded(preview: dict) -> np.ndarray:
    head, data = str(preview["url"]).split(",", 1)
    assert head == "data:image/jpeg;base64"
    img = Image.open(io.BytesIO(base64.b64decode(data)))
    assert img.format == "JPEG" and img.size == (preview["width"], preview["height"])
    return np.asarray(img.convert("RGB")).astype(int)


def page(height: int, width: int) -> np.ndarray:
    """A white page with a dark bar in its top left quarter and a red square in its bottom right one."""
    px = np.full((height, width, 3), 255, np.uint8)
    px[height // 8: height // 4, width // 8: width // 2] = 20
    px[3 * height // 4: 7 * height // 8, 3 * width // 4: 7 * width // 8] = (220, 30, 30)
    return px


@pytest.mark.parametrize("size,side,expected", [((1000, 1600), 400, (400, 250)), ((1600, 1000), 400, (250, 400)),
                                                ((300, 200), 4096, (200, 300)), ((999, 1), 100, (1, 100))])
def test_the_long_side_is_at_most_the_side_asked_and_never_enlarged(size, side, expected):
    preview = page_preview(page(*size), side)
    assert (preview["width"], preview["height"]) == expected
    decoded(preview)


def test_the_preview_is_the_page_scaled_not_another_picture():
    px = page(800, 1200)
    preview = page_preview(px, 300)
    small = decoded(preview)
    expected = np.asarray(Image.fromarray(px).resize((300, 200), Image.Resampling.BOX)).astype(int)
    assert np.abs(small - expected).mean() < 6  # JPEG's losses only
    assert small[35, 60].max() < 60 and small[165, 240].tolist() == pytest.approx([220, 30, 30], abs=25)
