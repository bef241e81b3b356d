"""The training data paths: distortions, synthetic scenes, case-insensitive CTC for SROIE, budgets and packing."""

import io
import json
import random
import re
import subprocess
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from serve_app.ocr.alphabet import encode
from training import datasets, pack, train_crnn, train_ctpn
from training.augment import arc, augment_real_crop, curve, jitter_margins, perspective, perspective_coeffs
from training.corpus import recased_line
from training.ctpn_targets import make_targets
from training.loop import Budget
from training.scenes import render_scene
from training.train_crnn import Sampler, case_folded_log_probs, make_batch
from training.train_ctpn import PageSampler


def _apply(coeffs: tuple[float, ...], x: float, y: float) -> tuple[float, float]:
    a, b, c, d, e, f, g, h = coeffs
    den = g * x + h * y + 1
    return (a * x + b * y + c) / den, (d * x + e * y + f) / den


def test_perspective_coefficients_map_output_corners_to_input_corners():
    src = np.array([[0, 0], [100, 0], [100, 30], [0, 30]], dtype=float)
    dst = np.array([[3, 2], [97, 0], [104, 33], [1, 29]], dtype=float)
    coeffs = perspective_coeffs(src, dst)
    for (x, y), (u, v) in zip(dst, src):
        assert np.allclose(_apply(coeffs, x, y), (u, v), atol=1e-6)


def test_geometric_distortions_keep_the_ink():
    img = Image.new("L", (120, 30), 255)
    img.paste(0, (10, 10, 110, 20))  # a dark bar standing in for a word
    bent = np.asarray(curve(random.Random(1), img))
    assert bent.shape[1] == 120 and bent.shape[0] >= 30
    assert np.array_equal((bent < 128).sum(axis=0), (np.asarray(img) < 128).sum(axis=0))  # columns only shift
    warped = np.asarray(perspective(random.Random(2), img))
    assert abs(int((warped < 128).sum()) - 1000) < 300
    cut = jitter_margins(random.Random(3), np.asarray(img))
    assert cut.shape[0] >= 8 and cut.shape[1] >= 8
    out = augment_real_crop(random.Random(4), np.asarray(img))
    assert out.dtype == np.uint8 and out.ndim == 2


