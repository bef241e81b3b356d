"""The detector's input: what `preprocess` hands the network, and that batching images does not change lines."""

import numpy as np
import pytest
from PIL import Image

from serve_app.ocr.predictor import DetectorRunner
from serve_app.ocr.processing import detection
from serve_app.ocr.processing.detection import MEAN, STD, DetectionParams
from training.synth import render_lines


def test_preprocess_normalises_channels_last_and_pads_with_the_mean_colour():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(50, 70, 3), dtype=np.uint8)
    p = DetectionParams(short_side=100, max_side=1000, max_upscale=2.0)
    arr, scale = detection.preprocess(image, p)
    assert scale == 2.0
    assert arr.shape == (112, 144, 3) and arr.dtype == np.float32  # 100 x 140, padded to multiples of 16
    resized = np.asarray(Image.fromarray(image).resize((140, 100), Image.BILINEAR), dtype=np.float32)
    np.testing.assert_allclose(arr[:100, :140], (resized / 255.0 - MEAN) / STD, atol=1e-5)
    assert not arr[100:].any() and not arr[:, 140:].any()


def test_preprocess_shrinks_like_pillows_antialiased_bilinear_filter():
    """Large pages are shrunk; the torch resize must see what Pillow's filter (used in training) makes of them."""
    rng = np.random.default_rng(1)
    blocks = rng.integers(0, 256, size=(60, 45, 3), dtype=np.uint8)
    image = np.ascontiguousarray(np.repeat(np.repeat(blocks, 5, 0), 5, 1))
    image.setflags(write=False)  # as Ray hands it over
    p = DetectionParams(short_side=150, max_side=200)
    arr, scale = detection.preprocess(image, p)
    assert scale == 200 / 300 and arr.shape == (208, 160, 3)  # 300 x 225 -> 200 x 150, padded
    resized = np.asarray(Image.fromarray(image).resize((150, 200), Image.BILINEAR), dtype=np.float32)
    grey_levels = np.abs(arr[:200, :150] - (resized / 255.0 - MEAN) / STD) * 255.0 * STD
    assert grey_levels.max() < 1.01 and grey_levels.mean() < 0.2  # a rounding apart at most
    assert not arr[200:].any() and not arr[:, 150:].any()


def test_a_batch_of_frames_finds_the_lines_each_finds_alone():
    """Same-sized images share a forward pass (stacked channels-last); the lines must not depend on that."""
    a, _ = render_lines(["Invoice number 4521", "Total due 38.90"], size=30)
    b, _ = render_lines(["The quick brown fox", "Thank you"], size=30)
    w, h = max(a.width, b.width), max(a.height, b.height)
    frames = [np.asarray(im.crop((0, 0, w, h))) for im in (a, b)]  # PIL pads the crop with black
    runner = DetectorRunner(precision="fp32")
    together = runner.detect(frames)
    alone = [runner.detect([f])[0] for f in frames]
    assert [len(x) for x in together] == [2, 2]
    for t, s in zip(together, alone):
        np.testing.assert_allclose([ln.box for ln in t], [ln.box for ln in s], atol=0.5)


def test_the_shifted_view_is_the_frame_moved_by_half_an_anchor_row():
    arr = np.arange(32 * 48 * 3, dtype=np.float32).reshape(32, 48, 3) + 1
    out = detection.shifted(arr)
    k = detection.VIEW_SHIFT
    assert k == detection.STRIDE // 2 and out.shape == (48, 64, 3)  # still multiples of the stride
    np.testing.assert_array_equal(out[k:k + 32, k:k + 48], arr)
    assert not out[:k].any() and not out[:, :k].any() and not out[k + 32:].any() and not out[:, k + 48:].any()


def test_the_second_view_puts_its_lines_where_the_first_does():
    """Proposals of the shifted view are moved back before fusing: a sign error would double every line."""
    img, truth = render_lines(["Invoice number 4521", "Total due 38.90", "Thank you"], size=30)
    one = DetectorRunner(params=DetectionParams(views=1), precision="fp32").detect([np.asarray(img)])[0]
    two = DetectorRunner(params=DetectionParams(views=2), precision="fp32").detect([np.asarray(img)])[0]
    assert len(one) == len(two) == 3
    for a, b, t in zip(one, two, truth):
        np.testing.assert_allclose(a.box, b.box, atol=6)
        assert abs(b.box[1] - t.box[1]) < 8 and abs(b.box[3] - t.box[3]) < 8


