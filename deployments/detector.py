"""Detector deployment: CTPN with dynamic batching; batch size and wait time change at run time via user_config."""

from __future__ import annotations

import collections
from typing import Any

import numpy as np
from ray import serve

from deployments import batching, metrics
from serve_app import telemetry
from serve_app.config import DetectorSettings
from serve_app.ocr import runtime
from serve_app.ocr.processing.detection import Part, Proposals, Reduced
from serve_app.ocr.processing.textlines import TextLine


@serve.deployment(name="Detector")
class Detector:
    def __init__(self, settings: dict[str, Any]) -> None:
        from serve_app.ocr.predictor import DetectorRunner

        s = DetectorSettings.model_validate(settings)
        runtime.setup(s.threads)
        self.runner = DetectorRunner(**s.runner_args())
        self.warm_up = list(s.warm_up)  # the sizes of the made-up pages read first, and how long they took
        self.warm_up_s = self.runner.warm_up(self.warm_up)  # Serve routes no request here before __init__ returns
        self.batch_sizes: collections.deque[int] = collections.deque(maxlen=10_000)
        self.page_faults: collections.deque[int] = collections.deque(maxlen=10_000)  # per batch, see runtime
        self.frames: collections.deque[tuple[int, int]] = collections.deque(maxlen=10_000)  # (h, w) as received
        self.parts: collections.deque[tuple[int, int]] = collections.deque(maxlen=10_000)  # (r0, rows) of strips

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        batching.configure(user_config, self.detect, self.propose)

    @serve.batch(max_batch_size=4, batch_wait_timeout_s=0.01)
    async def detect(self, images: list[np.ndarray | Reduced]) -> list[list[TextLine]]:
        self.batch_sizes.append(len(images))
        self.frames.extend((im.pixels if isinstance(im, Reduced) else im).shape[:2] for im in images)
        metrics.detector().observe(len(images))
        with telemetry.tracer.start_as_current_span("ctpn", attributes={"batch_size": len(images)}) as span:
            faults = runtime.minor_faults()
            lines = self.runner.detect(images)
            self.page_faults.append(runtime.minor_faults() - faults)
            span.set_attribute("lines", sum(len(x) for x in lines))
        return lines

    @serve.batch(max_batch_size=4, batch_wait_timeout_s=0.01)
    async def propose(self, parts: list[Part]) -> list[Proposals]:
        """The parts of tall strips, each a call of its own (`detection.split`), so that the replicas share a strip."""
        self.parts.extend((part.r0, part.pixels.shape[0]) for part in parts)
        metrics.detector().observe(len(parts))
        with telemetry.tracer.start_as_current_span("ctpn.parts", attributes={"parts": len(parts)}):
            return self.runner.propose(parts)

    def stats(self) -> dict[str, Any]:
        """Batch sizes, page faults per batch, frame sizes and strip parts as received (tests read them), model..."""
        return {"replica": serve.get_replica_context().replica_tag,
                "batch_sizes": list(self.batch_sizes), "page_faults": list(self.page_faults),
                "frames": list(self.frames), "parts": list(self.parts), "warm_up": self.warm_up,
                "warm_up_s": self.warm_up_s,
                "model": self.runner.meta.get("version", "unversioned"), "precision": self.runner.precision,
                "device": self.runner.device.type,
                "env": runtime.process_env()}
