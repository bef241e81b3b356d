"""Consume the three queues into the image store and PostgreSQL, acknowledging only after the commit.

Redeliveries are harmless (writes are idempotent by id); a message that cannot be parsed goes to the dead-letter
queue with its reason and the consumer goes on; while PostgreSQL or the disk fails nothing is acknowledged. A
message for an image deleted at its owner's request is acknowledged and dropped, with any file an earlier try of it
left.

The image message of a ``?pages=`` document names every page in its ``request_id`` header, comma-separated (they
share the upload): the file is sent and stored once, and each page's row names it. An archiver of an earlier release,
still consuming during an upgrade, finds no UUID there and dead-letters the message whole, rather than storing the
file for one page and acknowledging the rest away.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiormq
import asyncpg
from opentelemetry import trace
from pamqp.commands import Basic

from serve_app import telemetry
from serve_app.storage import repository
from serve_app.storage.messages import CORRECTION_QUEUE, DATA_QUEUE, DEAD_LETTER_QUEUE, IMAGE_QUEUE
from serve_app.storage.publisher import cancelled_by_aiormq, open_channel

log = logging.getLogger(__name__)
EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp", "image/bmp": "bmp",
              "image/tiff": "tiff", "image/heic": "heic", "image/avif": "avif", "application/pdf": "pdf"}


@contextlib.asynccontextmanager
async def _sql(statement: str) -> AsyncIterator[None]:
    """A client span per database transaction, as OpenTelemetry's database conventions name them."""
    with telemetry.tracer.start_as_current_span(
        f"sql {statement}", kind=trace.SpanKind.CLIENT,
        attributes={"db.system": "postgresql", "db.statement": statement},
    ):
        yield


class PoisonMessage(ValueError):
    """A message that no retry can store: it goes to the dead-letter queue."""


class NotYet(RuntimeError):
    """The message refers to something not stored yet (a correction before its image): retry later."""


def _parse_created(headers: dict[str, Any]) -> datetime:
    raw = headers.get("created_at")
    try:
        created = datetime.fromisoformat(str(raw)) if raw else datetime.now(UTC)
    except ValueError:
        raise PoisonMessage(f"bad created_at header {raw!r}") from None
    return created if created.tzinfo else created.replace(tzinfo=UTC)


def _request_id(headers: dict[str, Any]) -> uuid.UUID:
    try:
        return uuid.UUID(str(headers["request_id"]))
    except (KeyError, ValueError):
        raise PoisonMessage(f"missing or malformed request_id header: {headers.get('request_id')!r}") from None


def _request_ids(headers: dict[str, Any]) -> list[uuid.UUID]:
    """The images an image message is the file of: one, or a document's pages, in its ``request_id`` header."""
    raw = str(headers.get("request_id") or "")
    try:
        ids = [uuid.UUID(r) for r in raw.split(",")]
    except ValueError:
        raise PoisonMessage(f"missing or malformed request_id header: {headers.get('request_id')!r}") from None
    return list(dict.fromkeys(ids))


def content_path(data: bytes, content_type: str) -> str:
    """Where an upload lives under the image directory: ``sha256/ab/cd/<its SHA-256>.<ext>``.

    Named by content, so one upload is one file however many images name it (pages, the same photo sent again).
    """
    digest = hashlib.sha256(data).hexdigest()
    return f"sha256/{digest[:2]}/{digest[2:4]}/{digest}.{EXTENSIONS.get(content_type, 'bin')}"


def media_type(path: str) -> str | None:
    """The media type a stored file's name says (`content_path` names it by the type its upload was read as).

    The ``image`` row's ``format`` says it too, but only once the answer has arrived (``imageDataQueue``); the file
    may come first, and was then served as ``application/octet-stream``.
    """
    extension = path.rsplit(".", 1)[-1] if "." in path.rsplit("/", 1)[-1] else ""
    return next((kind for kind, ext in EXTENSIONS.items() if ext == extension), None)


def content_digest(path: str) -> str | None:
    """The SHA-256 a `content_path` names (None for a file stored under its image's id, before content paths)."""
    parts = path.split("/")
    return parts[-1].split(".", 1)[0] if len(parts) == 4 and parts[0] == "sha256" else None


def write_once(path: Path, data: bytes) -> None:
    """Write ``data`` at ``path`` unless it is there already: a file named by its content is never rewritten."""
    if not path.exists():
        write_atomically(path, data)


def write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")  # each writer its own, in any process
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _delivered(message: aiormq.abc.DeliveredMessage) -> tuple[str, int]:
    """The queue and delivery tag of a consumed message (pamqp types every frame field as optional)."""
    delivery = message.delivery
    if not isinstance(delivery, Basic.Deliver) or delivery.routing_key is None or delivery.delivery_tag is None:
        raise TypeError(f"not a delivery from a consumer: {delivery!r}")
    return delivery.routing_key, delivery.delivery_tag