def test_lines_between_anchor_rows_are_found_on_a_dense_pdf_page():
    """9 pt text at 200 dpi, 57 lines: the shipped CTPN read once lost whole lines at one phase of its anchor rows."""
    import random

    from serve_app.imaging import decode_image
    from training.corpus import random_line
    from training.pdfs import text_pdf

    rng = random.Random(0)
    lines = [random_line(rng) for _ in range(57)]
    page = decode_image(text_pdf([lines], size=9, width=612, height=792), 10**8, 40_000_000, 3392).pixels
    found = DetectorRunner().detect([page])[0]
    pitch = 1.4 * 9 * 200 / 72  # px between baselines
    centres = [(36 + 9 + i * 1.4 * 9) * 200 / 72 - pitch / 4 for i in range(len(lines))]
    missed = [i for i, y in enumerate(centres) if not any(ln.box[1] < y < ln.box[3] for ln in found)]
    assert missed == []


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_the_two_views_share_one_stem_pass(precision):
    """The frame's own view is exactly a pass of its own; the moved view, built from its stem, nearly so."""
    img, _ = render_lines(["Invoice number 4521", "Total due 38.90", "Thank you"], size=30)
    runner = DetectorRunner(precision=precision)
    frame, _ = detection.preprocess(np.asarray(img), runner.params)
    (own, zero), (moved, shift) = runner._two_views([frame])
    assert (zero, shift) == (0, detection.VIEW_SHIFT)
    alone = runner._forward([frame])
    for key in ("scores", "vertical", "side"):
        np.testing.assert_array_equal(own[key], alone[key])
    p, q = (detection.softmax_text(o["scores"]) for o in (moved, runner._forward([detection.shifted(frame)])))
    assert p.shape == q.shape and (q > 0.5).sum() > 100  # the frame has text for the scores to differ on
    assert np.abs(p - q).mean() < 0.005  # moved by a cell too few or too many: 0.017-0.019


def test_a_frame_reduced_before_it_is_sent_finds_the_same_lines_in_the_uploads_pixels():
    """The ingress sends the detector the frame at its scale (`detection.reduce`, on one thread); the network sees the
    same pixels as from the upload itself, and the lines come back in the upload's pixels."""
    import torch

    runner = DetectorRunner()
    text, _ = render_lines(["Invoice number 4521", "Total due 38.90", "Thank you"], size=64)
    page = Image.new("RGB", (3000, 2100), (250, 248, 240))
    page.paste(text, (900, 700))
    photo = np.asarray(page)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        reduced = detection.reduce(photo, runner.params)
    finally:
        torch.set_num_threads(threads)
    assert isinstance(reduced, detection.Reduced) and reduced.pixels.shape == (960, 1371, 3)
    assert (reduced.width, reduced.height) == (3000, 2100) and reduced.scale == pytest.approx(960 / 2100)
    np.testing.assert_array_equal(detection.preprocess(reduced, runner.params)[0],
                                  detection.preprocess(photo, runner.params)[0])
    lines = runner.detect([photo])[0]
    assert len(lines) == 3 and runner.detect([reduced])[0] == lines
    assert all(ln.box[0] > 800 for ln in lines)  # in the upload's pixels
    small = np.asarray(text)  # a frame the detector enlarges goes as it is
    assert detection.reduce(small, runner.params) is small


@pytest.mark.parametrize("size", [(1280, 720), (3000, 2100), (2100, 3000), (1000, 1760), (600, 100), (5000, 1280)])
def test_pages_and_frames_are_scaled_by_their_short_side_within_max_side(size):
    """Frames, photos, pages up to 1.76 times taller than wide and wide strips (banners) scale as they always did."""
    p = DetectionParams()
    w, h = size
    assert detection.target_scale(w, h, p) == min(p.short_side / min(w, h), p.max_side / max(w, h), p.max_upscale)


def test_a_tall_strip_keeps_its_width_and_grows_along_its_height_within_max_long_side():
    """Brought to max_side, a 1280 x 5000 screenshot of 16 px text shrank to 0.34 and no line of it was found."""
    p = DetectionParams()
    assert detection.target_scale(1280, 5000, p) == pytest.approx(p.min_short_side / 1280)
    assert detection.target_scale(5000, 1280, p) == pytest.approx(p.max_side / 5000)  # a wide strip: as before
    assert round(9000 * detection.target_scale(1280, 9000, p)) == 6750 > p.max_side
    assert detection.target_scale(1280, 20000, p) == pytest.approx(p.max_long_side / 20000)  # its cost is bounded
    assert detection.target_scale(300, 3000, p) == p.max_upscale  # a small strip is enlarged as a small page is
    off = DetectionParams(min_short_side=0)
    assert detection.target_scale(1280, 5000, off) == pytest.approx(off.max_side / 5000)


def test_a_long_screenshot_of_small_text_is_found_line_by_line():
    """150 lines of 16 px text on a 1000 x 4400 page: at max_side (0.39 of its size) 3 of them were found."""
    rows = [f"Comment {i}: the parcel came on time and well packed" for i in range(150)]
    page, truth = render_lines(rows, size=16, width=1000)
    assert page.height / page.width > DetectionParams().max_side / DetectionParams().min_short_side
    lines = DetectorRunner().detect([np.asarray(page)])[0]
    found = sum(any(ln.box[1] <= (t.box[1] + t.box[3]) / 2 <= ln.box[3] and ln.box[0] < t.box[2] for ln in lines)
                for t in truth)
    assert found >= 140, (found, len(lines))


def test_every_line_of_a_page_full_of_text_is_found():
    """60 lines of 16 px text edge to edge go past 2,000 proposals: a flat 2,000, the best first, found 42 of them."""
    rows = [" ".join(f"item{i}{j} costs {i * j % 97}.50" for j in range(6)) for i in range(60)]
    page, truth = render_lines(rows, size=16, width=1280)
    assert page.height < page.width * DetectionParams().max_side / DetectionParams().min_short_side  # not a strip
    lines = DetectorRunner().detect([np.asarray(page)])[0]
    found = sum(any(ln.box[1] <= (t.box[1] + t.box[3]) / 2 <= ln.box[3] and ln.box[0] < t.box[2] for ln in lines)
                for t in truth)
    assert found >= 58, (found, len(lines))
