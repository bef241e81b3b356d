"""Publish messages to RabbitMQ through the spool: write-ahead to disk, send with publisher confirms, then delete.

While the broker is down messages wait on disk and a background task retries with backoff; a message the spool
cannot take (full) is counted as dropped and reported, and OCR answers keep flowing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, cast

import aiormq
from opentelemetry import trace
from pamqp.commands import Basic
from pamqp.common import FieldTable

from serve_app import telemetry
from serve_app.storage.messages import QUEUES, Message
from serve_app.storage.spool import Spool, SpoolFull

log = logging.getLogger(__name__)


async def declare_queues(channel: aiormq.abc.AbstractChannel) -> None:
    for q in QUEUES:
        await channel.queue_declare(q, durable=True)


def cancelled_by_aiormq() -> bool:
    """Whether a ``CancelledError`` caught in the current task is aiormq reporting a lost connection.

    aiormq cancels a connection's reader when it judges the connection stuck (no frame for three heartbeats: a
    broker that hangs, a network that drops packets without a reset), and that ``CancelledError`` reaches every
    publish waiting for its confirm and every observer of the connection's closing. Re-raised as if this task had
    been cancelled, it ended the loops that reconnect, silently and for good: nothing was published (or consumed)
    again until the replica restarted. A real cancellation of this task is told apart by ``Task.cancelling``.
    """
    task = asyncio.current_task()
    return task is not None and task.cancelling() == 0


async def open_channel(url: str) -> tuple[aiormq.abc.AbstractConnection, aiormq.abc.AbstractChannel]:
    conn = await aiormq.connect(url)
    try:
        channel = await conn.channel(publisher_confirms=True)
        await declare_queues(channel)
    except BaseException:
        await conn.close()
        raise
    return conn, channel


class Publisher:
    def __init__(self, url: str, spool: Spool, publish_timeout_s: float = 5.0, max_backoff_s: float = 5.0) -> None:
        self.url, self.spool = url, spool
        self.publish_timeout_s, self.max_backoff_s = publish_timeout_s, max_backoff_s
        self._conn: aiormq.abc.AbstractConnection | None = None
        self._channel: aiormq.abc.AbstractChannel | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.published = self.failures = self.dropped = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._flush_forever(), name="spool-flusher")
        self._wake.set()  # messages spooled before a restart go out first

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._disconnect()

    def submit(self, msg: Message) -> bool:
        """Spool a message for sending; False (and counted) if the spool is full."""
        try:
            self.spool.put(msg)
        except SpoolFull as exc:
            self.dropped += 1
            log.error("message %s for request %s dropped: %s", msg.queue, msg.request_id, exc)
            return False
        self._wake.set()
        return True

    async def _channel_ready(self) -> aiormq.abc.AbstractChannel:
        current = self._channel
        if current is not None and not current.is_closed and self._conn is not None and not self._conn.is_closed:
            return current
        await self._disconnect()
        # a broker that is starting accepts TCP before it answers AMQP: bound the whole handshake
        self._conn, channel = await asyncio.wait_for(open_channel(self.url), self.publish_timeout_s)
        self._channel = channel
        return channel

    async def _disconnect(self) -> None:
        conn, self._conn, self._channel = self._conn, None, None
        if conn is not None and not conn.is_closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 2)

    async def send(self, msg: Message) -> None:
        """Publish one message and wait for the broker's confirm; raises on any failure."""
        channel = await self._channel_ready()
        with telemetry.span_from(msg.headers, f"publish {msg.queue}", kind=trace.SpanKind.PRODUCER,
                                 queue=msg.queue, request_id=msg.headers.get("request_id", "")):
            headers = dict(msg.headers)
            telemetry.inject(headers)  # the consumer's span becomes a child of this publish
            props = Basic.Properties(delivery_mode=2, headers=cast(FieldTable, headers), message_id=msg.message_id,
                                     content_type=msg.content_type)
            ack = await channel.basic_publish(msg.body, routing_key=msg.queue, properties=props,
                                              timeout=self.publish_timeout_s)
        if not isinstance(ack, Basic.Ack):
            raise RuntimeError(f"broker did not confirm message {msg.message_id}: {ack!r}")

    async def flush(self) -> int:
        """Send everything spooled, oldest first; returns how many went. Stops at the first failure."""
        sent = 0
        for path in self.spool.pending():
            try:
                msg = self.spool.load(path)
            except (OSError, ValueError, KeyError) as exc:
                log.error("unreadable spool file %s removed: %s", path.name, exc)
                self.spool.remove(path)
                continue
            await self.send(msg)
            self.spool.remove(path)
            self.published += 1
            sent += 1
        return sent

    async def _flush_forever(self) -> None:
        backoff = 0.2
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.flush()
                backoff = 0.2
                continue
            except asyncio.CancelledError:
                if not cancelled_by_aiormq():
                    raise
                reason = "the connection was judged stuck: no frame for three heartbeats"
            except Exception as exc:  # noqa: BLE001 - any broker or network failure: keep the spool, retry
                reason = f"{type(exc).__name__}: {exc}"
            self.failures += 1
            log.warning("publish failed (%s); %d spooled, retry in %.1fs", reason, self.spool.depth, backoff)
            await self._disconnect()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff_s)
            self._wake.set()

    def status(self) -> dict[str, Any]:
        return {"connected": self._channel is not None and not self._channel.is_closed,
                "spool_depth": self.spool.depth, "spool_bytes": self.spool.size_bytes, "spool_full": self.spool.full,
                "oldest_spooled_s": round(self.spool.oldest_age_s(), 3),
                "published": self.published, "publish_failures": self.failures, "dropped": self.dropped}
