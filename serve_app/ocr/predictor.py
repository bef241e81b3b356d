"""Image(s) in, lines and words out: the whole OCR pipeline without Ray, for notebooks, scripts and evaluation.

The Serve deployments call the same pieces (`DetectorRunner`, `RecognizerRunner`, `assemble`) across processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np
import torch

from serve_app.ocr.models import quantize
from serve_app.ocr.models.crnn import CRNN
from serve_app.ocr.models.ctpn import CTPN
from serve_app.ocr.models.weights import DEFAULT_DETECTOR, DEFAULT_RECOGNIZER, model_from_blob, read_weights
from serve_app.ocr.pipeline import (
    MIN_TILT,
    MIN_UNKNOWN_WORD_CONFIDENCE,
    MIN_WORD_CONFIDENCE,
    STEEP_TILT,
    TALL_WORD,
    Found,
    LineResult,
    assemble,
    find_turn,
    make_crops,
    may_be_one_word,
    one_word_page,
    turned,
    unturned,
)
from serve_app.ocr.processing import consensus, detection, lexicon, recognition
from serve_app.ocr.processing.recognition import COLUMN_STRIDE, Crop, Decoded
from serve_app.ocr.processing.textlines import TextLine
from serve_app.paths import DEFAULT_LEXICON

T = TypeVar("T")
M = TypeVar("M", CTPN, CRNN)

#: What ``precision`` may be set to (the config's ``Precision`` and every command line's ``--precision``).
PRECISIONS = ("auto", "fp32", "bf16", "int8")

#: The CTPN's BiLSTM batch is padded to a multiple of this where it runs in bf16 (`ctpn._padded_rows`): on a 2-core
#: Xeon with AMX the detection of a 720p frame took 0.170 -> 0.157 s, a receipt 0.157 -> 0.129 s.
BF16_ROW_MULTIPLE = 8


#: Where the models may run (`--device`); a replica given GPUs (``num_gpus``) runs on ``cuda`` (`config.device`).
DEVICES = ("cpu", "cuda")


def native_bf16() -> bool:
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def warm_up_page(width: int, height: int, line_height: int = 24) -> np.ndarray:
    """A made-up page, light with rows of dark word-like bars: what a replica reads before its first request.

    Not text, on purpose: it must cost what a page costs (every layer, the BiLSTM, the line building), not read well.
    """
    rng = np.random.default_rng(width * 100_003 + height)
    page = np.full((height, width, 3), 236, np.uint8)
    for y in range(line_height, height - 2 * line_height, 3 * line_height):
        x = line_height
        while x < width - 4 * line_height:
            w = int(rng.integers(2, 7)) * line_height // 2
            page[y:y + line_height, x:x + w] = 30
            x += w + line_height // 2
    return page


def resolve_device(device: str) -> torch.device:
    """``device`` checked: a replica given a GPU whose torch cannot see one should fail at start, not run on CPU.

    A Ray replica with ``num_gpus`` sees only its own GPUs (``CUDA_VISIBLE_DEVICES``), so ``cuda`` is its first.
    """
    if device not in DEVICES:
        raise ValueError(f"device {device!r}: choose one of {', '.join(DEVICES)}")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("asked to run on a GPU (num_gpus), but torch sees no CUDA device here: a CPU-only torch "
                           "build, or a node without a GPU driver")
    return torch.device(device)


def resolve_precision(precision: str, calibrated: bool, device: str = "cpu") -> str:
    """As asked, or (``auto``) int8 on x86-64 with calibrated weights, else bf16 where native, else fp32.

    Int8 convolutions (`quantize`, needs the weights' calibration) beat bf16 on every x86-64 CPU measured: on a
    2-core AMD EPYC with AVX-512 BF16 and VNNI (Zen 4) they took a quarter off every set (scene frame 0.225 ->
    0.167 s, receipt 0.662 -> 0.526 s, same F1), on a 2-core Xeon with AMX tiles a third (CTPN pass 239 -> 151 ms,
    361 receipt lines 2.0-2.7 -> 1.3-1.8 s, 2 threads), and on AVX2-only CPUs, where bf16 is emulated, they are
    2-3x faster than fp32. Int8 on Arm is untested, so there it must be asked for; emulated bf16 is never chosen.
    On a GPU ``auto`` is bf16 where the GPU has it (Ampere and later), else fp32; int8 is for CPUs only (its
    kernels are oneDNN's).
    """
    if device == "cuda":
        if precision == "int8":
            raise ValueError("int8 runs on CPUs only: on a GPU ask for precision auto, bf16 or fp32")
        if precision == "auto":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        return precision
    if precision == "auto":
        if calibrated and quantize.auto_ok():
            return "int8"
        return "bf16" if native_bf16() else "fp32"
    if precision == "int8" and not calibrated:
        raise ValueError("these weights carry no int8 calibration: run python -m training.calibrate on them")
    return precision


def _load(weights: str | Path, precision: str, arch: type[M], device: torch.device) -> tuple[M, dict, str]:
    """Model, metadata and resolved precision; int8 swaps in quantized convolutions (and a bf16 LSTM where native)."""
    blob = read_weights(weights)
    model = model_from_blob(blob)
    if not isinstance(model, arch):
        raise ValueError(f"{weights} holds a {type(model).__name__}, not the {arch.__name__} this runner needs")
    model = model.to(memory_format=torch.channels_last)  # oneDNN's convolutions: 20 % off a receipt
    resolved = resolve_precision(precision, quantize.has_calibration(blob), device.type)
    if device.type != "cpu":
        return model.to(device), blob.get("meta", {}), resolved
    if resolved == "int8":
        quantize.quantize(model, blob["int8"])
        if native_bf16():
            quantize.bf16_recurrent(model)
    if isinstance(model, CTPN) and (resolved == "bf16" or (resolved == "int8" and native_bf16())):
        model.row_multiple = BF16_ROW_MULTIPLE
    return model, blob.get("meta", {}), resolved


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run`, also where an event loop is already running (a notebook, an async caller): on a thread then."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _nchw(arrays: list[np.ndarray], device: torch.device) -> torch.Tensor:
    """Prepared HWC frames of one size as an NCHW batch in channels_last memory (no copy for a single frame on CPU)."""
    return torch.from_numpy(arrays[0][None] if len(arrays) == 1 else np.stack(arrays)).permute(0, 3, 1, 2).to(device)


def _numpy(out: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {k: v.float().cpu().numpy() for k, v in out.items()}


def _autocast(bf16: bool, device: torch.device) -> contextlib.AbstractContextManager:
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


class DetectorRunner:
    """CTPN weights plus detection parameters: RGB images to text lines in original pixels."""

    def __init__(self, weights: str | Path = DEFAULT_DETECTOR, params: detection.DetectionParams | None = None,
                 precision: str = "auto", device: str = "cpu") -> None:
        self.device = resolve_device(device)
        self.model, self.meta, self.precision = _load(weights, precision, CTPN, self.device)
        self.params = params or detection.DetectionParams()
        self.bf16 = self.precision == "bf16"
        self.blank = self._blank_features()

    def detect(self, images: list[np.ndarray | detection.Reduced]) -> list[list[TextLine]]:
        """Each image in a forward pass of its own, so that its lines never depend on what else came in its batch.

        Frames of one size shared a pass, and the int8 and bf16 kernels round by the batch's size (and the bf16
        LSTM's rows are padded by it): in 1-3 of 40 scenes_dev frames sent 4 at a time a box moved or a line
        came or went, against the same frames sent alone. A CPU gains little from the shared pass
        (docs/accuracy.md).
        """
        return [self._lines(im) for im in images]

    def warm_up(self, sizes: Sequence[tuple[int, int]]) -> float:
        """Detect a made-up page (`warm_up_page`) of each ``(width, height)``; the seconds it took.

        A process's first detection pays once for its thread pool, oneDNN's kernels and the allocator's first
        pages: through `serve run`, a fresh detector replica's first 720p frame took 0.34-0.71 s to detect, the
        next 0.20-0.32 s (docs/accuracy.md). Done before a replica takes requests, no user waits for it.
        """
        t0 = time.perf_counter()
        for width, height in sizes:
            self.detect([warm_up_page(width, height)])
        return time.perf_counter() - t0

    def propose(self, parts: list[detection.Part]) -> list[detection.Proposals]:
        """Each part's proposals (`detection.split`), in a forward pass of its own as in `detect`."""
        return [self._proposals(part) for part in parts]

    def _lines(self, image: np.ndarray | detection.Reduced) -> list[TextLine]:
        """One frame's lines: its proposals from every view of every part (`detection.windows`), joined at once.

        The same parts, read as `propose` reads them, whether one replica reads them all or each its own.
        """
        strip = detection.split(image, self.params)
        return detection.lines_of(self.propose(strip.parts), strip, self.params)

    def _proposals(self, part: detection.Part) -> detection.Proposals:
        array = detection.part_input(part)
        views = self._two_views([array]) if self.params.views > 1 else [(self._forward([array]), 0)]
        return detection.part_proposals(part, [detection.view_proposals(out["scores"][0], out["vertical"][0],
                                                                       out["side"][0], shift)
                                               for out, shift in views], self.params)

    def _forward(self, arrays: list[np.ndarray]) -> dict[str, np.ndarray]:
        with torch.inference_mode(), _autocast(self.bf16, self.device):
            return _numpy(self.model(_nchw(arrays, self.device)))

    def _two_views(self, arrays: list[np.ndarray]) -> list[tuple[dict[str, np.ndarray], int]]:
        """The frames as they are and moved half an anchor row down and right (`detection.shifted`), with that move.

        Both views share one pass of the network's stem (`CTPN.stem`, to stride 8). The move is 8 px, one cell
        there, so the moved view's stem features are the frames' own moved by a cell, with the features of a blank
        (mean-colour) region in the cells the move uncovers. The frames' own view is exact; the moved view differs
        from a pass of its own only near the frame's edges and in its squeeze-excitation means. On a 2-core AVX2
        EPYC this took the detector from 0.54 to 0.45 s per 720p frame; the TRAIN checks moved by -0.9 to +0.3
        F1 points (see docs/accuracy.md).
        """
        with torch.inference_mode(), _autocast(self.bf16, self.device):
            own = self.model.stem(_nchw(arrays, self.device))
            moved = _moved_cells(own, self.blank, detection.VIEW_SHIFT // self.model.stem_stride)
            return [(_numpy(self.model.trunk(own)), 0), (_numpy(self.model.trunk(moved)), detection.VIEW_SHIFT)]

    def _blank_features(self) -> torch.Tensor:
        """The stem's features amid a blank (mean-colour) square, ``(1, C, 1, 1)`` in floats.

        Approximate by nature: the squeeze-excitation means inside the stem depend on the whole frame.
        """
        if detection.VIEW_SHIFT % self.model.stem_stride:
            raise ValueError(f"a view shift of {detection.VIEW_SHIFT} px is not whole cells of the stem's stride")
        with torch.inference_mode(), _autocast(self.bf16, self.device):
            f = self.model.stem(torch.zeros(1, 3, 128, 128, device=self.device).contiguous(
                memory_format=torch.channels_last))
        f = f.dequantize() if f.is_quantized else f
        middle = 64 // self.model.stem_stride
        return f[:, :, middle:middle + 1, middle:middle + 1].clone()


def _moved_cells(features: torch.Tensor, blank: torch.Tensor, cells: int) -> torch.Tensor:
    """``features`` moved ``cells`` down and right inside a border of ``blank`` cells as wide on every side.

    That is the size `detection.shifted` gives a frame: ``cells`` of the stem per half of the padding it adds.
    """
    f = features.dequantize() if features.is_quantized else features
    n, c, h, w = f.shape
    out = blank.to(f.dtype).expand(n, c, h + 2 * cells, w + 2 * cells).contiguous(memory_format=torch.channels_last)
    out[:, :, cells:cells + h, cells:cells + w] = f
    if features.is_quantized:  # the same scale as the stem's own output: every value stays exact
        out = torch.quantize_per_tensor(out, features.q_scale(), features.q_zero_point(), features.dtype)
    return out


class RecognizerRunner:
    """CRNN weights: normalised line crops to greedy CTC readings, batched by width, corrected by a lexicon."""

    def __init__(self, weights: str | Path = DEFAULT_RECOGNIZER, max_batch: int = 32, precision: str = "auto",
                 lexicon_path: str | Path | None = DEFAULT_LEXICON,
                 lexicon_margin: float = lexicon.DEFAULT_MARGIN,
                 word_scales: tuple[float, ...] = consensus.DEFAULT_WORD_SCALES,
                 lexicon_split: bool = True, device: str = "cpu") -> None:
        self.device = resolve_device(device)
        self.model, self.meta, self.precision = _load(weights, precision, CRNN, self.device)
        self.charset = self.model.spec.charset
        self.max_batch = max_batch
        self.bf16 = self.precision == "bf16"
        self.lexicon = lexicon.Lexicon.load(lexicon_path) if lexicon_path else None
        self.lexicon_margin = lexicon_margin
        self.word_scales = tuple(word_scales) or (1.0,)
        self.lexicon_split = lexicon_split

    def column_probs(self, crops: list[np.ndarray]) -> list[np.ndarray]:
        """Each crop's ``(W / 4, classes)`` character probabilities, batched by width."""
        results: list[np.ndarray | None] = [None] * len(crops)
        with torch.inference_mode(), _autocast(self.bf16, self.device):
            for group in recognition.width_buckets([c.shape[1] for c in crops], self.max_batch):
                batch = recognition.pad_crops([crops[i] for i in group])
                logits = self.model(torch.from_numpy(batch).to(self.device))
                probs = recognition.softmax(logits.float().cpu().numpy())
                for b, i in enumerate(group):
                    results[i] = probs[b, : crops[i].shape[1] // COLUMN_STRIDE]
        return [r for r in results if r is not None]

    def read(self, crops: list[np.ndarray]) -> list[Decoded]:
        """Line crops; a run-together word may come back as several (``lexicon_split``)."""
        return [self._decode(p, self.lexicon_split) for p in self.column_probs(crops)]

    def _decode(self, probs: np.ndarray, split: bool = False) -> Decoded:
        d = recognition.ctc_greedy(probs, self.charset)
        if self.lexicon is None:
            return d
        d = lexicon.correct(d, probs, self.lexicon, self.charset, self.lexicon_margin, split=split)
        return lexicon.mark_known(d, self.lexicon)

    def read_words(self, grays: list[np.ndarray], tall: float = TALL_WORD) -> list[Decoded]:
        """Cropped words, each read upright and, if it is ``tall`` times higher than wide, also turned both ways.

        Such crops are usually rotated text; the most confident of the readings wins. Each orientation is read
        at every width scale of ``word_scales`` and the views agree on one spelling (`consensus.read_views`).
        Where a scale would leave the first view's reading too few columns per character, that view is read
        wider instead (`consensus.fitted_scales`). The views of all the words share forward passes.
        """
        n = len(self.word_scales)
        upright, turns_per_word = [], []
        for gray in grays:
            turns = [gray] + ([np.rot90(gray, 1), np.rot90(gray, -1)] if gray.shape[0] > tall * gray.shape[1] else [])
            turns_per_word.append(len(turns))
            upright += [recognition.normalise(np.ascontiguousarray(t)) for t in turns]
        probs = self.column_probs([consensus.resize_width(u, s) for u in upright for s in self.word_scales])
        views: list[list[np.ndarray | None]] = []  # per orientation, its views' probabilities
        wider: list[tuple[int, int, np.ndarray]] = []  # (orientation, view, crop): views to read at a raised scale
        for k, u in enumerate(upright):
            read = dict(zip(self.word_scales, probs[k * n:(k + 1) * n]))
            first = probs[k * n]
            scales = consensus.fitted_scales(self.word_scales, len(first), self.word_scales[0],
                                             len(recognition.ctc_greedy(first, self.charset).text))
            views.append([read.get(s) for s in scales])
            wider += [(k, v, consensus.resize_width(u, s)) for v, s in enumerate(scales) if s not in read]
        if wider:
            for (k, v, _), p in zip(wider, self.column_probs([c for _, _, c in wider])):
                views[k][v] = p
        read_all = cast(list[list[np.ndarray]], views)  # every view is read now, at its own scale or a raised one
        readings = [consensus.read_views(v, self.lexicon, self.charset, self.lexicon_margin) if n > 1
                    else self._decode(v[0]) for v in read_all]
        out, i = [], 0
        for k in turns_per_word:
            out.append(max(readings[i:i + k], key=lambda d: d.confidence))
            i += k
        return out

    def read_word(self, gray: np.ndarray, tall: float = TALL_WORD) -> Decoded:
        """One cropped word (see `read_words`)."""
        return self.read_words([gray], tall)[0]

    def warm_up(self, widths: Sequence[int] = (160, 640)) -> float:
        """Read made-up line crops ``widths`` px wide at 32 px (a batch each) and one word; the seconds it took.

        As `DetectorRunner.warm_up`: a replica's first batch pays once for what the next ones find ready.
        """
        t0 = time.perf_counter()
        for width in widths:
            gray = warm_up_page(width, 64, line_height=16)[8:40, :, 0]
            self.read([recognition.normalise(gray)] * 4)
        if widths:
            self.read_words([warm_up_page(widths[0], 64, line_height=16)[8:40, :, 0]])
        return time.perf_counter() - t0


class OCRPredictor:
    """Detection, crops, recognition and assembly in one process."""

    def __init__(self, detector: DetectorRunner | None = None, recognizer: RecognizerRunner | None = None,
                 min_tilt: float = MIN_TILT, min_word_confidence: float = MIN_WORD_CONFIDENCE,
                 min_unknown_word_confidence: float = MIN_UNKNOWN_WORD_CONFIDENCE) -> None:
        self.detector = detector or DetectorRunner()
        self.recognizer = recognizer or RecognizerRunner()
        self.min_tilt = min_tilt
        self.steep_tilt = STEEP_TILT  # from this slope on, lines are cut with less margin (`make_crops`)
        self.min_word_confidence = min_word_confidence
        self.min_unknown_word_confidence = min_unknown_word_confidence

    def __call__(self, image: np.ndarray) -> list[LineResult]:
        return self.detect_and_read(image)[1]

    def read(self, image: np.ndarray, rotate: int | str = 0) -> tuple[int, list[LineResult]]:
        """The answer for ``image`` turned as the ingress's ``rotate`` says (degrees clockwise, or "auto").

        Returns the turn it was read at and the results in the image's own pixels.
        """
        if rotate == "auto":
            async def find(degrees: int) -> Found:
                pixels = turned(image, degrees)
                lines = self.detector.detect([pixels])[0]
                return lines, make_crops(pixels, lines, min_tilt=self.min_tilt, steep_tilt=self.steep_tilt)

            async def read(crops: list[Crop]) -> list[Decoded]:
                return self.recognizer.read([c.pixels for c in crops])

            degrees, results = _run(find_turn(find, read, self._assemble))
        else:
            degrees = int(rotate)
            results = self(turned(image, degrees))
        if not results and degrees == 0 and may_be_one_word(*image.shape[:2]):  # as the ingress: a tight word crop
            gray = recognition.to_gray(image)
            results = self._assemble(*one_word_page(gray, self.recognizer.read_word(gray)))
        return degrees, unturned(results, degrees, image.shape[1], image.shape[0])

    def _assemble(self, lines: list[TextLine], crops: list[Crop], readings: list[Decoded]) -> list[LineResult]:
        return assemble(lines, crops, readings, min_word_confidence=self.min_word_confidence,
                        min_unknown_word_confidence=self.min_unknown_word_confidence)

    def detect_and_read(self, image: np.ndarray) -> tuple[list[TextLine], list[LineResult]]:
        """The detected lines as well as the answer, so evaluation can tell missed text from misread text."""
        lines = self.detector.detect([image])[0]
        crops = make_crops(image, lines, min_tilt=self.min_tilt, steep_tilt=self.steep_tilt)
        return lines, self._assemble(lines, crops, self.recognizer.read([c.pixels for c in crops]) if crops else [])
