"""Joining detection and recognition into the answer: crops from line boxes, readings to lines and words.

No torch here: the ingress deployment uses these between its calls to the detector and the recognizer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

import numpy as np

from serve_app.ocr.processing import recognition
from serve_app.ocr.processing.recognition import Crop, Decoded, Word
from serve_app.ocr.processing.textlines import TextLine

#: Words whose characters average less than this probability are dropped. Chosen for the full CRNN with
#: `training.tune_detection`'s TRAIN-only frames (rebuilt ICDAR 2015 frames busy and plain, SROIE receipts,
#: born-digital images): 0.75 and 0.8 beat 0.7 on all four, and 0.8 drops clean rendered words that the shipped-
#: weights tests read ("x" in "Qty 2 x 4.50"). It trades a little recall for more precision (docs/accuracy.md).
MIN_WORD_CONFIDENCE = 0.75

#: Words of letters only that the lexicon does not know (after its corrections) need this much instead. Misreads
#: of scene text mostly spell no word ("SUBWOY", "Thavsi"); names and brands that do are usually read confidently.
#: Chosen on the same TRAIN-only checks (`training.tune_detection min_unknown_word_confidence=...`, docs/accuracy.md):
#: 0.92 took busy layouts 0.587 -> 0.606 and plain ones 0.693 -> 0.713 with receipts unchanged; 0.9-0.95 score
#: within 0.005 of it.
MIN_UNKNOWN_WORD_CONFIDENCE = 0.92

#: Lines whose centre line slopes at least this much (dy/dx) are cut along their own axis (`make_crops`).
MIN_TILT = 0.015

#: Lines sloping at least this much are cut with `STEEP_PAD_Y` of their thickness above and below the text instead
#: of `recognition.crop_tilted`'s 0.15. Chosen on TRAIN data (`docs/accuracy.md`): tighter crops of steep scene
#: lines read better (busy IC15 check layouts 0.621 -> 0.651, plain ones 0.714 -> 0.737), while tightening every
#: tilted line lost on born-digital images (0.858 -> 0.850) and receipts (0.919 -> 0.913), whose tilted lines
#: slope less (three in four under 0.045, against a median of 0.096 on scene layouts). scenes_dev 0.512 -> 0.520.
STEEP_TILT = 0.05
STEEP_PAD_Y = 0.04

#: A word image this many times higher than wide is also read turned a quarter each way (`read_word`).
TALL_WORD = 1.25


#: Quarter turns an image may be read at, in degrees clockwise (`turned`, the ``rotate`` query parameter).
ROTATIONS = (0, 90, 180, 270)

#: With ``rotate=auto``, a reading of the upload as it comes that has at least `UPRIGHT_WORDS` words averaging at
#: least `UPRIGHT_CONFIDENCE`, and at least `UPRIGHT_SCORE` confident characters (`reading_score`), is kept without
#: trying the other three turns. Chosen on 15 TRAIN receipts and 40 born-digital TRAIN images read at all four
#: turns: upright, 43 of 55 stop there; none of the 165 turned readings does (upside-down receipts average up to
#: 0.91, and a sideways banner can hold three short words at 0.97). The characters keep a page turned a quarter
#: from stopping on a few confident letters read off its columns ("G", "6", "A", "G=E"); on TRAIN they change no
#: decision.
UPRIGHT_CONFIDENCE = 0.95
UPRIGHT_WORDS = 4
UPRIGHT_SCORE = 12.0

#: With ``rotate=auto``, when the upload as it comes reads doubtfully, the other turns are judged on the readings of
#: their widest lines only, and only the chosen turn is read whole. On 15 TRAIN receipts, 40 born-digital TRAIN
#: images and 55 rebuilt IC15 layouts, each uploaded at all four turns (440 cases), judging every turn by its 8 (12,
#: 16) widest lines chose the same turns as judging by whole readings.
SAMPLE_LINES = 8


@dataclass(frozen=True)
class LineResult:
    box: tuple[float, float, float, float]
    text: str
    confidence: float
    words: list[Word]
    poly: tuple[tuple[float, float], ...] | None = None  # the line's quadrilateral; None: the box itself

    def to_dict(self) -> dict:
        x0, y0, x1, y1 = self.box
        poly = self.poly or ((x0, y0), (x1, y0), (x1, y1), (x0, y1))
        return {
            "box": [round(v, 1) for v in self.box],
            "poly": [[round(float(x), 1), round(float(y), 1)] for x, y in poly],
            "text": self.text,
            "confidence": round(self.confidence, 4),
            "words": [{"box": [round(v, 1) for v in w.box], "text": w.text, "confidence": round(w.confidence, 4)}
                      for w in self.words],
        }


def is_tilted(poly: tuple[tuple[float, float], ...]) -> bool:
    """Whether a line slopes enough to be cut along its own axis (`MIN_TILT`, the default).

    The writers of searchable PDFs and hOCR lay such a line's words along its slope, the others flat.
    """
    return len(poly) == 4 and abs(recognition.line_slope(poly)) >= MIN_TILT


def make_crops(image: np.ndarray, lines: list[TextLine], max_width: int = 1600,
               min_tilt: float = MIN_TILT, steep_tilt: float = STEEP_TILT) -> list[Crop]:
    """Level lines are cut as boxes, tilted ones along their own axis; steep ones with less margin (`STEEP_TILT`)."""
    crops = []
    for ln in lines:
        slope = abs(recognition.line_slope(ln.poly))
        if slope < min_tilt:
            crops.append(recognition.crop_line(image, ln.box, max_width=max_width))
        elif slope < steep_tilt:
            crops.append(recognition.crop_tilted(image, ln.poly, max_width=max_width))
        else:
            crops.append(recognition.crop_tilted(image, ln.poly, pad_y=STEEP_PAD_Y, max_width=max_width))
    return crops


def assemble(
    lines: list[TextLine], crops: list[Crop], readings: list[Decoded], min_confidence: float = 0.0,
    min_word_confidence: float = MIN_WORD_CONFIDENCE, min_unknown_word_confidence: float = MIN_UNKNOWN_WORD_CONFIDENCE,
) -> list[LineResult]:
    """Join detection and recognition: words split at spaces, empty or doubtful ones dropped, reading order kept."""
    out = []
    for ln, crop, dec in zip(lines, crops, readings):
        words = [w for w in recognition.split_words(dec, crop, ln.box) if w.text and w.confidence >= (
            min_word_confidence if w.known else max(min_word_confidence, min_unknown_word_confidence))]
        if not words:
            continue
        conf = float(np.mean([p for p in dec.probs])) if dec.probs else 0.0
        if conf < min_confidence:
            continue
        out.append(LineResult(ln.box, " ".join(w.text for w in words), conf, words, ln.poly))
    return out


def moved(results: list[LineResult], point: Callable[[float, float], tuple[float, float]]) -> list[LineResult]:
    """Results with every corner sent through ``point``; boxes become the bounds of their moved corners.

    Polygons keep their corners' order, so after a turn the first is still the text's own top left.
    """
    def corners(b: tuple[float, float, float, float]) -> tuple[tuple[float, float], ...]:
        x0, y0, x1, y1 = b
        return tuple(point(x, y) for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1)))

    def bounds(pts: tuple[tuple[float, float], ...]) -> tuple[float, float, float, float]:
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        return min(xs), min(ys), max(xs), max(ys)

    return [replace(r, box=bounds(corners(r.box)), words=[replace(w, box=bounds(corners(w.box))) for w in r.words],
                    poly=tuple(point(x, y) for x, y in r.poly) if r.poly else corners(r.box)) for r in results]


def to_upload_pixels(results: list[LineResult], sx: float, sy: float) -> list[LineResult]:
    """Results found on a reduced decode (`imaging.decode_image`) in the upload's own pixels."""
    if sx == 1.0 and sy == 1.0:
        return results
    return moved(results, lambda x, y: (x * sx, y * sy))