class Archiver:
    def __init__(self, rabbitmq_url: str, pool: asyncpg.Pool, image_dir: str | Path, prefetch: int = 16,
                 retry_delay_s: float = 1.0, max_not_yet_retries: int = 20) -> None:
        self.url, self.pool, self.image_dir = rabbitmq_url, pool, Path(image_dir)
        self.prefetch, self.retry_delay_s, self.max_not_yet_retries = prefetch, retry_delay_s, max_not_yet_retries
        self._conn: aiormq.abc.AbstractConnection | None = None
        self._channel: aiormq.abc.AbstractChannel | None = None
        self._task: asyncio.Task | None = None
        self.counts = {"images": 0, "results": 0, "corrections": 0, "duplicates": 0, "dead_lettered": 0,
                       "retried": 0, "failures": 0, "discarded": 0}
        self.last_lag_s = 0.0

    # -- storing one message: no AMQP here, so tests can call it directly ------------------------------------
    async def handle(self, queue: str, body: bytes, headers: dict[str, Any], content_type: str | None) -> None:
        try:
            await self._store(queue, body, headers, content_type)
        except repository.ImageDeleted as exc:
            self.counts["discarded"] += exc.images
            log.info("dropped (what was left of) a %s message: %s", queue, exc)
        except asyncpg.DataError as exc:
            # its values, not the database's state (a number past INTEGER, a NUL or a lone surrogate in a text):
            # sent again it fails again, and put back forever it held one of the prefetch slots for good
            raise PoisonMessage(f"the database refuses its data: {type(exc).__name__}: {exc}") from None

    async def _store(self, queue: str, body: bytes, headers: dict[str, Any], content_type: str | None) -> None:
        if queue == IMAGE_QUEUE:
            ids, created = _request_ids(headers), _parse_created(headers)
            relative = content_path(body, content_type or "")

            async def write(path: str) -> None:
                await asyncio.to_thread(write_once, self.image_dir / path, body)

            # written (and synced) before any transaction, so no connection waits for the disk; under the file's
            # lock `write` then finds it there, or writes it again if a deletion took it meanwhile
            await write(relative)
            deleted: list[uuid.UUID] = []
            for rid in ids:
                try:
                    async with self.pool.acquire() as conn, _sql("INSERT image"):
                        await repository.store_image_file(conn, rid, relative, created, write)
                    self.counts["images"] += 1
                except repository.ImageDeleted:  # its owner deleted it: not the pages beside it
                    deleted.append(rid)
            if deleted:
                if len(deleted) == len(ids):  # the file written above goes, or one an earlier try of this left
                    async with self.pool.acquire() as conn, _sql("DELETE image file"):
                        await repository.release_file(conn, relative, _remover(self.image_dir))
                raise repository.ImageDeleted(
                    f"image {deleted[0]} was deleted" if len(deleted) == 1 else
                    f"images {', '.join(map(str, deleted))} were deleted", images=len(deleted))
        elif queue == DATA_QUEUE:
            rid, created = _request_id(headers), _parse_created(headers)
            try:
                result = json.loads(body)
                assert isinstance(result, dict) and isinstance(result.get("lines", []), list)
                repository.box_rows(rid, result.get("lines", []))  # validates every box before touching the db
            except (ValueError, AssertionError, KeyError, TypeError) as exc:
                raise PoisonMessage(f"unparseable OCR result: {type(exc).__name__}: {exc}") from None
            async with self.pool.acquire() as conn, _sql("INSERT image, image_box"):
                fresh = await repository.store_result(conn, rid, result, created)
            self.counts["results" if fresh else "duplicates"] += 1
        elif queue == CORRECTION_QUEUE:
            try:
                correction = json.loads(body)
                uuid.UUID(correction["correction_id"]), uuid.UUID(correction["image_id"])
                if not isinstance(correction["value"], str):
                    raise TypeError("value must be a string")
            except (ValueError, KeyError, TypeError) as exc:
                raise PoisonMessage(f"unparseable correction: {type(exc).__name__}: {exc}") from None
            try:
                async with self.pool.acquire() as conn, _sql("INSERT text_correction"):
                    fresh = await repository.store_correction(conn, correction)
            except asyncpg.ForeignKeyViolationError:
                raise NotYet(f"image {correction['image_id']} is not stored yet") from None
            self.counts["corrections" if fresh else "duplicates"] += 1
        else:
            raise PoisonMessage(f"unknown queue {queue!r}")
        with contextlib.suppress(PoisonMessage):
            self.last_lag_s = max(0.0, (datetime.now(UTC) - _parse_created(headers)).total_seconds())

    # -- AMQP plumbing ---------------------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run_forever(), name="archiver")

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._conn is not None and not self._conn.is_closed:
            with contextlib.suppress(Exception):
                await self._conn.close()

    async def _run_forever(self) -> None:
        backoff = 0.5
        while True:
            try:
                conn, channel = await asyncio.wait_for(open_channel(self.url), 10)
                self._conn, self._channel = conn, channel
                await channel.basic_qos(prefetch_count=self.prefetch)
                for q in (IMAGE_QUEUE, DATA_QUEUE, CORRECTION_QUEUE):
                    await channel.basic_consume(q, self._on_message, no_ack=False)
                log.info("archiver consuming %s", self.url.rsplit("@", 1)[-1])
                backoff = 0.5
                await conn.closing
            except asyncio.CancelledError:
                if not cancelled_by_aiormq():
                    raise
                log.warning("archiver connection lost (judged stuck: no frame for three heartbeats); reconnecting "
                            "in %.1fs", backoff)
            except Exception as exc:  # noqa: BLE001 - broker gone: reconnect with backoff, unacked messages return
                log.warning("archiver connection lost (%s: %s); reconnecting in %.1fs", type(exc).__name__, exc,
                            backoff)
            self._channel = None
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def _on_message(self, message: aiormq.abc.DeliveredMessage) -> None:
        props = message.header.properties
        headers = dict(props.headers or {})
        queue, tag = _delivered(message)
        channel = message.channel
        try:
            with telemetry.span_from(headers, f"consume {queue}", queue=queue,
                                     request_id=str(headers.get("request_id", ""))):
                await self.handle(queue, message.body, headers, props.content_type)
        except PoisonMessage as exc:
            await self._dead_letter(channel, message, queue, str(exc))
            await channel.basic_ack(tag)
            return
        except NotYet as exc:
            retries = int(str(headers.get("x-retries", 0)))
            if retries >= self.max_not_yet_retries:
                await self._dead_letter(channel, message, queue, f"gave up after {retries} retries: {exc}")
            else:
                await asyncio.sleep(self.retry_delay_s)
                headers["x-retries"] = retries + 1
                await channel.basic_publish(message.body, routing_key=queue, properties=Basic.Properties(
                    delivery_mode=2, headers=headers, content_type=props.content_type, message_id=props.message_id))
                self.counts["retried"] += 1
            await channel.basic_ack(tag)
            return
        except Exception as exc:  # noqa: BLE001 - database or disk trouble: keep the message, try again later
            self.counts["failures"] += 1
            log.warning("could not store %s message for %s (%s: %s); requeued", queue, headers.get("request_id"),
                        type(exc).__name__, exc)
            await asyncio.sleep(self.retry_delay_s)
            await channel.basic_nack(tag, requeue=True)
            return
        await channel.basic_ack(tag)

    async def _dead_letter(self, channel: aiormq.abc.AbstractChannel, message: aiormq.abc.DeliveredMessage,
                           queue: str, reason: str) -> None:
        props = message.header.properties
        headers = dict(props.headers or {})
        headers.update({"x-original-queue": queue, "x-reason": reason[:500], "x-dead-lettered-at": time.time()})
        await channel.basic_publish(message.body, routing_key=DEAD_LETTER_QUEUE, properties=Basic.Properties(
            delivery_mode=2, headers=headers, content_type=props.content_type, message_id=props.message_id))
        self.counts["dead_lettered"] += 1
        log.error("dead-lettered a %s message: %s", queue, reason)

    def status(self) -> dict[str, Any]:
        return {"connected": self._channel is not None and not self._channel.is_closed, **self.counts,
                "lag_s": self.last_lag_s}


