"""SQL for results, images and corrections: every write is idempotent by request or correction id.

An image deleted at its owner's request leaves a row in ``image_deleted``, and every write for it takes the same
per-image lock and checks that row first, so that a message still on its way never brings the image back.

Image files are named by their content (`archive.content_path`), so that the pages of one document, or one upload
sent twice, share a file: a row's file goes only with the last row naming it, decided under a per-file lock that
whoever writes the file holds too. Locks are taken in one order, image, then row, then file, so none waits in a
circle.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import asyncpg


class StorageUnavailable(RuntimeError):
    """The database (or the image store) could not answer a read: down, refusing connections, or too slow.

    Raised by the archiver's reads so that the API can answer 503 and ask the client to come back, rather than
    500: the stored data is intact, only out of reach for now.
    """


class ImageDeleted(Exception):
    """The image was deleted at its owner's request: whatever still arrives for it is dropped."""

    def __init__(self, message: str, images: int = 1) -> None:
        super().__init__(message)
        self.images = images  # how many images a message held this for (the pages sharing a file)


#: The first key of the per-image advisory locks (two-key form, apart from the migrations' one-key lock).
IMAGE_LOCK_CLASS = 0x0CA7
#: The first key of the per-file advisory locks.
FILE_LOCK_CLASS = 0x0CA8
#: Rows retention deletes per transaction: each file it may remove is locked until the end of one, and the locks of
#: a transaction share PostgreSQL's lock table (``max_locks_per_transaction`` per connection).
RETENTION_BATCH = 500

#: Called with a file's path (relative to the image directory) while its lock is held.
FileAction = Callable[[str], Awaitable[None]]


def _lock_key(image_id: uuid.UUID) -> int:
    return int.from_bytes(image_id.bytes[:4], "big", signed=True)


async def _lock(conn: asyncpg.Connection, image_id: uuid.UUID) -> None:
    """Inside a transaction: wait for any other write or deletion of this image, until the transaction ends."""
    await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", IMAGE_LOCK_CLASS, _lock_key(image_id))


async def _lock_file(conn: asyncpg.Connection, path: str) -> None:
    """Inside a transaction: wait for anyone writing, or deciding to remove, the file at ``path``."""
    key = int.from_bytes(uuid.uuid5(uuid.NAMESPACE_URL, path).bytes[:4], "big", signed=True)
    await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", FILE_LOCK_CLASS, key)


async def _release_files(conn: asyncpg.Connection, paths: list[str | None], remove: FileAction) -> None:
    """Inside the transaction that deleted rows naming ``paths``: remove each file no other row names.

    Decided and done under the file's lock, so a row written meanwhile for the same file either is seen here, and
    keeps it, or waits and writes the file again.
    """
    for path in sorted({p for p in paths if p}):
        await _lock_file(conn, path)
        if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM image WHERE path = $1)", path):
            await remove(path)


async def release_file(conn: asyncpg.Connection, path: str, remove: FileAction) -> None:
    """Remove the file at ``path`` if no row names it.

    Such a file was written by a try whose commit failed, and its image deleted before the message came again.
    """
    async with conn.transaction():
        await _release_files(conn, [path], remove)


async def _writing(conn: asyncpg.Connection, image_id: uuid.UUID) -> None:
    """Inside a transaction: take the image's lock, then refuse one deleted."""
    await _lock(conn, image_id)
    if await is_deleted(conn, image_id):
        raise ImageDeleted(f"image {image_id} was deleted")


async def is_deleted(conn: asyncpg.Connection, image_id: uuid.UUID) -> bool:
    """Whether the image was deleted at its owner's request."""
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM image_deleted WHERE id = $1)", image_id))


def _int(v: float) -> int:
    return int(round(v))


def box_rows(image_id: uuid.UUID, lines: list[dict[str, Any]]) -> list[tuple]:
    """``image_box`` rows: one per line (word_index NULL) and one per word."""
    rows = []
    for li, line in enumerate(lines):
        for wi, item in [(None, line), *enumerate(line.get("words", []))]:
            x0, y0, x1, y1 = item["box"]
            rows.append((image_id, li, wi, _int(x0), _int(y0), _int(x1 - x0), _int(y1 - y0), item["text"],
                         item.get("confidence")))
    return rows


