"""How the ingress reads a page through the model deployments.

Decode, detect (a tall strip in parts), cut the lines out, recognize them (a long page in parts), assemble the answer.

The detector and recognizer are deployment handles; every call goes through ``call``, which sends it again where a
replica was lost, and CPU work (decoding, cutting) goes through ``in_thread``, off the event loop.
"""

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
from opentelemetry import trace
from ray.serve.handle import DeploymentHandle

from deployments import deadlines, metrics
from deployments.api_spec import Layout, Rotate
from deployments.ingress_calls import Call, InThread
from serve_app import regions, telemetry
from serve_app.config import AppConfig
from serve_app.imaging import DecodedImage, decode_image
from serve_app.layout import with_blocks
from serve_app.ocr.pipeline import (
    WORD_FALLBACK_CONFIDENCE,
    Found,
    LineResult,
    assemble,
    find_turn,
    make_crops,
    may_be_one_word,
    moved,
    one_word_page,
    to_upload_pixels,
    turned,
    unturned,
    word_lines,
)
from serve_app.ocr.processing import detection, recognition
from serve_app.ocr.processing.detection import DetectionParams, Part, Proposals, Reduced
from serve_app.ocr.processing.recognition import Crop, Decoded, to_gray
from serve_app.ocr.processing.textlines import TextLine


