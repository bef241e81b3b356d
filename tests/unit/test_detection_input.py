"""The detector's input: what `preprocess` hands the network, and that batching images does not change lines."""

import collections
import io
import pickle

import numpy as np
import pytest
from PIL import Image

from benchmarks.dense_pages import KINDS, render
from serve_app.ocr.predictor import DetectorRunner
from serve_app.ocr.processing import detection
from serve_app.ocr.processing.detection import MEAN, STD, WINDOW_OVERLAP, DetectionParams
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


def test_a_reduced_strip_read_in_parts_finds_the_lines_its_upload_does_in_the_uploads_pixels():
    runner = DetectorRunner(params=DetectionParams(pass_side=1024))
    strip = Image.new("RGB", (1280, 3000), "white")
    rows = (200, 900, 1465, 2055)  # the last three across the seams, at 917, 1483 and 2069 px
    for i, y in enumerate(rows):
        strip.paste(render_lines([f"Order {i} shipped to Leeds"], size=24)[0], (100, y))
    pixels = np.asarray(strip)
    reduced = detection.reduce(pixels, runner.params)
    assert isinstance(reduced, detection.Reduced)
    assert len(detection.windows(reduced.pixels.shape[0], runner.params)) == 4
    lines = runner.detect([pixels])[0]
    assert runner.detect([reduced])[0] == lines
    tops = sorted(ln.box[1] for ln in lines)  # one line each, in the strip's own pixels: where it was pasted
    offsets = [top - y for top, y in zip(tops, rows, strict=True)]  # (its text lies below a margin)
    assert len(tops) == len(rows) and max(offsets) - min(offsets) < 4, tops