async def store_image_file(conn: asyncpg.Connection, image_id: uuid.UUID, path: str, created: datetime,
                           write: FileAction) -> None:
    """Record that the image's file is at ``path``, and ``write`` it there; `ImageDeleted` if it was deleted.

    The file is written under its lock, after the row: whoever removes it either sees the row (once committed) or
    has removed it before ``write`` runs.
    """
    async with conn.transaction():
        await _writing(conn, image_id)
        await conn.execute(
            "INSERT INTO image (id, path, creation_timestamp) VALUES ($1, $2, $3) "
            "ON CONFLICT (id) DO UPDATE SET path = EXCLUDED.path",
            image_id, path, created,
        )
        await _lock_file(conn, path)
        await write(path)


async def store_result(
    conn: asyncpg.Connection, image_id: uuid.UUID, result: dict[str, Any], created: datetime
) -> bool:
    """Store an OCR answer once; returns False when it was already stored (a redelivery), `ImageDeleted`."""
    img = result.get("image", {})
    models = result.get("models", {})
    async with conn.transaction():
        await _writing(conn, image_id)
        await conn.execute(
            "INSERT INTO image (id, creation_timestamp, width, height, format, page, pages, rotation, region, "
            "detector_model, recognizer_model, timings) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) "
            "ON CONFLICT (id) DO UPDATE SET width = EXCLUDED.width, height = EXCLUDED.height, "
            "format = EXCLUDED.format, page = EXCLUDED.page, pages = EXCLUDED.pages, rotation = EXCLUDED.rotation, "
            "region = EXCLUDED.region, detector_model = EXCLUDED.detector_model, "
            "recognizer_model = EXCLUDED.recognizer_model, timings = EXCLUDED.timings",
            image_id, created, img.get("width"), img.get("height"), img.get("format"), img.get("page", 1),
            img.get("pages", 1), img.get("rotation", 0), img.get("region"), models.get("detector"),
            models.get("recognizer"), json.dumps(result.get("timings", {})),
        )
        stored = await conn.fetchval("SELECT data_stored FROM image WHERE id = $1 FOR UPDATE", image_id)
        if stored:
            return False
        await conn.executemany(
            "INSERT INTO image_box (image_id, line_index, word_index, start_x, start_y, width, height, text, "
            "confidence) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            box_rows(image_id, result.get("lines", [])),
        )
        await conn.execute("UPDATE image SET data_stored = TRUE WHERE id = $1", image_id)
    return True


async def store_correction(conn: asyncpg.Connection, correction: dict[str, Any]) -> bool:
    """Store a correction once (by correction_id).

    Raises ForeignKeyViolationError if its image is not there yet, `ImageDeleted` if it never will be.
    """
    image_id = uuid.UUID(correction["image_id"])
    async with conn.transaction():
        await _writing(conn, image_id)
        status = await conn.execute(
            "INSERT INTO text_correction (correction_id, image_id, line_index, value) VALUES ($1, $2, $3, $4) "
            "ON CONFLICT (correction_id) DO NOTHING",
            uuid.UUID(correction["correction_id"]), image_id, correction.get("line_index"), correction["value"],
        )
    return status.endswith(" 1")


async def image_record(pool: asyncpg.Pool, image_id: uuid.UUID) -> asyncpg.Record | None:
    return await pool.fetchrow("SELECT id, path, format, creation_timestamp FROM image WHERE id = $1", image_id)


async def stored_ids(pool: asyncpg.Pool, ids: list[uuid.UUID]) -> list[uuid.UUID]:
    """Those of ``ids`` that are stored images, in the order given."""
    found = {r["id"] for r in await pool.fetch("SELECT id FROM image WHERE id = ANY($1::uuid[])", ids)}
    return [i for i in ids if i in found]