def _remover(image_dir: str | Path) -> repository.FileAction:
    """Removes a file under ``image_dir`` (gone already is fine: removed by an earlier, failed try)."""
    async def remove(path: str) -> None:
        await asyncio.to_thread((Path(image_dir) / path).unlink, missing_ok=True)
    return remove


async def delete_image(pool: asyncpg.Pool, image_dir: str | Path, image_id: uuid.UUID,
                       pages: list[uuid.UUID] | tuple[uuid.UUID, ...] = ()) -> bool:
    """Forget one image at its owner's request; returns whether any of it had been stored.

    ``pages``: the ids a ``?pages=`` request under its id stores its pages under, deleted with it. Their rows and
    files go now, and whatever of them is still on its way is dropped when it arrives (`handle`).
    """
    async with pool.acquire() as conn, _sql("DELETE image"):
        stored = await repository.delete_images(conn, [image_id, *pages], _remover(image_dir))
    pages_stored = len([i for i in stored if i != image_id])
    log.info("deleted image %s at its owner's request (%s)", image_id,
             "stored" if image_id in stored else f"stored: {pages_stored} pages of it" if pages_stored else
             "not stored yet")
    return bool(stored)


async def apply_retention(pool: asyncpg.Pool, image_dir: str | Path, days: float, now: datetime | None = None) -> int:
    """Delete images older than ``days`` (rows and files together); returns how many went, with one log line."""
    from datetime import timedelta

    cutoff = (now or datetime.now(UTC)) - timedelta(days=days)
    async with pool.acquire() as conn:
        gone = await repository.delete_older_than(conn, cutoff, _remover(image_dir))
    log.info("retention: deleted %d images created before %s", len(gone), cutoff.isoformat())
    return len(gone)
