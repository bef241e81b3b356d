"""Sidecar deployment: takes finished results off the request path and publishes them through the spool."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ray import serve

from deployments import metrics, replica_logs
from serve_app import telemetry
from serve_app.config import StorageSettings
from serve_app.storage.messages import correction_message, data_message, image_message
from serve_app.storage.publisher import Publisher
from serve_app.storage.spool import Spool

log = logging.getLogger("ray.serve")


@serve.deployment(name="Sidecar", ray_actor_options={"num_cpus": 0}, max_ongoing_requests=1000)
class Sidecar:
    def __init__(self, settings: dict[str, Any]) -> None:
        replica_logs.into_replica_log()
        s = StorageSettings.model_validate(settings).resolved()
        if not s.rabbitmq_url:
            raise ValueError("the sidecar needs a RabbitMQ URL (storage.rabbitmq_url or RABBITMQ_URL)")
        self.publisher = Publisher(s.rabbitmq_url, Spool(s.spool_dir, s.spool_max_messages, s.spool_max_bytes),
                                   s.publish_timeout_s)
        self._started = False

    def _ensure_started(self) -> None:
        if not self._started:  # needs the replica's running event loop, which __init__ may not have
            self.publisher.start()
            self._gauges = asyncio.get_running_loop().create_task(self._report())
            self._started = True

    async def _report(self) -> None:
        gauges = metrics.storage()
        while True:
            s = self.publisher.status()
            gauges["spool_depth"].set(s["spool_depth"])
            gauges["spool_full"].set(int(s["spool_full"]))
            gauges["spool_oldest_s"].set(s["oldest_spooled_s"])
            gauges["publish_failures"].set(s["publish_failures"])
            gauges["dropped"].set(s["dropped"])
            await asyncio.sleep(2)

    async def forward(self, request_id: str, image: bytes, content_type: str, result: dict[str, Any],
                      more: list[dict[str, Any]] | None = None) -> bool:
        """Spool an upload once and each answer read from it; False if the spool was full.

        ``result`` is the answer of ``request_id``; ``more``: the other pages of a ``?pages=`` document, each with its
        own ``request_id``, and the upload's one message names them all. The call of earlier releases (one answer,
        no ``more``) is this call still, so that an ingress replica of one drains its handovers into a sidecar of the
        next during a redeploy.
        """
        self._ensure_started()
        results = [result, *(more or [])]
        ids = [request_id, *(r["request_id"] for r in results[1:])]
        created = result.get("created_at")
        messages = [image_message(request_id, image, content_type, created, also=ids[1:]),
                    *(data_message(rid, r, r.get("created_at")) for rid, r in zip(ids, results, strict=True))]
        ok = True
        for msg in messages:
            telemetry.inject(msg.headers)  # the request's trace continues through the broker
            ok = await asyncio.to_thread(self.publisher.submit, msg) and ok
        return ok

    async def correct(self, image_id: str, value: str, line_index: int | None, correction_id: str) -> bool:
        """Spool a correction; False if the spool was full.

        The caller names it, so that a correction sent again (its replica lost, or its client retrying) is stored once.
        """
        self._ensure_started()
        msg = correction_message(image_id, value, line_index, correction_id)
        telemetry.inject(msg.headers)
        return await asyncio.to_thread(self.publisher.submit, msg)

    async def check_health(self) -> None:
        self._ensure_started()  # starts publishing right after deployment, before the first result

    async def status(self) -> dict[str, Any]:
        self._ensure_started()
        return self.publisher.status()
