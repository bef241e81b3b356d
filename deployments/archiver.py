"""Archiver deployment: consumes the queues into PostgreSQL and the image store, runs retention, answers reads."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
from ray import serve

from deployments import metrics, replica_logs
from serve_app.config import StorageSettings
from serve_app.imaging import MEDIA_TYPES
from serve_app.storage import repository
from serve_app.storage.archive import Archiver, apply_retention, content_digest, delete_image, media_type
from serve_app.storage.migrate import migrate
from serve_app.storage.repository import StorageUnavailable

log = logging.getLogger("ray.serve")

T = TypeVar("T")

#: A read of stored results that takes longer than this is given up as `StorageUnavailable`: an unreachable
#: database host would otherwise hold the request for asyncpg's 60 s connect timeout.
READ_TIMEOUT_S = 10.0


#: While the database cannot be reached at start, attempts are spaced 1 s apart, doubling up to this.
CONNECT_BACKOFF_MAX_S = 10.0

#: What `status` and the gauges report before the archiver is consuming.
IDLE_STATUS = {"connected": False, "images": 0, "results": 0, "corrections": 0, "duplicates": 0,
               "dead_lettered": 0, "retried": 0, "failures": 0, "discarded": 0, "lag_s": 0.0}


def stored_type(rec: Any) -> str:
    """A stored upload's media type: as its file's name says (written when it was read), else as its row says.

    The name first: the row's format comes with the answer, which may arrive after the file.
    """
    return media_type(rec["path"]) or MEDIA_TYPES.get(rec["format"] or "", "application/octet-stream")


@serve.deployment(name="Archiver", ray_actor_options={"num_cpus": 0}, num_replicas=1)
class ArchiverDeployment:
    async def __init__(self, settings: dict[str, Any]) -> None:  # type: ignore[misc]  # Serve awaits it
        replica_logs.into_replica_log()
        s = StorageSettings.model_validate(settings).resolved()
        if not s.enabled or not s.database_url or not s.rabbitmq_url:  # `storage.mode: on` does not bring them
            raise ValueError("the archiver needs DATABASE_URL and RABBITMQ_URL (or storage.* settings)")
        self.settings, self.database_url, self.rabbitmq_url = s, s.database_url, s.rabbitmq_url
        self.pool: asyncpg.Pool | None = None
        self.archiver: Archiver | None = None
        self._retention: asyncio.Task | None = None
        self.database_up = False  # as of the last probe (`_report`, every 2 s)
        loop = asyncio.get_running_loop()
        self._start = loop.create_task(self._connect())
        self._gauges = loop.create_task(self._report())

    async def _connect(self) -> None:
        """Reach the database and migrate it, then consume; until then the results wait in the queues.

        Not in the constructor: a database that starts after Ray, or is down at a redeploy, failed the constructor
        over and over until Serve marked the archiver DEPLOY_FAILED (about 20 s), and nothing was stored again.
        """
        s, delay = self.settings, 1.0
        while True:
            try:
                pool = await asyncpg.create_pool(self.database_url, min_size=1, max_size=4, timeout=READ_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001 - refused, unreachable, not accepting: try again later
                log.warning("the database cannot be reached yet (%s: %s); trying again in %g s",
                            type(exc).__name__, exc, delay)
                await asyncio.sleep(delay)
                delay = min(2 * delay, CONNECT_BACKOFF_MAX_S)
                continue
            try:
                async with pool.acquire() as conn:
                    applied = await migrate(conn)
            except Exception as exc:  # noqa: BLE001 - dropped mid-way: migrations are transactional, retry
                pool.terminate()
                log.warning("migrating the database failed (%s: %s); trying again in %g s",
                            type(exc).__name__, exc, delay)
                await asyncio.sleep(delay)
                delay = min(2 * delay, CONNECT_BACKOFF_MAX_S)
                continue
            break
        log.info("database ready (migrations applied now: %s)", applied or "none")
        self.pool = pool
        self.archiver = Archiver(self.rabbitmq_url, pool, s.image_dir, s.archiver_prefetch)
        self.archiver.start()
        self._retention = asyncio.get_running_loop().create_task(self._retention_loop())

    async def _probe(self) -> bool:
        """Whether the database answers a trivial query now (within 2 s)."""
        if self.pool is None:
            return False
        try:
            return await asyncio.wait_for(self.pool.fetchval("SELECT 1"), 2) == 1
        except Exception:  # noqa: BLE001 - any failure means down
            return False

    async def _report(self) -> None:
        gauges = metrics.storage()
        while True:
            self.database_up = await self._probe()
            gauges["database_up"].set(int(self.database_up))
            s = await self.status()
            gauges["archiver_lag_s"].set(s["lag_s"])
            gauges["archiver_connected"].set(int(s["connected"]))
            for kind in ("images", "results", "corrections", "duplicates", "dead_lettered", "discarded"):
                gauges["archived"].set(s[kind], tags={"kind": kind})
            await asyncio.sleep(2)

    async def _retention_loop(self) -> None:
        while True:
            try:
                await apply_retention(self.pool, self.settings.image_dir, self.settings.retention_days)
            except Exception as exc:  # noqa: BLE001 - the next round tries again; never kill the replica
                log.warning("retention failed: %s: %s", type(exc).__name__, exc)
            await asyncio.sleep(self.settings.retention_interval_s)

    async def _read(self, what: str, read: Callable[[], Awaitable[T]]) -> T:
        """A read (or a deletion) of stored results; a failure of the database or disk is `StorageUnavailable`.

        The queries are fixed, so what fails here is the storage itself (refused or dropped connections, a
        timeout, an unreadable file), not the request.
        """
        if self.pool is None:
            raise StorageUnavailable("stored results cannot be read yet: the database has not been reached")
        try:
            return await asyncio.wait_for(read(), READ_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - see above: reported to the caller as unavailable storage
            log.warning("reading %s failed: %s: %s", what, type(exc).__name__, exc)
            raise StorageUnavailable(f"stored results cannot be read right now ({type(exc).__name__})") from None

    async def image(self, image_id: str) -> tuple[bytes, str] | None:
        """The stored image bytes and media type, or None when unknown (or not archived yet).

        Kept for an ingress of the previous release during an in-place update; this release's reads `image_file`.
        """
        found = await self.image_file(image_id)
        return None if found is None else (found[0], found[1])

    async def image_file(self, image_id: str) -> tuple[bytes, str, str | None] | None:
        """The stored image's bytes, media type and tag, or None when unknown (or not archived yet).

        The tag is its SHA-256 as its file's name says it (None where stored by the name of its id): the caller
        need not hash the file to name it.
        """
        async def read() -> tuple[bytes, str, str | None] | None:
            rec = await repository.image_record(self.pool, uuid.UUID(image_id))
            if rec is None or rec["path"] is None:
                return None
            path = Path(self.settings.image_dir) / rec["path"]
            try:
                data = await asyncio.to_thread(path.read_bytes)
            except FileNotFoundError:  # deleted by retention after the row was read
                return None
            return data, stored_type(rec), content_digest(rec["path"])

        return await self._read(f"image {image_id}", read)

    async def image_tag(self, image_id: str) -> str | None:
        """The SHA-256 of the stored upload as its file's name says it (None: unknown, or stored by name of id)."""
        async def read() -> str | None:
            rec = await repository.image_record(self.pool, uuid.UUID(image_id))
            return content_digest(rec["path"]) if rec is not None and rec["path"] else None

        return await self._read(f"image {image_id}", read)

    async def image_head(self, image_id: str) -> tuple[int, str, str] | None:
        """Length, media type and tag of a stored upload, from its file's size and name, without reading it.

        None where it is unknown, or stored by the name of its id (no tag in the name): the caller reads it then.
        """
        async def read() -> tuple[int, str, str] | None:
            rec = await repository.image_record(self.pool, uuid.UUID(image_id))
            tag = content_digest(rec["path"]) if rec is not None and rec["path"] else None
            if rec is None or tag is None:
                return None
            try:
                size = (await asyncio.to_thread((Path(self.settings.image_dir) / rec["path"]).stat)).st_size
            except FileNotFoundError:  # deleted by retention after the row was read
                return None
            return size, stored_type(rec), tag

        return await self._read(f"image {image_id}", read)

    async def data(self, image_id: str) -> dict[str, Any] | None:
        return await self._read(f"the results of {image_id}",
                                lambda: repository.image_data(self.pool, uuid.UUID(image_id)))

    async def stored(self, image_id: str, pages: list[str] | tuple[str, ...] = ()) -> list[str]:
        """``[image_id]`` where it is a stored image, else those of ``pages`` (a document's, in order) that are."""
        async def read() -> list[str]:
            found = await repository.stored_ids(self.pool, [uuid.UUID(i) for i in (image_id, *pages)])
            ids = [str(i) for i in found]
            return [image_id] if image_id in ids else ids

        return await self._read(f"image {image_id}", read)

    async def delete(self, image_id: str, pages: list[str] | tuple[str, ...] = ()) -> bool:
        """Forget an image at its owner's request, stored yet or not, and ``pages`` with it.

        Returns whether any of it had been stored.
        """
        return await self._read(f"deleting {image_id}", lambda: delete_image(
            self.pool, self.settings.image_dir, uuid.UUID(image_id), [uuid.UUID(p) for p in pages]))

    async def status(self) -> dict[str, Any]:
        return {**(self.archiver.status() if self.archiver else IDLE_STATUS), "database_up": self.database_up}

    async def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self._start.cancel()
            if self._retention:
                self._retention.cancel()
            if self.archiver:
                await self.archiver.close()
            if self.pool:
                await self.pool.close()