async def image_data(pool: asyncpg.Pool, image_id: uuid.UUID) -> dict[str, Any] | None:
    """Boxes (lines with their words) and corrections of one image, or None if unknown.

    ``results_stored`` is False while only the image's file has arrived: its answer (and so its lines) is still on
    its way through ``imageDataQueue``, and an empty ``lines`` then says nothing about the image.
    """
    async with pool.acquire() as conn:
        img = await conn.fetchrow("SELECT * FROM image WHERE id = $1", image_id)
        if img is None:
            return None
        boxes = await conn.fetch(
            "SELECT line_index, word_index, start_x, start_y, width, height, text, confidence FROM image_box "
            "WHERE image_id = $1 ORDER BY line_index, word_index NULLS FIRST", image_id)
        corrections = await conn.fetch(
            "SELECT correction_id, line_index, value, created FROM text_correction WHERE image_id = $1 ORDER BY id",
            image_id)
    lines: list[dict[str, Any]] = []
    for b in boxes:
        item = {"box": [b["start_x"], b["start_y"], b["start_x"] + b["width"], b["start_y"] + b["height"]],
                "text": b["text"], "confidence": b["confidence"]}
        if b["word_index"] is None:
            lines.append({**item, "words": []})
        else:
            lines[-1]["words"].append(item)
    return {
        "id": str(img["id"]),
        "created": img["creation_timestamp"].isoformat(),
        "image": {"width": img["width"], "height": img["height"], "format": img["format"], "page": img["page"],
                  "pages": img["pages"], "rotation": img["rotation"], "stored": img["path"] is not None,
                  **({"region": list(img["region"])} if img["region"] is not None else {})},
        "models": {"detector": img["detector_model"], "recognizer": img["recognizer_model"]},
        "results_stored": bool(img["data_stored"]),
        "lines": lines,
        "corrections": [{"id": str(c["correction_id"]), "line_index": c["line_index"], "value": c["value"],
                         "created": c["created"].isoformat()} for c in corrections],
    }


async def delete_older_than(conn: asyncpg.Connection, cutoff: datetime, remove: FileAction,
                            batch: int = RETENTION_BATCH) -> list[uuid.UUID]:
    """Delete images created before ``cutoff`` (boxes and corrections cascade), and the files only they named.

    In transactions of ``batch`` rows; returns the ids deleted. The marks of images deleted before ``cutoff`` go
    too: nothing that old is kept anyway.
    """
    gone: list[uuid.UUID] = []
    while True:
        async with conn.transaction():
            rows = await conn.fetch(
                "DELETE FROM image WHERE id IN (SELECT id FROM image WHERE creation_timestamp < $1 "
                "ORDER BY creation_timestamp LIMIT $2) RETURNING id, path", cutoff, batch)
            await _release_files(conn, [r["path"] for r in rows], remove)
        gone += [r["id"] for r in rows]
        if len(rows) < batch:
            break
    await conn.execute("DELETE FROM image_deleted WHERE deleted_at < $1", cutoff)
    return gone


async def delete_images(conn: asyncpg.Connection, image_ids: list[uuid.UUID], remove: FileAction) -> list[uuid.UUID]:
    """Delete images (boxes and corrections cascade) and mark each deleted, whether it is stored yet or not.

    Their files go too unless another image names them. One transaction, the images' locks taken in one order
    (another deletion of some of the same never waits in a circle). Returns the ids that had been stored.
    """
    ids = list(dict.fromkeys(image_ids))
    async with conn.transaction():
        for image_id in sorted(ids, key=_lock_key):
            await _lock(conn, image_id)
        await conn.execute("INSERT INTO image_deleted (id) SELECT unnest($1::uuid[]) ON CONFLICT (id) DO NOTHING", ids)
        rows = await conn.fetch("DELETE FROM image WHERE id = ANY($1::uuid[]) RETURNING id, path", ids)
        await _release_files(conn, [r["path"] for r in rows], remove)
    return [r["id"] for r in rows]