def test_arc_bends_a_word_along_a_circle_and_keeps_its_ink():
    bar = np.full((30, 160), 255, np.uint8)
    bar[10:20, 10:150] = 0  # a dark bar standing in for a word
    directions = set()
    for seed in range(6):
        bent = arc(random.Random(seed), bar)
        assert np.array_equal(bent, arc(random.Random(seed), bar))  # a seed reproduces it
        ink = bent < 128
        assert abs(int(ink.sum()) - 1400) < 0.25 * 1400  # the middle line keeps its length
        rows = np.arange(bent.shape[0])[:, None]
        centre = (ink * rows).sum(0) / np.maximum(ink.sum(0), 1)
        cols = np.flatnonzero(ink.sum(0))
        mid, ends = centre[cols[len(cols) // 2]], (centre[cols[2]] + centre[cols[-3]]) / 2
        assert abs(mid - ends) > 4  # bent, not just shifted
        directions.add(mid < ends)
    assert directions == {True, False}  # over and under the centre


def test_scenes_place_real_crops_as_labelled_lines():
    rng = random.Random(5)
    crops = [np.full((20, 60, 3), (200, 30, 30), np.uint8), np.full((30, 50, 3), (20, 200, 20), np.uint8)]
    img, boxes = render_scene(rng, 256, crops)
    assert img.shape == (256, 256, 3) and len(boxes) >= 1
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= 256).all() and (boxes[:, 1] < boxes[:, 3]).all()
    again, boxes2 = render_scene(random.Random(5), 256, crops)
    assert np.array_equal(img, again) and np.array_equal(boxes, boxes2)
    samples = PageSampler(random.Random(6), 128, 0.0, [], scene_fraction=1.0, word_crops=crops).samples()
    image, labels, vertical, side, side_mask = next(samples)
    assert image.shape == (128, 128, 3) and labels.shape[:2] == (8, 8) and vertical.shape[-1] == 2
    assert side.shape == side_mask.shape == labels.shape


def test_case_folded_ctc_ignores_case_only_for_flagged_samples():
    t, c = 12, 96
    logits = torch.full((t, 2, c), -8.0)
    a, b = encode("ab")  # the model confidently reads lower case "ab"
    for i, k in enumerate([a, 0, b] + [0] * (t - 3)):
        logits[i, :, k] = 8.0
    logp = logits.log_softmax(-1)
    targets = torch.tensor(encode("AB") * 2)
    ctc = torch.nn.CTCLoss(blank=0, reduction="none")
    args = (targets, torch.tensor([t, t]), torch.tensor([2, 2]))
    plain = ctc(logp, *args)
    folded_logp = case_folded_log_probs(logp, torch.tensor([True, False]))
    # every column must stay a distribution: PyTorch's CTC gradient assumes it (else it teaches capitals)
    assert torch.allclose(folded_logp.exp().sum(-1), torch.ones(t, 2), atol=1e-5)
    folded = ctc(folded_logp, *args)
    assert folded[0] < 1.0 < plain[0]  # upper-case label, lower-case reading: fine once folded
    assert torch.isclose(folded[1], plain[1])  # an unflagged sample keeps its case-sensitive loss


def test_sampler_flags_only_receipt_lines_as_case_free():
    words = [(np.full((32, 80), 200, np.uint8), "Word")]
    lines = [(np.full((32, 200), 200, np.uint8), "RECEIPT LINE")]
    sampler = Sampler(random.Random(0), 0.0, words, lines, lines_share=0.5)
    drawn = [sampler() for _ in range(60)]
    assert {(text, free) for _, text, free in drawn} == {("Word", False), ("RECEIPT LINE", True)}
    *_, case_free = make_batch(drawn[:8])
    assert case_free.dtype == torch.bool and len(case_free) == 8


def test_budget_follows_time_when_time_runs_out_first():
    b = Budget(steps=1000, time_limit=0.05)
    assert b.virtual_step(10) == 10 and not b.done(10)
    time.sleep(0.06)
    assert b.done(10) and b.virtual_step(10) == 1000


def test_pack_keeps_the_manifest_format_with_scaled_boxes(tmp_path, monkeypatch):
    src = tmp_path / "src" / "train" / "pages"
    (src / "images").mkdir(parents=True)
    Image.new("RGB", (400, 200), "white").save(src / "images" / "p.png")
    word = {"text": "HI", "box": [10, 20, 110, 100], "poly": [[10, 20], [110, 20], [110, 100], [10, 100]]}
    (src / "manifest.jsonl").write_text(
        '{"image": "images/p.png", "width": 400, "height": 200, "words": [' + str(word).replace("'", '"') + "]}\n")
    monkeypatch.setenv("OCR_SHARED_DIR", str(tmp_path / "src"))
    pack.pack_pages("pages", tmp_path / "out", target_height=40, gray=True, quality=60, limit=None)
    monkeypatch.setenv("OCR_SHARED_DIR", str(tmp_path / "out"))
    (item,) = datasets.read_manifest("train/pages")
    assert item["words"][0]["box"] == [5, 10, 55, 50] and (item["width"], item["height"]) == (200, 100)
    assert datasets.load_rgb(item["path"]).shape == (100, 200, 3)


def test_a_packed_font_is_a_fraction_of_the_size_and_renders_our_alphabet_as_the_installed_one(tmp_path,
                                                                                                  monkeypatch):
    """`pack.subset_font` keeps our alphabet's glyphs and what lays them out: the same advances and mask sizes, and
    pixels within 20 levels of 255 (hinting rounds a little differently in a few fonts); and a packed archive is
    found by `latin_fonts` as this machine's fonts are, in the same order, so that a seed picks the same fonts
    there."""
    from PIL import ImageFont

    from serve_app.ocr.alphabet import CHARSET
    from training import fonts

    installed = fonts.latin_fonts()
    chosen = [f for f in installed if Path(f).name in {"DejaVuSans.ttf", "DejaVuSansCondensed-Oblique.ttf",
                                                       "LinLibertine_R.otf", "FreeSerifItalic.ttf"}]
    assert len(chosen) >= 2, chosen
    text = CHARSET[1:48] + " " + CHARSET[48:]
    for font in chosen:
        data = pack.subset_font(font)
        assert len(data) < Path(font).stat().st_size / 4, font
        for size in (13, 24, 40):
            whole, cut = ImageFont.truetype(font, size), ImageFont.truetype(io.BytesIO(data), size)
            assert [cut.getlength(c) for c in text] == [whole.getlength(c) for c in text], (font, size)
            a, b = whole.getmask(text), cut.getmask(text)
            assert a.size == b.size, (font, size)
            diff = np.abs(np.asarray(a, dtype=int) - np.asarray(b, dtype=int))
            assert diff.max() <= 20 and diff.mean() < 0.5, (font, size, diff.max(), diff.mean())

    monkeypatch.setattr(pack, "latin_fonts", lambda: tuple(chosen))
    pack.pack_fonts(tmp_path / "fonts.tar.xz")
    with tarfile.open(tmp_path / "fonts.tar.xz") as tar:
        tar.extractall(tmp_path, filter="data")  # as gpu_train.sh unpacks it there
    monkeypatch.setenv("OCR_FONT_DIRS", str(tmp_path / "fonts"))
    fonts.latin_fonts.cache_clear()
    try:
        assert [Path(f).relative_to(tmp_path / "fonts") for f in fonts.latin_fonts()] == [
            Path(f).relative_to("/usr/share/fonts") for f in chosen]  # in their folders: names may repeat
    finally:
        fonts.latin_fonts.cache_clear()


def test_the_pack_counts_the_repository_it_travels_with_wherever_it_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not a git checkout
    shipped = sum(p.stat().st_size for p in (datasets.REPO / "serve_app" / "assets").glob("*.pt")) / 2**20
    assert shipped < pack.repository_mib() < pack.DEVICE_CARRY_MIB


def test_packed_scene_lines_are_read_instead_of_rebuilt(tmp_path, monkeypatch):
    from training import scene_lines

    rng = np.random.default_rng(0)
    items = [(rng.integers(0, 256, (32, 40 + 8 * k), dtype=np.uint8), f"line {k}") for k in range(3)]
    pack.pack_scene_lines(tmp_path, scene_lines.cache_name(busy=0.6), items, quality=90)
    monkeypatch.setenv("OCR_SHARED_DIR", str(tmp_path))
    monkeypatch.setattr(scene_lines, "build", lambda *a, **k: pytest.fail("packed lines must not be rebuilt"))
    got = scene_lines.cached(busy=0.6)
    assert [t for _, t in got] == ["line 0", "line 1", "line 2"]
    assert [g.shape for g, _ in got] == [g.shape for g, _ in items] and got[0][0].dtype == np.uint8
    assert np.abs(got[2][0].astype(int) - items[2][0]).mean() < 40  # lossy, but the same picture


def test_receipt_words_are_rendered_in_every_casing():
    rng = random.Random(1)
    vocab = ["TOTAL", "QTY", "CASH"]
    lines = [recased_line(rng, vocab) for _ in range(200)]
    words = {w for ln in lines for w in ln.split()}
    assert {w.upper() for w in words} == set(vocab)
    assert {"total", "Total", "TOTAL"} <= words
    sampler = Sampler(random.Random(2), 1.0, [], vocab=vocab, vocab_share=1.0)
    gray, text, case_free = sampler()
    assert text.upper().split()[0] in vocab and not case_free and gray.ndim == 2


def test_gpu_training_script_parses_and_names_real_options():
    script = Path(__file__).resolve().parents[2] / "scripts" / "gpu_train.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    text = script.read_text()
    crnn = {a.dest for a in train_crnn.get_args_parser()._actions}
    ctpn = {a.dest for a in train_ctpn.get_args_parser()._actions}
    for opt in re.findall(r"--([a-z][a-z0-9-]+)", text):
        assert opt.replace("-", "_") in crnn | ctpn, f"gpu_train.sh passes unknown option --{opt}"


def test_ic15_layouts_put_train_crops_back_where_they_were_cut():
    from training.tune_detection import FRAME_H, FRAME_W, layout_frames, parse_grid

    frames = layout_frames(3, seed=0)
    assert len(frames) == 3
    for image, words, centres in frames:
        assert image.shape == (FRAME_H, FRAME_W, 3) and words and all(isinstance(w, str) for w in words)
        assert centres.shape == (len(words), 2) and (centres >= 0).all()
    busy = layout_frames(3, seed=0, busy=True)
    for (plain, words, centres), (image, busy_words, busy_centres) in zip(frames, busy):
        # the same words in the same places; only what lies around them (and the light) changed
        assert busy_words == words and np.allclose(busy_centres, centres) and not np.array_equal(image, plain)
    assert parse_grid(["short_side=720,960", "score_threshold=0.5"]) == {"short_side": [720, 960],
                                                                         "score_threshold": [0.5]}
    with pytest.raises(SystemExit, match="unknown detection setting"):
        parse_grid(["shortside=720"])


def test_born_digital_check_words_are_a_fixed_image_level_split():
    names = [f"images/img_{i}.png" for i in range(400)]
    check = {n for n in names if datasets.held_out(n)}
    assert 40 < len(check) < 120  # about one in five
    assert check == {n for n in reversed(names) if datasets.held_out("other/dir/" + Path(n).name)}
    fit, held = datasets.borndigital_words("fit"), datasets.borndigital_words("check")
    assert len(fit) > 2 * len(held) > 0
    # the parts come from disjoint images, and a logo repeated across images is not checked on
    fit_pixels = {g.tobytes() for g, _ in fit}
    assert not any(g.tobytes() in fit_pixels for g, _ in held if g.size)


def test_ic15_frame_layouts_split_by_frame_and_train_the_detector_on_quadrilaterals():
    fit, check = datasets.ic15_layouts("fit"), datasets.ic15_layouts("check")
    assert len(fit) > 3 * len(check) > 0
    records = datasets.read_manifest("train/words")
    frame_of = lambda layout: {records[i]["source_image"] for i, _ in layout}  # noqa: E731
    assert not set().union(*map(frame_of, fit)) & set().union(*map(frame_of, check))
    assert all(len(frame_of(layout)) == 1 for layout in fit[:50])
    crops = [datasets.load_rgb(records[i]["path"]) for i, _ in fit[0]]
    sampler = train_ctpn.PageSampler(random.Random(3), 320, 0.0, [], 0.0, crops_by_index(fit[0], crops),
                                     layout_fraction=1.0, layouts=[fit[0]])
    img, quads = sampler()
    assert img.shape == (320, 320, 3) and quads.ndim == 3 and quads.shape[1:] == (4, 2) and len(quads) >= 1
    assert (quads[:, :, 1] >= 0).all() and (quads[:, :, 1] <= 320).all()  # whole heights inside the crop
    assert (make_targets(quads, 20, 20).labels == 1).sum() >= len(quads)  # the targets mark the words' columns


def crops_by_index(layout: list, crops: list[np.ndarray]) -> list[np.ndarray | None]:
    """A word-crop list indexed like the manifest, holding only one layout's crops."""
    out: list[np.ndarray | None] = [None] * (max(i for i, _ in layout) + 1)
    for (i, _), crop in zip(layout, crops):
        out[i] = crop
    return out


def test_a_layout_crop_pastes_words_into_their_quadrilaterals():
    from training.scenes import render_layout

    crop = np.zeros((20, 60, 3), np.uint8)  # a black word crop
    quad = np.array([[100, 120], [160, 100], [166, 118], [106, 138]], np.float32)  # tilted by about 18 degrees
    img, quads = render_layout(random.Random(0), 320, [(crop, quad)])
    assert quads.shape == (1, 4, 2)
    q = quads[0]
    inside = np.asarray(Image.fromarray(img).convert("L"))[int(q[:, 1].mean()) - 2: int(q[:, 1].mean()) + 3,
                                                           int(q[:, 0].mean()) - 2: int(q[:, 0].mean()) + 3]
    assert inside.max() < 40  # the centre of the quadrilateral is the pasted black word


def _line(x0: float, y0: float, x1: float, y1: float):
    from serve_app.ocr.processing.textlines import TextLine

    return TextLine((x0, y0, x1, y1), ((x0, y0), (x1, y0), (x1, y1), (x0, y1)), 0.9, 4)


def test_scene_line_labels_hold_the_words_inside_in_order_or_nothing():
    from training.scene_lines import line_label

    quad = lambda x0, x1: np.array([[x0, 100], [x1, 100], [x1, 130], [x0, 130]], np.float32)  # noqa: E731
    texts, quads = ["world", "hello", "far"], np.stack([quad(200, 280), quad(100, 180), quad(600, 660)])
    assert line_label(_line(95, 95, 290, 135), texts, quads) == "hello world"  # ordered along the line
    assert line_label(_line(95, 95, 240, 135), texts, quads) is None  # ends inside "world"
    assert line_label(_line(95, 95, 185, 135), texts, quads) == "hello"
    assert line_label(_line(95, 95, 185, 135), ["world", "###", "far"], quads) is None  # a don't-care word
    assert line_label(_line(300, 95, 500, 135), texts, quads) is None  # holds no word
    # a line that misses the words' centres but runs over their lower halves
    assert line_label(_line(95, 120, 290, 160), texts, quads) is None


@pytest.mark.parametrize("busy", [0.0, 1.0])
def test_scene_lines_are_cut_by_the_shipped_detector_as_the_service_cuts_them(busy: float):
    from training import scene_lines

    items = scene_lines.build(part="check", limit=3, busy=busy)
    records = datasets.read_manifest("train/words")
    words = {records[i]["text"] for layout in datasets.ic15_layouts("check")[:3] for i, _ in layout}
    assert len(items) >= 3
    for gray, label in items:
        assert gray.dtype == np.uint8 and gray.shape[0] == 32 and gray.shape[1] >= 16
        assert set(label.split()) <= words


def test_sampler_draws_scene_lines_at_their_share_with_case_kept():
    words = [(np.full((32, 80), 200, np.uint8), "Word")]
    scene = [(np.full((32, 160), 90, np.uint8), "Two Words")]
    sampler = Sampler(random.Random(0), 0.0, words, scene=scene, scene_share=0.5)
    drawn = [sampler() for _ in range(400)]
    share = sum(text == "Two Words" for _, text, _ in drawn) / len(drawn)
    assert 0.4 < share < 0.6 and not any(free for *_, free in drawn)


def test_point_in_polygon_and_word_centres_for_the_found_rate():
    from serve_app.ocr.processing.geometry import inside
    from training.evaluate import word_centre

    tilted = [(0, 10), (100, 0), (100, 20), (0, 30)]
    assert inside(tilted, 50, 15) and not inside(tilted, 50, 28) and not inside(tilted, 101, 10)
    assert word_centre({"box": [0, 0, 10, 4]}) == (5, 2)
    assert word_centre({"box": [0, 0, 10, 4], "poly": tilted}) == (50, 15)  # the quadrilateral wins


def test_clutter_and_camera_light_are_seeded_and_change_the_frame():
    from training.clutter import clutter, photo_light

    def busy(seed: int) -> np.ndarray:
        rng = random.Random(seed)
        return np.asarray(photo_light(rng, clutter(rng, Image.new("RGB", (320, 180), (128, 128, 128)))))

    a, b = busy(7), busy(7)
    assert a.shape == (180, 320, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, busy(8))
    assert a.std() > 10  # structure and uneven light over what was a flat grey


def test_busy_layouts_put_the_words_over_the_clutter():
    from training.scenes import render_layout

    crop = np.full((40, 120, 3), 250, np.uint8)  # a flat crop: any structure inside it would be clutter on top
    quad = np.array([[100, 100], [220, 100], [220, 140], [100, 140]], np.float32)
    for seed in range(3):
        img, quads = render_layout(random.Random(seed), 320, [(crop, quad)], busy=True)
        x0, y0 = quads[0].min(0).astype(int) + 3
        x1, y1 = quads[0].max(0).astype(int) - 3
        gray = np.asarray(Image.fromarray(img).convert("L"), dtype=np.float32)
        assert gray[y0:y1, x0:x1].std() < 8 < gray.std()


def test_detection_check_counts_words_inside_detected_lines():
    from serve_app.ocr.predictor import DetectorRunner, OCRPredictor, RecognizerRunner
    from training.synth import render_lines
    from training.tune_detection import score

    img, lines = render_lines(["OPEN DAILY 9 TO 5"], size=36)
    image = np.asarray(img)
    x0, y0, x1, y1 = lines[0].box
    centres = np.array([[(x0 + x1) / 2, (y0 + y1) / 2], [5.0, image.shape[0] - 5.0]])  # the line, an empty corner
    r = score(OCRPredictor(DetectorRunner(), RecognizerRunner()), [(image, ["OPEN", "DAILY"], centres)])
    assert r["found"] == 0.5 and r["recall"] == 1.0


def test_faded_words_keep_their_mean_and_lose_contrast():
    from training.scenes import faded

    a = np.zeros((20, 60, 3), np.uint8)
    a[:, 30:] = 200  # half dark, half light
    for seed in range(5):
        out = np.asarray(faded(random.Random(seed), Image.fromarray(a)), dtype=np.float32)
        assert abs(out.mean() - a.mean()) < 1.5
        assert 0.25 * a.std() < out.std() < 0.85 * a.std()


def test_low_resolution_keeps_the_size_and_softens_edges():
    from training.scenes import low_resolution

    a = np.zeros((64, 64), np.uint8)
    a[:, ::2] = 255  # the finest stripes there are
    out = np.asarray(low_resolution(random.Random(0), Image.fromarray(a)), dtype=np.float32)
    assert out.shape == a.shape and out.std() < 0.6 * a.std()


def test_hard_layouts_are_smaller_and_fainter():
    from training.scenes import render_layout

    crop = np.zeros((20, 60, 3), np.uint8)
    crop[5:15, 10:50] = 255  # a white bar on black: the word's contrast
    quad = np.array([[600, 340], [680, 340], [680, 370], [600, 370]], np.float32)
    heights: dict[bool, list[float]] = {False: [], True: []}
    contrast: dict[bool, list[float]] = {False: [], True: []}
    for hard in (False, True):
        for seed in range(30):
            img, quads = render_layout(random.Random(seed), 320, [(crop, quad)], hard=hard)
            gray = np.asarray(Image.fromarray(img).convert("L"), dtype=np.float32)
            for q in quads:
                heights[hard].append(float(np.ptp(q[:, 1])))
                (x0, y0), (x1, y1) = np.clip(q.min(0), 0, 320).astype(int), np.clip(q.max(0), 0, 320).astype(int)
                if x1 - x0 >= 4:  # words cut at the crop's side keep only part of themselves
                    contrast[hard].append(float(gray[y0:y1, x0:x1].std()))
    assert max(heights[True]) < 30 * 4 / 3 * 1.1 + 1 < max(heights[False])
    assert np.median(heights[True]) < np.median(heights[False])
    assert np.mean(contrast[True]) < 0.85 * np.mean(contrast[False])


def test_word_crops_hold_out_the_crops_of_the_detectors_check_frames(tmp_path, monkeypatch):
    """`--words-part fit` must leave out exactly the IC15 crops whose frames `ic15_layouts` holds out."""
    frames = [f"img_{k}.jpg" for k in range(1, 40)]
    held = [f for f in frames if datasets.held_out(f)]
    assert held and len(held) < len(frames)  # the hash holds out some of these frames, not all
    folder = tmp_path / "train" / "words"
    (folder / "images").mkdir(parents=True)
    records = []
    for k, frame in enumerate(frames):
        Image.new("RGB", (24, 8), (k, k, k)).save(folder / "images" / f"ic15_{k}.png")
        records.append({"image": f"images/ic15_{k}.png", "text": f"w{k}", "source_image": frame,
                        "source_poly": [[0, 0], [24, 0], [24, 8], [0, 8]]})
    Image.new("RGB", (24, 8)).save(folder / "images" / "iiit5k.png")
    records.append({"image": "images/iiit5k.png", "text": "iiit"})  # no frame: always trained on
    (folder / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    monkeypatch.setenv("OCR_SHARED_DIR", str(tmp_path))

    texts = {part: [t for _, t in datasets.word_crops(part=part)] for part in ("all", "fit", "check")}
    assert sorted(texts["fit"] + texts["check"]) == sorted(texts["all"]) and len(texts["all"]) == len(records)
    assert "iiit" in texts["fit"]
    assert set(texts["check"]) == {f"w{frames.index(f)}" for f in held}
    layout_frames = {records[i]["source_image"] for layout in datasets.ic15_layouts("check") for i, _ in layout}
    assert layout_frames == set(held)
    with pytest.raises(ValueError, match="unknown part"):
        datasets.word_crops(part="dev")