class PageReader:
    """Reads one page of an upload into its answer.

    ``render`` renders a PDF page (the ingress's sandbox); ``alone`` says whether this page is the only one on its
    way through the ingress, so that its parts may be read on both of a recognizer's cores. ``crops_per_part`` is a
    live setting, which the ingress sets on reconfiguration.
    """

    def __init__(self, cfg: AppConfig, detector: DeploymentHandle, recognizer: DeploymentHandle, call: Call,
                 in_thread: InThread, render: Callable[..., Any], models: dict[str, str],
                 alone: Callable[[], bool]) -> None:
        self.cfg, self.detector, self.recognizer = cfg, detector, recognizer
        self.call, self.in_thread, self.render, self.models, self.alone = call, in_thread, render, models, alone
        self.detection = DetectionParams(**cfg.detector.detection.model_dump())
        self.crops_per_part = cfg.recognizer.crops_per_part

    async def read(self, request_id: str, data: bytes, t0: float, layout: Layout, page: int, rotate: Rotate,
                   min_confidence: float | None, notes: dict[str, Any],
                   region: regions.Region | None = None) -> tuple[dict[str, Any], DecodedImage]:
        """Page ``page`` of the upload ``data`` decoded and read: its answer, and the pixels of the whole page.

        ``region``: only that part of it is read, its boxes moved back into the page's pixels.
        """
        limits = self.cfg.ingress
        # a region is read at the upload's own scale: its print is smaller than the page's detector input shows it
        keep_side, keep_short = self.cfg.detector.detection.keep_sides()
        decoded = await self.in_thread("decode", decode_image, data, limits.max_upload_bytes, limits.max_pixels,
                                       keep_side if limits.jpeg_draft and region is None else None, page,
                                       limits.pdf_dpi, self.render, keep_short)
        trace.get_current_span().set_attributes(
            {"image.width": decoded.width, "image.height": decoded.height, "image.bytes": len(data),
             "image.pages": decoded.pages})
        t1 = time.perf_counter()
        part, left, top = decoded.pixels, 0, 0  # what is read, and where it lies in the decoded page
        cut, frame = part, 0  # the part without the frame a region is read in: what a word is read from
        if region is not None:
            region = regions.clipped(region, decoded.width, decoded.height)
            cut, left, top = regions.crop(decoded.pixels, region, *decoded.scale)
            inside = (left, top, left + cut.shape[1], top + cut.shape[0])
            part = cut
            if layout == "page":  # a word is read as cut: the recognizer reads tight crops
                frame = regions.FRAME
                part, left, top = regions.framed(cut, frame), left - frame, top - frame
        rotation = 0 if rotate == "auto" else int(rotate)
        if layout == "word":  # a tall word is already read turned a quarter each way: "auto" reads it as it comes
            pixels = await self.in_thread("turn", turned, part, rotation) if rotation else part
            with telemetry.tracer.start_as_current_span("recognize", attributes={"crops": 1}):
                reading = await self.call("Recognizer", lambda: self.recognizer.read_word.remote(pixels))
            detect_s, recognize_s = 0.0, time.perf_counter() - t1
            results = unturned(word_lines(to_gray(pixels), reading), rotation, *part.shape[1::-1])
        else:
            rotation, results, detect_s, recognize_s = await self._read_page(part, rotate, min_confidence)
            if not results and rotation == 0 and may_be_one_word(*cut.shape[:2]):
                t2 = time.perf_counter()  # a word cropped too tight for the detector: read it whole, then filter it
                with telemetry.tracer.start_as_current_span("recognize", attributes={"crops": 1, "fallback": "word"}):
                    reading = await self.call("Recognizer", lambda: self.recognizer.read_word.remote(cut))
                gate = WORD_FALLBACK_CONFIDENCE if min_confidence is None else min_confidence
                results = self._assemble(*one_word_page(to_gray(cut), reading, gate), min_confidence)
                if frame:  # in the framed part's pixels, as the detector's lines are
                    results = moved(results, lambda x, y: (x + frame, y + frame))
                recognize_s += time.perf_counter() - t2
                notes["read_as"] = "word" if results else "nothing (no line, nor a word)"
        trace.get_current_span().set_attribute("image.rotation", rotation)
        if region is not None:  # back into the page, within the part read (not its frame)
            results = moved(results, lambda x, y: (min(max(x + left, inside[0]), inside[2]),
                                                   min(max(y + top, inside[1]), inside[3])))
        results = to_upload_pixels(results, *decoded.scale)
        m = metrics.ingress()
        m["images"].inc()
        stages = (("decode", t1 - t0), ("detect", detect_s), ("recognize", recognize_s))
        for stage, ms in stages if layout == "page" else (stages[0], stages[2]):
            m["stage_ms"].observe(ms * 1e3, tags={"stage": stage, "layout": layout})
        m["lines"].observe(len(results))
        m["words"].observe(sum(len(r.words) for r in results))
        m["pixels"].observe(decoded.width * decoded.height / 1e6)
        body: dict[str, Any] = {
            "request_id": request_id,
            "image": {"width": decoded.width, "height": decoded.height, "format": decoded.format,
                      "page": decoded.page, "pages": decoded.pages, "dpi": decoded.dpi, "rotation": rotation,
                      **({"region": list(region)} if region is not None else {})},
            "lines": [r.to_dict() for r in results],
            "text": "\n".join(r.text for r in results),
            "timings": {"decode_ms": (t1 - t0) * 1e3, "detect_ms": detect_s * 1e3, "recognize_ms": recognize_s * 1e3,
                        "total_ms": (time.perf_counter() - t0) * 1e3},
            "models": self.models,
        }
        with_blocks(body)
        return body, decoded

    async def _find(self, pixels: np.ndarray, degrees: int, spent: dict[str, float]) -> Found:
        """The text lines of ``pixels`` turned ``degrees`` clockwise, and their crops; adds to ``spent["detect"]``."""
        if degrees:
            pixels = await self.in_thread("turn", turned, pixels, degrees)
        t0 = time.perf_counter()
        # at the detector's scale before it leaves: a 12 MP photo is 36 MB through the object store, 3.7 MB so
        frame = await self.in_thread("reduce", detection.reduce, pixels, self.detection)
        with telemetry.tracer.start_as_current_span("detect", attributes={"rotation": degrees}) as span:
            lines = await self._detect(frame, span)
            span.set_attribute("lines", len(lines))
        spent["detect"] += time.perf_counter() - t0
        crops = await self.in_thread("crop", make_crops, pixels, lines, self.cfg.recognizer.max_crop_width,
                                     self.cfg.recognizer.min_tilt)
        return lines, crops

    async def _detect(self, frame: np.ndarray | Reduced, span: trace.Span) -> list[TextLine]:
        """A frame's lines, found by the detector in one call, or in a call a part for a tall strip.

        A strip's parts (`detection.split`) go at once, so that the detector's replicas share them; their proposals
        are joined into lines here, as one replica joins them (`DetectorRunner.detect`).
        """
        width, height = detection.size_of(frame)
        if detection.passes(width, height, self.detection) == 1:
            return await self.call("Detector", lambda: self.detector.detect.remote(frame))
        strip = await self.in_thread("split", detection.split, frame, self.detection)
        span.set_attribute("parts", len(strip.parts))

        async def propose(part: Part) -> Proposals:
            return await self.call("Detector", lambda: self.detector.propose.remote(part))

        found = await asyncio.gather(*(propose(part) for part in strip.parts))
        return await self.in_thread("lines", detection.lines_of, list(found), strip, self.detection)

    async def _recognize(self, crops: list[Crop], spent: dict[str, float]) -> list[Decoded]:
        """A page's crops, in parts read at once (`recognition.parts`): replicas read a long page together."""
        t0 = time.perf_counter()
        split = recognition.parts([c.pixels.shape[1] for c in crops], self.cfg.recognizer.max_crops_per_forward,
                                  self.crops_per_part)
        with telemetry.tracer.start_as_current_span("recognize", attributes={"crops": len(crops),
                                                                              "parts": len(split)}):
            # one page on its way through: its parts may be read on both cores (the detector's is idle)
            page = uuid.uuid4().hex if self.alone() else None

            async def read(part: list[int]) -> list[Decoded]:
                pixels = [crops[i].pixels for i in part]
                return await self.call("Recognizer", lambda: self.recognizer.recognize.remote(pixels, page))

            readings: list[Decoded | None] = [None] * len(crops)
            for part, read_part in zip(split, await asyncio.gather(*(read(p) for p in split))):
                for i, reading in zip(part, read_part):
                    readings[i] = reading
        spent["recognize"] += time.perf_counter() - t0
        return [r for r in readings if r is not None]

    def _assemble(self, lines: list[TextLine], crops: list[Crop], readings: list[Decoded],
                  min_confidence: float | None = None) -> list[LineResult]:
        """The service's word filter, or the request's own ``min_confidence`` for every word."""
        limits = self.cfg.ingress
        known, unknown = ((limits.min_word_confidence, limits.min_unknown_word_confidence) if min_confidence is None
                          else (min_confidence, min_confidence))
        return assemble(lines, crops, readings, limits.min_line_confidence, known, unknown)

    async def _read_page(self, pixels: np.ndarray, rotate: Rotate,
                         min_confidence: float | None = None) -> tuple[int, list[LineResult], float, float]:
        """Find and read the text of ``pixels`` at the turn ``rotate`` asks for, or finds (`find_turn`).

        Returns the turn, the results in the unturned pixels, and the seconds spent detecting and recognizing.
        """

        def answer(lines: list[TextLine], crops: list[Crop], readings: list[Decoded]) -> list[LineResult]:
            return self._assemble(lines, crops, readings, min_confidence)

        spent = {"detect": 0.0, "recognize": 0.0}
        deadlines.allow_parts(detection.passes(pixels.shape[1], pixels.shape[0], self.detection))

        async def find(degrees: int) -> Found:
            return await self._find(pixels, degrees, spent)

        async def read(crops: list[Crop]) -> list[Decoded]:
            return await self._recognize(crops, spent)

        if rotate == "auto":
            degrees, results = await find_turn(find, read, self._assemble, answer)
        else:
            degrees = int(rotate)
            lines, crops = await find(degrees)
            results = answer(lines, crops, await read(crops))
        height, width = pixels.shape[:2]
        return degrees, unturned(results, degrees, width, height), spent["detect"], spent["recognize"]