def test_a_strips_parts_read_apart_by_two_runners_in_any_order_join_into_the_lines_of_one_reading():
    """The ingress sends a tall strip's parts to the detector at once, a call each (`detection.split`), so any
    replica may read any of them, after the others or before. Joined in the parts' order, their proposals are the
    lines one reading of the strip finds, to every coordinate and score."""
    params = DetectionParams(pass_side=1024)
    runner, other = DetectorRunner(params=params), DetectorRunner(params=params)
    wide, narrow = Image.new("RGB", (1280, 3000), "white"), Image.new("RGB", (400, 1500), "white")
    rows = (200, 900, 1465, 2055)  # across the seams of the wide strip's parts
    for i, y in enumerate(rows):
        wide.paste(render_lines([f"Order {i} shipped to Leeds"], size=24)[0], (100, y))
        narrow.paste(render_lines([f"Order {i} sent"], size=16)[0], (10, y // 2))
    reduced = detection.reduce(np.asarray(wide), params)
    assert isinstance(reduced, detection.Reduced)
    for frame in (reduced, np.asarray(wide), np.asarray(narrow)):  # at the detector's scale, shrunk or enlarged
        strip = detection.split(frame, params)
        assert len(strip.parts) >= 3 and (strip.width, strip.height) == detection.size_of(frame)
        parts = [pickle.loads(pickle.dumps(part)) for part in strip.parts]  # as Ray hands them over
        found = {i: (runner if i % 2 else other).propose([parts[i]])[0] for i in reversed(range(len(parts)))}
        lines = detection.lines_of([found[i] for i in range(len(parts))], strip, params)
        assert lines == runner.detect([frame])[0] and len(lines) == len(rows)
        assert sum(len(f.scores) > 0 for f in found.values()) >= 2
        for i, part in enumerate(parts):  # each proposal from the part whose core holds it, and only those that pass
            f = found[i]
            centres = (f.boxes[:, 1] + f.boxes[:, 3]) / 2
            assert ((centres >= part.lo) & (centres < part.hi)).all()
            assert (f.scores >= params.score_threshold).all()
    page = detection.reduce(np.asarray(wide.resize((1280, 1800))), DetectionParams())
    one = detection.split(page, DetectionParams())  # a page read in one pass is one part, the frame as it came
    assert isinstance(page, detection.Reduced) and len(one.parts) == 1
    assert one.parts[0].pixels.shape == page.pixels.shape and np.shares_memory(one.parts[0].pixels, page.pixels)


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
    assert detection.target_scale(1280, 20000, p) == pytest.approx(p.min_short_side / 1280)  # read in parts
    assert detection.target_scale(1280, 40000, p) == pytest.approx(p.max_long_side / 40000)  # its cost is bounded
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


def test_each_row_of_a_screenshot_full_of_text_is_one_line():
    """A screenshot of 16 px text edge to edge gives 2.7 proposals per cell above the threshold; at most 2 per cell
    went to NMS, and 4 of this one's 197 rows came back in pieces, words lost between them."""
    data, _, rows = render("screenshot-1280x5000", 0)
    _, _, _, _, pitch, margin = KINDS["screenshot-1280x5000"]
    lines = DetectorRunner().detect([np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))])[0]
    by_row = collections.Counter(int(((ln.box[1] + ln.box[3]) / 2 - margin) // pitch) for ln in lines)
    assert len(by_row) == rows and sum(n > 1 for n in by_row.values()) <= 1, sorted(by_row.items())[:10]


@pytest.mark.parametrize("pass_side", [1024, 2048, 6784, 6800])
def test_a_strip_taller_than_one_pass_is_read_in_overlapping_parts_whose_cores_tile_it(pass_side):
    p = DetectionParams(pass_side=pass_side)
    assert detection.windows(pass_side, p) == [(0, pass_side, -np.inf, np.inf)]  # one pass while it fits
    for height in range(pass_side + 1, 30_000, 37):
        parts = detection.windows(height, p)
        assert parts[0][0] == 0 and parts[-1][1] == height and parts[0][2] == -np.inf and parts[-1][3] == np.inf
        for r0, r1, lo, hi in parts:
            assert r0 % 16 == 0 and 0 < r1 - r0 <= pass_side  # on the anchor grid; one pass's memory at most
            assert lo == -np.inf or lo - r0 >= WINDOW_OVERLAP / 2 - 16  # a kept proposal's line lies whole inside
            assert hi == np.inf or r1 - hi >= WINDOW_OVERLAP / 2 - 16
        for (_, _, _, hi), (_, _, lo, _) in zip(parts, parts[1:], strict=False):
            assert hi == lo  # every centre is kept from exactly one part
        lengths = [r1 - r0 for r0, r1, _, _ in parts]
        assert max(lengths) - min(lengths) <= 16  # parts of one length: none is wasted on a sliver
        fewer = len(parts) - 1  # as few as fit: one part less, each a whole pass, could not have covered it
        assert fewer * pass_side - (fewer - 1) * WINDOW_OVERLAP < height


def test_how_many_parts_an_image_is_read_in():
    p = DetectionParams()
    assert detection.passes(1280, 720, p) == detection.passes(1280, 9000, p) == 1  # 960 x 6750 in one pass
    assert detection.passes(1280, 20000, p) == 3  # 960 x 15000
    assert detection.passes(1280, 40000, p) == 5  # brought to max_long_side
    assert detection.passes(20000, 1280, p) == 1  # a wide strip is brought to max_side


def test_a_strip_read_in_parts_finds_every_line_once_even_where_a_seam_crosses_it():
    """Parts of 1024 rows: 50 lines of 80 px text meet a dozen seams. Without the parts' overlap one of the lines
    a seam crossed was lost (the part above saw only its top, the part below only its bottom)."""
    rows = [f"Comment {i}: the parcel came on time" for i in range(50)]
    page, truth = render_lines(rows, size=80, width=1000)
    runner = DetectorRunner(params=DetectionParams(pass_side=1024))
    scale = detection.target_scale(page.width, page.height, runner.params)
    parts = detection.windows(round(page.height * scale), runner.params)
    assert len(parts) >= 7
    lines = runner.detect([np.asarray(page)])[0]
    found = [[ln for ln in lines if ln.box[1] <= (t.box[1] + t.box[3]) / 2 <= ln.box[3] and ln.box[0] < t.box[2]]
             for t in truth]
    assert [len(f) for f in found] == [1] * len(truth)
    seams = [hi / scale for _, _, _, hi in parts[:-1]]
    crossed = [i for i, t in enumerate(truth) if any(t.box[1] <= y <= t.box[3] for y in seams)]
    assert crossed  # else this proves nothing
    for i in crossed:  # found whole: its top and bottom where the text is
        (ln,), t = found[i], truth[i]
        assert abs(ln.box[1] - t.box[1]) + abs(ln.box[3] - t.box[3]) <= 16, (ln.box, t.box)
