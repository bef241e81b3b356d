"""Recognizer deployment: CRNN, autoscaled; reads the line crops of concurrent requests in one batch call."""

from __future__ import annotations

import collections
import contextlib
import time
from typing import Any

import numpy as np
from ray import serve

from deployments import batching, metrics
from serve_app import telemetry
from serve_app.config import RecognizerSettings
from serve_app.ocr import runtime
from serve_app.ocr.processing.recognition import Decoded, to_gray


@serve.deployment(name="Recognizer")
class Recognizer:
    def __init__(self, settings: dict[str, Any]) -> None:
        from serve_app.ocr.predictor import RecognizerRunner

        s = RecognizerSettings.model_validate(settings)
        runtime.setup(s.threads)
        self.threads, self.many_crops, self.many_crops_threads = s.threads, s.many_crops, s.many_crops_threads
        self.runner = RecognizerRunner(**s.runner_args())
        self.warm_up_s = self.runner.warm_up() if s.warm_up else 0.0  # before Serve routes a request here
        self.batch_sizes: collections.deque[int] = collections.deque(maxlen=10_000)  # crops per page batch
        self.word_batch_sizes: collections.deque[int] = collections.deque(maxlen=10_000)  # words per word batch
        self.page_faults: collections.deque[int] = collections.deque(maxlen=10_000)  # per page batch, see runtime
        self.batch_threads: collections.deque[int] = collections.deque(maxlen=10_000)  # threads per page batch
        self.batch_spans: collections.deque[tuple[float, float]] = collections.deque(maxlen=10_000)  # wall clock
        self.alone: collections.deque[bool] = collections.deque(maxlen=10_000)  # per page request, as the caller said

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        batching.configure(user_config, self.recognize, self.read_word)  # type: ignore[misc]  # see `recognize`

    # Serve's hints know batching of one argument only; it batches every argument alike, as here two
    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.005)  # type: ignore[arg-type]
    async def recognize(self, requests: list[list[np.ndarray]],  # type: ignore[misc]
                        page: list[str | None]) -> list[list[Decoded]]:
        """One call per request, each a list of crops; each request's crops are read in width buckets of their own.

        ``page``: a key for the page the crops are (a part of), where the caller had no other page in progress, so
        the detector's cores are idle and a page of crops may be read on ``many_crops_threads`` threads; else None.
        Under load that would put four busy threads on two cores (receipts, 4 clients: 2.8 -> 1.7 pages/s), so it
        stays on ``threads``; a call of several parts of one lone page is still that page alone. Of replicas on one
        machine reading parts of one page, one reads so at a time (`runtime.spare_cores`).
        """
        flat = [c for crops in requests for c in crops]
        lone_page = page[0] is not None and len(set(page)) == 1 and len(flat) >= self.many_crops
        self.batch_sizes.append(len(flat))
        self.alone.extend(p is not None for p in page)
        with runtime.spare_cores() if lone_page else contextlib.nullcontext(False) as wide:
            start = time.time()
            self.batch_threads.append(self.many_crops_threads if wide else self.threads)
            metrics.recognizer().observe(len(flat))
            attributes = {"crops": len(flat), "requests": len(requests), "threads": self.batch_threads[-1]}
            with telemetry.tracer.start_as_current_span("crnn", attributes=attributes):
                faults = runtime.minor_faults()
                with runtime.threads(self.batch_threads[-1]):  # each request's crops padded among themselves alone,
                    # so that another request's wider crops never change its reading (as they did for up to 7 % of
                    # scene lines)
                    readings = [r for crops in requests for r in self.runner.read(crops)]
                self.page_faults.append(runtime.minor_faults() - faults)
            self.batch_spans.append((start, time.time()))
        out, i = [], 0
        for crops in requests:
            out.append(readings[i: i + len(crops)])
            i += len(crops)
        return out

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.005)
    async def read_word(self, images: list[np.ndarray]) -> list[Decoded]:
        """One call per ``layout=word`` request, each a whole image that is one word; their views share passes."""
        self.word_batch_sizes.append(len(images))
        with telemetry.tracer.start_as_current_span("crnn.word", attributes={"words": len(images)}):
            return self.runner.read_words([to_gray(p) for p in images])

    def stats(self) -> dict[str, Any]:
        return {"replica": serve.get_replica_context().replica_tag,
                "batch_sizes": list(self.batch_sizes), "word_batch_sizes": list(self.word_batch_sizes),
                "page_faults": list(self.page_faults), "batch_threads": list(self.batch_threads),
                "batch_spans": list(self.batch_spans), "alone": list(self.alone), "warm_up_s": self.warm_up_s,
                "model": self.runner.meta.get("version", "unversioned"), "precision": self.runner.precision,
                "device": self.runner.device.type,
                "env": runtime.process_env()}