def word_lines(gray: np.ndarray, reading: Decoded, tall: float = TALL_WORD) -> list[LineResult]:
    """The answer for an image that is one word (``layout=word``): one line covering the whole image.

    Word boxes come from the CTC columns of the upright reading; a tall image may have been read turned, so its
    words get the whole image. Nothing is dropped for low confidence: the caller said there is a word here.
    """
    h, w = gray.shape[:2]
    box = (0.0, 0.0, float(w), float(h))
    if not reading.text.strip():
        return []
    if h > tall * w:
        words = [Word(t, box, reading.confidence) for t in reading.text.split()]
    else:
        words = recognition.split_words(reading, Crop(recognition.normalise(gray), *box), box)
    return [LineResult(box, " ".join(wd.text for wd in words), reading.confidence, words)]


#: An upload at most this high and wide in which the detector finds no line is read whole as one word
#: (`one_word_page`). Cropped words are small (TRAIN crops: median 33 px high, 95th percentile 109) and often cut
#: so tight that CTPN, which needs some margin around text, finds nothing in them: 23 % of 500 TRAIN crops. Past
#: these sizes an upload without lines is a photo without text, not a word.
WORD_MAX_HEIGHT = 160
WORD_MAX_WIDTH = 800


def may_be_one_word(height: int, width: int, tall: float = TALL_WORD) -> bool:
    """Whether an upload of this size without lines is worth reading whole as one (level) word."""
    return height <= WORD_MAX_HEIGHT and width <= WORD_MAX_WIDTH and height <= tall * width


#: How sure the reading of a whole upload must be, beyond the word filter, to stand for the word it holds.
WORD_FALLBACK_CONFIDENCE = 0.9


def one_word_page(gray: np.ndarray, reading: Decoded, min_reading_confidence: float = WORD_FALLBACK_CONFIDENCE,
                  ) -> tuple[list[TextLine], list[Crop], list[Decoded]]:
    """An upload read whole as one word, as a page of one line for `assemble` and its word filter.

    Empty when the reading is under ``min_reading_confidence``. Of 590 textless patches of born-digital TRAIN
    images, the word filter alone let 27 come back as a word, and 2 with the reading at 0.9 as well; of the 1,210
    TRAIN crops in which no line was found, 1,095 were read right whole and 1,007 of those pass both (TRAIN: the
    CRNN has seen these crops).
    """
    if reading.confidence < min_reading_confidence:
        return [], [], []
    h, w = gray.shape[:2]
    box = (0.0, 0.0, float(w), float(h))
    corners = ((0.0, 0.0), (float(w), 0.0), (float(w), float(h)), (0.0, float(h)))
    return [TextLine(box, corners, 1.0, 0)], [Crop(recognition.normalise(gray), *box)], [reading]


def turned(image: np.ndarray, degrees: int) -> np.ndarray:
    """The image turned ``degrees`` clockwise (one of `ROTATIONS`), contiguous for the models."""
    return np.ascontiguousarray(np.rot90(image, -(degrees // 90))) if degrees % 360 else image


def unturned(results: list[LineResult], degrees: int, width: int, height: int) -> list[LineResult]:
    """Results read on the image turned ``degrees`` clockwise, in the pixels of the unturned ``width`` x ``height``.

    Polygons keep their corners in reading order (the text's top left first), so a client can draw the line the way
    it reads; boxes are the axis-aligned bounds of the turned-back corners.
    """
    back = {90: lambda x, y: (y, height - x), 180: lambda x, y: (width - x, height - y),
            270: lambda x, y: (width - y, x)}.get(degrees % 360)
    return moved(results, back) if back else results


def reading_score(results: list[LineResult]) -> float:
    """How much confident text a reading holds: the characters of its words, each weighted by its confidence.

    Read the wrong way up, a page still yields lines, but fewer words pass the confidence filters and those that do
    are short: on TRAIN receipts the upright reading scores 1.6-2.8x the upside-down one and 4-16x a sideways one.
    """
    return sum(len(w.text) * w.confidence for r in results for w in r.words)


def upright_enough(results: list[LineResult]) -> bool:
    """``rotate=auto`` keeps a reading of the upload as it comes, without trying other turns, when this holds."""
    confs = [w.confidence for r in results for w in r.words]
    return (len(confs) >= UPRIGHT_WORDS and float(np.mean(confs)) >= UPRIGHT_CONFIDENCE
            and reading_score(results) >= UPRIGHT_SCORE)


def best_rotation(readings: dict[int, list[LineResult]]) -> int:
    """The turn whose reading holds the most confident text (`reading_score`); a tie keeps the smallest turn."""
    return max(sorted(readings), key=lambda d: reading_score(readings[d]))


def widest(lines: list[TextLine], k: int = SAMPLE_LINES) -> list[int]:
    """The indexes of the ``k`` widest lines, in reading order."""
    return sorted(sorted(range(len(lines)), key=lambda i: lines[i].box[0] - lines[i].box[2])[:k])


Found = tuple[list[TextLine], list[Crop]]


async def find_turn(
    find: Callable[[int], Awaitable[Found]],
    read: Callable[[list[Crop]], Awaitable[list[Decoded]]],
    keep: Callable[[list[TextLine], list[Crop], list[Decoded]], list[LineResult]],
    answer: Callable[[list[TextLine], list[Crop], list[Decoded]], list[LineResult]] | None = None,
) -> tuple[int, list[LineResult]]:
    """``rotate=auto``: the turn to read an image at, and its results (in the turned image's pixels).

    ``find(degrees)`` detects the lines of the image turned ``degrees`` clockwise and cuts their crops; ``read``
    reads crops; ``keep`` assembles what the turns are judged on (`assemble` with the service's filters), and
    ``answer`` (default ``keep``) the results, so that a request's own word filter never changes the turn chosen.
    The upload as it comes is read whole and kept when `upright_enough`. Otherwise the other three turns are
    detected and their `widest` lines read (at once), each judged against the same lines of the upload's reading
    (`best_rotation`), and only the winner's remaining lines are read. Reading every line of every turn cost 3-4x
    one reading, most of it the dozens of short "lines" a detector finds in the columns of a sideways page.
    """
    answer = answer or keep
    lines, crops = await find(0)
    first = await read(crops) if crops else []
    if upright_enough(keep(lines, crops, first)):
        return 0, answer(lines, crops, first)

    async def judge(degrees: int) -> tuple[list[TextLine], list[Crop], dict[int, Decoded]]:
        lines, crops = await find(degrees)
        sample = widest(lines)
        readings = await read([crops[i] for i in sample]) if sample else []
        return lines, crops, dict(zip(sample, readings, strict=True))

    judged = {0: (lines, crops, dict(enumerate(first))),
              **dict(zip(ROTATIONS[1:], await asyncio.gather(*(judge(d) for d in ROTATIONS[1:])), strict=True))}

    def sampled(lines: list[TextLine], crops: list[Crop], read_so_far: dict[int, Decoded]) -> list[LineResult]:
        sample = widest(lines)
        return keep([lines[i] for i in sample], [crops[i] for i in sample], [read_so_far[i] for i in sample])

    best = best_rotation({d: sampled(*j) for d, j in judged.items()})
    if best == 0:
        return 0, answer(lines, crops, first)
    lines, crops, read_so_far = judged[best]
    rest = [i for i in range(len(lines)) if i not in read_so_far]
    read_so_far.update(zip(rest, await read([crops[i] for i in rest]) if rest else [], strict=True))
    return best, answer(lines, crops, [read_so_far[i] for i in range(len(lines))])
