"""Storage against the real PostgreSQL and RabbitMQ: migrations, spool, publish -> archive, faults, retention."""

import asyncio
import contextlib
import json
import uuid
from datetime import UTC, datetime, timedelta

import aiormq
import asyncpg
import pytest

from serve_app.storage import repository
from serve_app.storage.archive import EXTENSIONS, Archiver, apply_retention, content_path, delete_image, media_type
from serve_app.storage.messages import (
    DEAD_LETTER_QUEUE,
    IMAGE_QUEUE,
    Message,
    correction_message,
    data_message,
    image_message,
)
from serve_app.storage.migrate import migrate, migration_files
from serve_app.storage.publisher import Publisher
from serve_app.storage.spool import Spool, SpoolFull
from tests.conftest import _admin


def result(n_lines: int = 2) -> dict:
    lines = [{"box": [10, 20 + 40 * i, 200, 50 + 40 * i], "text": f"line {i}", "confidence": 0.9,
              "words": [{"box": [10, 20 + 40 * i, 60, 50 + 40 * i], "text": "line", "confidence": 0.95},
                        {"box": [70, 20 + 40 * i, 200, 50 + 40 * i], "text": str(i), "confidence": 0.85}]}
             for i in range(n_lines)]
    return {"image": {"width": 640, "height": 480, "format": "PNG"}, "lines": lines,
            "models": {"detector": "ctpn@x", "recognizer": "crnn@y"}, "timings": {"total_ms": 12.0}}


async def wait_for(predicate, timeout: float = 30.0, interval: float = 0.1):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last counts {getattr(_done, 'last', None)})")
        await asyncio.sleep(interval)


@pytest.fixture
def run():
    loop = asyncio.new_event_loop()
    yield loop.run_until_complete
    loop.close()


async def fresh_pool(pg_url: str) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(pg_url, min_size=1, max_size=4)
    async with pool.acquire() as conn:
        await migrate(conn)
        await conn.execute("TRUNCATE image, image_deleted CASCADE")
    return pool


@contextlib.asynccontextmanager
async def pipeline(pg_url: str, amqp_url: str, tmp_path, spool: tuple[int, int] = (1000, 10**8),
                   publisher_kw: dict | None = None, archiver_kw: dict | None = None):
    """A fresh schema, a started publisher (spool under tmp_path) and archiver; all closed afterwards."""
    pool = await fresh_pool(pg_url)
    publisher = Publisher(amqp_url, Spool(tmp_path / "spool", *spool), **(publisher_kw or {}))
    archiver = Archiver(amqp_url, pool, tmp_path / "images", **(archiver_kw or {}))
    publisher.start()
    archiver.start()
    try:
        yield pool, publisher, archiver
    finally:
        await publisher.close()
        await archiver.close()
        await pool.close()


async def counts(pool: asyncpg.Pool) -> tuple[int, int, int]:
    return (await pool.fetchval("SELECT count(*) FROM image WHERE data_stored AND path IS NOT NULL"),
            await pool.fetchval("SELECT count(*) FROM image_box"),
            await pool.fetchval("SELECT count(*) FROM text_correction"))


def test_migrations_apply_once_even_when_two_replicas_race(run, pg_url):
    async def go():
        conns = [await asyncpg.connect(pg_url) for _ in range(2)]
        try:
            results = await asyncio.gather(*(migrate(c) for c in conns))
            again = await migrate(conns[0])
            versions = [r["version"] for r in await conns[0].fetch("SELECT version FROM schema_migrations")]
            tables = {r["tablename"] for r in await conns[0].fetch("SELECT tablename FROM pg_tables")}
            return results, again, versions, tables
        finally:
            for c in conns:
                await c.close()

    results, again, versions, tables = run(go())
    first, second = sorted(results, key=len)
    every = [v for v, _ in migration_files()]
    assert first == [] and set(second) <= set(every)  # one replica applied what was pending (or an earlier run did)
    assert again == [] and versions == every
    assert {"image", "image_box", "text_correction"} <= tables


def test_spool_is_bounded_survives_restart_and_drops_half_written_files(tmp_path):
    spool = Spool(tmp_path, max_messages=3, max_bytes=10_000)
    paths = [spool.put(image_message(str(uuid.uuid4()), b"x" * 100, "image/png")) for _ in range(3)]
    with pytest.raises(SpoolFull):
        spool.put(image_message(str(uuid.uuid4()), b"x", "image/png"))
    assert spool.full and spool.depth == 3
    (tmp_path / "000-junk.tmp").write_bytes(b"half")
    reopened = Spool(tmp_path, max_messages=3, max_bytes=10_000)
    assert reopened.pending() == paths and not list(tmp_path.glob("*.tmp"))
    msg = reopened.load(paths[0])
    assert msg.queue == IMAGE_QUEUE and msg.body == b"x" * 100 and msg.headers["request_id"]
    reopened.remove(paths[0])
    assert reopened.depth == 2 and not reopened.full
    # how long the oldest has waited, from the time in its name: across the reopening, and once it has gone
    born = [int(p.name.split("-", 1)[0]) for p in paths]
    assert reopened.oldest_age_s(now_ns=born[1] + 5 * 10**9) == 5.0
    reopened.remove(paths[1])
    assert reopened.oldest_age_s(now_ns=born[1] + 5 * 10**9) == (born[1] - born[2]) / 1e9 + 5.0
    reopened.remove(paths[2])
    assert reopened.depth == 0 and reopened.oldest_age_s() == 0.0


@pytest.fixture
def small_disk(tmp_path):
    """A real 64 kB file system (tmpfs), so that writes fail with ENOSPC as on a full disk."""
    import subprocess

    where = tmp_path / "small"
    where.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs needs root: no small disk to fill")
    yield where
    subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_full_disk_refuses_a_message_cleanly_and_reports_the_spool_full(tmp_path, small_disk):
    """A write the disk refuses is a refused message (counted, logged, ``submit`` False), not an exception that
    loses it silently; the spool reports itself full (so ``/readyz`` turns 503) until a write succeeds again."""
    publisher = Publisher("amqp://guest:guest@127.0.0.1:1/none", Spool(small_disk, 1000, 10**9))
    assert publisher.submit(image_message(str(uuid.uuid4()), b"x" * 20_000, "image/png"))
    big = image_message(str(uuid.uuid4()), b"x" * 80_000, "image/png")
    assert publisher.submit(big) is False
    status = publisher.status()
    assert status["dropped"] == 1 and status["spool_full"] and status["spool_depth"] == 1
    assert not list(small_disk.glob("*.tmp")) and len(list(small_disk.glob("*.msg"))) == 1
    reopened_count = Spool(small_disk, 1000, 10**9).size_bytes
    assert publisher.spool.size_bytes == reopened_count  # the byte count did not drift
    assert publisher.submit(image_message(str(uuid.uuid4()), b"x" * 100, "image/png"))
    assert not publisher.status()["spool_full"] and publisher.status()["spool_depth"] == 2


def test_results_images_and_corrections_are_archived_exactly_once(run, pg_url, amqp_url, tmp_path):
    async def go():
        async with pipeline(pg_url, amqp_url, tmp_path) as (pool, publisher, archiver):
            ids = [str(uuid.uuid4()) for _ in range(5)]
            for rid in ids:
                publisher.submit(image_message(rid, b"\x89PNG fake " + rid.encode(), "image/png"))
                publisher.submit(data_message(rid, result(2)))
            dup = data_message(ids[0], result(2))
            publisher.submit(dup)  # a redelivery of the same result must not add rows
            cid = str(uuid.uuid5(uuid.NAMESPACE_URL, ids[1]))
            publisher.submit(correction_message(ids[1], "line zero fixed", 0, correction_id=cid))
            publisher.submit(correction_message(ids[1], "line zero fixed", 0, correction_id=cid))  # sent twice
            await wait_for(lambda: _done(pool, (5, 5 * 6, 1)))
            await asyncio.sleep(0.5)  # give a wrong extra row the chance to appear
            final = await counts(pool)
            data = await repository.image_data(pool, uuid.UUID(ids[1]))
            files = {str(p.relative_to(tmp_path / "images")): p.read_bytes()
                     for p in (tmp_path / "images").rglob("*.png")}
            paths = {str(r["id"]): r["path"] for r in await pool.fetch("SELECT id, path FROM image")}
            status = publisher.status(), archiver.status()
        return ids, final, data, files, paths, status

    ids, final, data, files, paths, (pub, arc) = run(go())
    assert final == (5, 30, 1)
    sent = {rid: b"\x89PNG fake " + rid.encode() for rid in ids}
    assert {files[paths[rid]] for rid in ids} == set(sent.values()) and len(files) == 5  # each row's file, as sent
    assert all(paths[rid] == content_path(sent[rid], "image/png") for rid in ids)
    assert {media_type(paths[rid]) for rid in ids} == {"image/png"}  # what it is served as, before its answer too
    assert [ln["text"] for ln in data["lines"]] == ["line 0", "line 1"]
    assert [w["text"] for w in data["lines"][0]["words"]] == ["line", "0"]
    assert data["corrections"][0]["value"] == "line zero fixed" and data["image"]["stored"]
    assert pub["spool_depth"] == 0 and pub["published"] == 13
    assert arc["duplicates"] == 2 and arc["results"] == 5


async def _done(pool, expected):
    got = await counts(pool)
    _done.last = got  # type: ignore[attr-defined]
    return got == expected


def test_poison_goes_to_the_dead_letter_queue_and_the_next_message_is_stored(run, pg_url, amqp_url, tmp_path):
    async def go():
        async with pipeline(pg_url, amqp_url, tmp_path, spool=(100, 10**7)) as (pool, publisher, _):
            rid = str(uuid.uuid4())
            publisher.submit(Message("imageDataQueue", b"{not json", {"request_id": rid}))
            publisher.submit(Message("imageDataQueue", b"{}", {"request_id": "not-a-uuid"}))
            publisher.submit(image_message(rid, b"img", "image/jpeg"))
            publisher.submit(data_message(rid, result(1)))
            await wait_for(lambda: _done(pool, (1, 3, 0)))
            conn = await aiormq.connect(amqp_url)
            ch = await conn.channel()
            dead = []
            for _ in range(2):
                msg = await ch.basic_get(DEAD_LETTER_QUEUE, no_ack=True)
                dead.append(msg.header.properties.headers)
            await conn.close()
        return dead

    dead = run(go())
    reasons = sorted(h["x-reason"] for h in dead)
    assert "unparseable OCR result" in reasons[1] and "request_id" in reasons[0]
    assert all(h["x-original-queue"] == "imageDataQueue" for h in dead)


def test_a_message_the_database_refuses_as_data_is_dead_lettered_not_retried_forever(run, pg_url, amqp_url,
                                                                                      tmp_path):
    """A line index past PostgreSQL's integer, a NUL character, a lone surrogate: no retry can ever store them.
    Before, each was put back on its queue forever, and more of them than the archiver's prefetch (here 4) stopped
    it from storing anything else."""
    refused = [("x", 2**31), ("a\x00b", 0), ("\ud800", 0)] * 2

    async def go():
        async with pipeline(pg_url, amqp_url, tmp_path, archiver_kw={"prefetch": 4}) as (pool, publisher, _):
            first, later = str(uuid.uuid4()), str(uuid.uuid4())
            publisher.submit(image_message(first, b"img", "image/png"))
            publisher.submit(data_message(first, result(1)))
            await wait_for(lambda: _done(pool, (1, 3, 0)))
            for value, line in refused:
                publisher.submit(correction_message(first, value, line))
            publisher.submit(correction_message(first, "stored all the same", 0))
            publisher.submit(image_message(later, b"img", "image/png"))
            publisher.submit(data_message(later, result(1)))
            await wait_for(lambda: _done(pool, (2, 6, 1)), timeout=30)
            conn = await aiormq.connect(amqp_url)
            ch = await conn.channel()
            dead = []
            for _ in range(len(refused)):
                msg = await ch.basic_get(DEAD_LETTER_QUEUE, no_ack=True)
                dead.append(msg.header.properties.headers)
            await conn.close()
            corrections = (await repository.image_data(pool, uuid.UUID(first)))["corrections"]
        return dead, corrections

    dead, corrections = run(go())
    assert [c["value"] for c in corrections] == ["stored all the same"]
    assert all("the database refuses its data" in h["x-reason"] for h in dead), [h["x-reason"] for h in dead]
    assert all(h["x-original-queue"] == "textCorrectionQueue" for h in dead)


def test_broker_stopped_during_a_burst_loses_nothing(run, pg_url, amqp_url, tmp_path):
    """The real broker stops (rabbitmqctl stop_app) mid-burst; everything is stored once after it returns."""
    from tests.conftest import rabbitmqctl

    async def go():
        async with pipeline(pg_url, amqp_url, tmp_path, publisher_kw={"publish_timeout_s": 2, "max_backoff_s": 1}) as (
            pool, publisher, _):
            ids = [str(uuid.uuid4()) for _ in range(20)]
            for rid in ids[:5]:
                publisher.submit(image_message(rid, b"a", "image/png"))
                publisher.submit(data_message(rid, result(1)))
            await asyncio.to_thread(rabbitmqctl, "stop_app")
            try:
                for rid in ids[5:]:
                    assert publisher.submit(image_message(rid, b"b", "image/png"))
                    assert publisher.submit(data_message(rid, result(1)))
                await asyncio.sleep(1)
                during = publisher.status()
            finally:
                await asyncio.to_thread(rabbitmqctl, "start_app")
            await wait_for(lambda: _done(pool, (20, 60, 0)), timeout=90)
            await asyncio.sleep(0.5)
            final = await counts(pool)
        return during, final

    during, final = run(go())
    assert during["spool_depth"] > 0 and not during["connected"]
    assert final == (20, 60, 0)


def _broker_pid() -> int:
    import re
    import subprocess

    status = subprocess.run(["rabbitmqctl", "-q", "status"], check=True, capture_output=True, text=True, timeout=60)
    return int(re.search(r"OS PID: (\d+)", status.stdout).group(1))


def test_a_broker_that_hangs_past_three_heartbeats_is_reconnected_and_loses_nothing(run, pg_url, amqp_url, tmp_path):
    """The broker's process stops answering (SIGSTOP: a hung broker, or a network dropping packets without a reset)
    for longer than three heartbeats, while a publish waits for its confirm. aiormq then judges both connections
    stuck and cancels them; before, that cancellation reached the publisher's and the archiver's reconnecting loops
    as if they had been cancelled themselves, and ended them: nothing was published or stored again until the
    replicas restarted. Now both reconnect when the broker answers again, and everything is stored once."""
    import os
    import signal

    pid = _broker_pid()
    try:
        os.kill(pid, 0)
    except PermissionError:
        pytest.skip("the broker's process is not ours to stop")
    stuck_after = 6  # aiormq's rule: no frame for (heartbeat + 1) * 3 seconds

    async def go():
        async with pipeline(pg_url, amqp_url + "?heartbeat=1", tmp_path,
                            publisher_kw={"publish_timeout_s": 3 * stuck_after, "max_backoff_s": 1}) as (
                pool, publisher, archiver):
            ids = [str(uuid.uuid4()) for _ in range(10)]
            for rid in ids[:5]:
                publisher.submit(image_message(rid, b"a", "image/png"))
                publisher.submit(data_message(rid, result(1)))
            await wait_for(lambda: _done(pool, (5, 15, 0)), timeout=30)
            os.kill(pid, signal.SIGSTOP)
            try:
                for rid in ids[5:]:
                    assert publisher.submit(image_message(rid, b"b", "image/png"))
                    assert publisher.submit(data_message(rid, result(1)))
                await asyncio.sleep(stuck_after + 3)
                during = {**publisher.status(), "archiver_connected": archiver.status()["connected"]}
            finally:
                os.kill(pid, signal.SIGCONT)
            await wait_for(lambda: _done(pool, (10, 30, 0)), timeout=90)
            await asyncio.sleep(0.5)
            return during, await counts(pool), publisher.status(), archiver.status()

    during, final, published, archived = run(go())
    assert during["spool_depth"] > 0 and during["publish_failures"] >= 1, during  # it saw the connection go
    # what the sidecar's and archiver's gauges report (the alerts OCRSpoolNotDraining, OCRArchiverNotConsuming)
    assert during["oldest_spooled_s"] > stuck_after and not during["archiver_connected"], during
    assert final == (10, 30, 0)
    assert published["connected"] and published["spool_depth"] == 0 and published["oldest_spooled_s"] == 0
    assert archived["connected"]


def test_database_unavailable_acknowledges_nothing_and_loses_nothing(run, pg_url, pg_database, amqp_url, tmp_path):
    """The test database refuses connections (ALLOW_CONNECTIONS false + backends terminated) while messages arrive."""

    async def go():
        slow_retry = {"retry_delay_s": 0.2}
        async with pipeline(pg_url, amqp_url, tmp_path, archiver_kw=slow_retry) as (pool, publisher, archiver):
            await _admin(f'ALTER DATABASE "{pg_database}" ALLOW_CONNECTIONS false')
            await _admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{pg_database}'")
            try:
                ids = [str(uuid.uuid4()) for _ in range(6)]
                for rid in ids:
                    publisher.submit(image_message(rid, b"c", "image/png"))
                    publisher.submit(data_message(rid, result(1)))
                await wait_for(lambda: _async(archiver.counts["failures"] >= 3), timeout=30)
                conn = await aiormq.connect(amqp_url)
                ch = await conn.channel()
                ok = await ch.queue_declare("imageDataQueue", durable=True, passive=True)
                unacked_or_ready = ok.message_count
                await conn.close()
            finally:
                await _admin(f'ALTER DATABASE "{pg_database}" ALLOW_CONNECTIONS true')
            await wait_for(lambda: _done(pool, (6, 18, 0)), timeout=60)
            final = await counts(pool)
        return unacked_or_ready, final

    # messages are either waiting in the queue or held unacknowledged by the archiver, never dropped
    _, final = run(go())
    assert final == (6, 18, 0)


async def _async(value):
    return value


def test_archiver_killed_mid_stream_redelivers_without_duplicates(run, pg_url, amqp_url, tmp_path):
    N = 200  # enough that the first archiver cannot finish between two polls on an idle machine
    async def go():
        pool = await fresh_pool(pg_url)
        publisher = Publisher(amqp_url, Spool(tmp_path / "spool", 1000, 10**8))
        publisher.start()
        ids = [str(uuid.uuid4()) for _ in range(N)]
        for rid in ids:
            publisher.submit(image_message(rid, b"d", "image/png"))
            publisher.submit(data_message(rid, result(1)))
        await wait_for(lambda: _async(publisher.status()["spool_depth"] == 0))
        first = Archiver(amqp_url, pool, tmp_path / "images", prefetch=8)
        first.start()
        await wait_for(lambda: _async(first.counts["results"] >= 3))
        await first.close()  # the connection drops with messages in flight: the broker redelivers them
        stored_then = await pool.fetchval("SELECT count(*) FROM image WHERE data_stored")
        second = Archiver(amqp_url, pool, tmp_path / "images")
        second.start()
        await wait_for(lambda: _done(pool, (N, 3 * N, 0)), timeout=60)
        await asyncio.sleep(0.5)
        final = await counts(pool)
        await second.close()
        await publisher.close()
        await pool.close()
        return stored_then, final

    stored_then, final = run(go())
    assert 3 <= stored_then < N  # the first archiver really was stopped mid-stream
    assert final == (N, 3 * N, 0)


def test_retention_deletes_exactly_the_old_images_rows_and_files(run, pg_url, tmp_path):
    async def go():
        pool = await fresh_pool(pg_url)
        archiver = Archiver("amqp://unused", pool, tmp_path)
        now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
        # "again" is the old "edge" upload sent again lately: one file, kept for the row that still names it
        ages = {"old": (9, b"old"), "edge": (7.01, b"edge"), "young": (6.99, b"young"), "new": (0, b"new"),
                "again": (1, b"edge")}
        ids = {}
        for name, (days, data) in ages.items():
            rid = str(uuid.uuid4())
            ids[name] = rid
            created = (now - timedelta(days=days)).isoformat()
            await archiver.handle("imageQueue", data, {"request_id": rid, "created_at": created}, "image/png")
            await archiver.handle("imageDataQueue", json.dumps(result(1)).encode(),
                                  {"request_id": rid, "created_at": created}, None)
        deleted = await apply_retention(pool, tmp_path, days=7, now=now)
        left = {str(r["id"]) for r in await pool.fetch("SELECT id FROM image")}
        boxes = await pool.fetchval("SELECT count(*) FROM image_box")
        files = {p.read_bytes() for p in tmp_path.rglob("*.png")}
        await pool.close()
        return ids, deleted, left, boxes, files

    ids, deleted, left, boxes, files = run(go())
    assert deleted == 2
    assert left == {ids["young"], ids["new"], ids["again"]}
    assert files == {b"young", b"new", b"edge"}
    assert boxes == 3 * 3


def test_retention_works_through_a_backlog_in_batches(run, pg_url, tmp_path):
    """Each batch is its own transaction (its file locks fill PostgreSQL's lock table otherwise): all still go."""
    async def go():
        pool = await fresh_pool(pg_url)
        archiver = Archiver("amqp://unused", pool, tmp_path)
        now = datetime.now(UTC)
        for i in range(23):
            created = (now - timedelta(days=8 if i < 20 else 1)).isoformat()
            await archiver.handle("imageQueue", f"img {i % 12}".encode(),
                                  {"request_id": str(uuid.uuid4()), "created_at": created}, "image/png")
        async with pool.acquire() as conn:
            gone = await repository.delete_older_than(conn, now - timedelta(days=7), _unlink(tmp_path), batch=3)
        left = await pool.fetchval("SELECT count(*) FROM image")
        files = sorted(p.read_bytes() for p in tmp_path.rglob("*.png"))
        await pool.close()
        return gone, left, files

    gone, left, files = run(go())
    assert len(gone) == 20 and len(set(gone)) == 20 and left == 3
    assert files == [b"img 10", b"img 8", b"img 9"]  # the young uploads 20-22's, each old uploads 8-10's too


def _unlink(image_dir):
    async def remove(path: str) -> None:
        (image_dir / path).unlink()
    return remove


async def _stored_of(pool: asyncpg.Pool, image_dir, rid: str, data: bytes) -> tuple[int, int, int, list[str]]:
    """(image rows, box rows, corrections, files) of one image, whose upload was ``data``."""
    image_id = uuid.UUID(rid)
    file = image_dir / content_path(data, "image/png")
    return (await pool.fetchval("SELECT count(*) FROM image WHERE id = $1", image_id),
            await pool.fetchval("SELECT count(*) FROM image_box WHERE image_id = $1", image_id),
            await pool.fetchval("SELECT count(*) FROM text_correction WHERE image_id = $1", image_id),
            [file.name] if file.exists() else [])


def test_an_image_deleted_is_gone_and_whatever_arrives_for_it_later_is_dropped(run, pg_url, tmp_path):
    async def go():
        pool = await fresh_pool(pg_url)
        archiver = Archiver("amqp://unused", pool, tmp_path)
        stored, early, kept = (str(uuid.uuid4()) for _ in range(3))

        async def arrive(rid: str) -> None:  # the three messages of one answer and its correction
            await archiver.handle("imageQueue", rid.encode(), {"request_id": rid}, "image/png")
            await archiver.handle("imageDataQueue", json.dumps(result(2)).encode(), {"request_id": rid}, None)
            await archiver.handle("textCorrectionQueue", json.dumps(
                {"correction_id": str(uuid.uuid4()), "image_id": rid, "value": "fixed"}).encode(), {}, None)

        for rid in (stored, kept):
            await arrive(rid)
        before = await _stored_of(pool, tmp_path, stored, stored.encode())
        was_stored = [await delete_image(pool, tmp_path, uuid.UUID(stored)),
                      await delete_image(pool, tmp_path, uuid.UUID(early))]  # deleted before anything arrived
        gone = await _stored_of(pool, tmp_path, stored, stored.encode())
        for rid in (stored, early):  # redeliveries, and an answer still in a queue when it was deleted
            await arrive(rid)
        after = [await _stored_of(pool, tmp_path, rid, rid.encode()) for rid in (stored, early, kept)]
        again = await delete_image(pool, tmp_path, uuid.UUID(stored))
        counts = dict(archiver.counts)
        await pool.close()
        return before, was_stored, gone, after, again, counts

    before, was_stored, gone, after, again, counts = run(go())
    assert before == (1, 6, 1, [before[3][0]]) and before[3][0].endswith(".png")
    assert was_stored == [True, False] and again is False
    assert gone == (0, 0, 0, [])
    assert after[:2] == [(0, 0, 0, [])] * 2  # nothing came back, not even a file
    assert after[2][:3] == (1, 6, 1)  # the other image is untouched
    assert counts["discarded"] == 6 and counts["images"] == 2 and counts["results"] == 2


def test_a_deletion_racing_the_answers_on_their_way_always_wins(run, pg_url, tmp_path):
    """Whichever runs first, a file written or a row inserted while an image is deleted never outlives it, and a
    file shared with an image kept (the same upload sent by others) outlives every deletion.

    40 images of one upload are each deleted as they arrive; of 20 images of another, every other one is.
    """
    async def go():
        pool = await fresh_pool(pg_url)
        archiver = Archiver("amqp://unused", pool, tmp_path)
        ids, shared = [str(uuid.uuid4()) for _ in range(40)], [str(uuid.uuid4()) for _ in range(20)]

        async def race(i: int, rid: str, data: bytes, delete: bool) -> None:
            arriving = [archiver.handle("imageQueue", data, {"request_id": rid}, "image/png"),
                        archiver.handle("imageDataQueue", json.dumps(result(1)).encode(), {"request_id": rid}, None)]
            deleting = [delete_image(pool, tmp_path, uuid.UUID(rid))] if delete else []
            await asyncio.gather(*(arriving + deleting if i % 2 else deleting + arriving))

        await asyncio.gather(*(race(i, rid, b"img", True) for i, rid in enumerate(ids)),
                             *(race(i // 2, rid, b"shared", i % 2 == 0) for i, rid in enumerate(shared)))
        left = [await _stored_of(pool, tmp_path, rid, b"img") for rid in ids]
        kept = [await _stored_of(pool, tmp_path, rid, b"shared") for rid in shared]
        marks = await pool.fetchval("SELECT count(*) FROM image_deleted WHERE id = ANY($1)",
                                    [uuid.UUID(r) for r in ids])
        await pool.close()
        return left, kept, marks, archiver.counts

    left, kept, marks, counts = run(go())
    assert left == [(0, 0, 0, [])] * 40 and marks == 40
    file = [content_path(b"shared", "image/png").rsplit("/", 1)[1]]
    assert kept[0::2] == [(0, 0, 0, file)] * 10 and kept[1::2] == [(1, 3, 0, file)] * 10
    assert counts["discarded"] > 0  # some messages did arrive after their image was deleted


def test_the_pages_of_a_document_share_one_message_and_one_file(run, pg_url, amqp_url, tmp_path):
    """One image message names every page; each page's row names the one file, which goes with the last of them."""
    async def go():
        async with pipeline(pg_url, amqp_url, tmp_path) as (pool, publisher, archiver):
            pages, gone = [str(uuid.uuid4()) for _ in range(4)], str(uuid.uuid4())
            await delete_image(pool, tmp_path / "images", uuid.UUID(gone))  # deleted before its file arrived
            publisher.submit(image_message(pages[0], b"%PDF- four pages", "application/pdf",
                                           also=[*pages[1:], gone]))
            for rid in pages:
                publisher.submit(data_message(rid, result(1)))
            await wait_for(lambda: _done(pool, (4, 4 * 3, 0)))
            rows = {str(r["id"]): r["path"] for r in await pool.fetch("SELECT id, path FROM image")}
            files = [p.read_bytes() for p in (tmp_path / "images").rglob("*.pdf")]
            counts = dict(archiver.counts)
            asked = [uuid.UUID(rid) for rid in (gone, pages[2], pages[0], pages[3], pages[1])]
            found = await repository.stored_ids(pool, asked)  # a document's id reads back the pages stored
            for rid in pages[:3]:
                await delete_image(pool, tmp_path / "images", uuid.UUID(rid))
            files_left = [p.read_bytes() for p in (tmp_path / "images").rglob("*.pdf")]
            await delete_image(pool, tmp_path / "images", uuid.UUID(pages[3]))
            last = list((tmp_path / "images").rglob("*.pdf"))
            published = publisher.status()["published"]
            none_left = await repository.stored_ids(pool, asked)
        return pages, rows, files, counts, files_left, last, published, found, none_left

    pages, rows, files, counts, files_left, last, published, found, none_left = run(go())
    assert [str(i) for i in found] == [pages[2], pages[0], pages[3], pages[1]] and none_left == []  # as asked
    assert published == 1 + 4  # the file crossed the broker once
    assert rows == {rid: content_path(b"%PDF- four pages", "application/pdf") for rid in pages}
    assert files == files_left == [b"%PDF- four pages"] and last == []
    assert (counts["images"], counts["discarded"], counts["results"]) == (4, 1, 4)


def test_retention_forgets_the_marks_of_images_deleted_before_its_cutoff(run, pg_url, tmp_path):
    async def go():
        pool = await fresh_pool(pg_url)
        now = datetime.now(UTC)
        old, recent = uuid.uuid4(), uuid.uuid4()
        for image_id in (old, recent):
            await delete_image(pool, tmp_path, image_id)
        await pool.execute("UPDATE image_deleted SET deleted_at = $2 WHERE id = $1", old, now - timedelta(days=8))
        await apply_retention(pool, tmp_path, days=7, now=now)
        left = {r["id"] for r in await pool.fetch("SELECT id FROM image_deleted")}
        await pool.close()
        return left, recent

    left, recent = run(go())
    assert left == {recent}


def test_a_file_being_written_for_one_image_is_not_removed_by_the_deletion_of_another(run, pg_url, tmp_path):
    """The deletion of image A decides whether its file goes while image B's row for the same file is written but
    not committed: it must wait for B, see B's row and keep the file (without the per-file lock it removed it)."""
    async def go():
        pool = await fresh_pool(pg_url)
        archiver = Archiver("amqp://unused", pool, tmp_path)
        first, second = uuid.uuid4(), uuid.uuid4()
        await archiver.handle("imageQueue", b"same", {"request_id": str(first)}, "image/png")
        path = content_path(b"same", "image/png")
        written, go_on = asyncio.Event(), asyncio.Event()

        async def write_then_wait(p: str) -> None:
            (tmp_path / p).write_bytes(b"same")
            written.set()
            await go_on.wait()

        async def store_second() -> None:
            async with pool.acquire() as conn:
                await repository.store_image_file(conn, second, path, datetime.now(UTC), write_then_wait)

        storing = asyncio.ensure_future(store_second())
        await written.wait()
        deleting = asyncio.ensure_future(delete_image(pool, tmp_path, first))
        await asyncio.sleep(0.5)  # long enough for a deletion that does not wait to be done
        waited = not deleting.done()
        go_on.set()
        await asyncio.gather(storing, deleting)
        rows = await pool.fetch("SELECT id, path FROM image")
        await pool.close()
        return waited, [(r["id"], r["path"]) for r in rows], (tmp_path / path).exists()

    waited, rows, exists = run(go())
    assert waited and rows == [(rows[0][0], content_path(b"same", "image/png"))] and exists


def test_a_file_left_by_a_try_that_failed_to_commit_goes_when_its_deleted_image_comes_again(run, pg_url, tmp_path):
    """The file is written before the commit; a commit that fails leaves it, and the message comes again. If its
    image was deleted meanwhile, the message is dropped and the file with it, unless another image names it."""
    async def go():
        pool = await fresh_pool(pg_url)
        archiver = Archiver("amqp://unused", pool, tmp_path)
        lone, shared, keeper = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        await archiver.handle("imageQueue", b"shared bytes", {"request_id": str(keeper)}, "image/png")
        for data in (b"lone bytes", b"shared bytes"):  # what the failed tries left
            (tmp_path / content_path(data, "image/png")).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / content_path(data, "image/png")).write_bytes(data)
        for image_id, data in ((lone, b"lone bytes"), (shared, b"shared bytes")):
            await delete_image(pool, tmp_path, image_id)  # no row yet: nothing to remove
            await archiver.handle("imageQueue", data, {"request_id": str(image_id)}, "image/png")
        files = sorted(p.read_bytes() for p in tmp_path.rglob("*.png"))
        await pool.close()
        return files, archiver.counts["discarded"]

    files, discarded = run(go())
    assert files == [b"shared bytes"] and discarded == 2


def test_deleting_a_document_by_its_own_id_deletes_its_pages_stored_and_on_their_way(run, pg_url, tmp_path):
    """A ``?pages=`` request's id is no image of its own: deleting it deletes the pages stored under ids derived from
    it, marks those not arrived yet, and two such deletions of overlapping pages at once do not deadlock."""
    from deployments.request_ids import page_id

    async def go():
        pool = await fresh_pool(pg_url)
        archiver = Archiver("amqp://unused", pool, tmp_path)
        doc = str(uuid.uuid4())
        pages = [page_id(doc, n) for n in range(1, 4)]
        await archiver.handle("imageQueue", b"%PDF- three",
                              {"request_id": ",".join(pages[:2])}, "application/pdf")
        for rid in pages[:2]:
            await archiver.handle("imageDataQueue", json.dumps(result(1)).encode(), {"request_id": rid}, None)
        every = [uuid.UUID(page_id(doc, n)) for n in range(1, 51)]
        stored = await asyncio.gather(delete_image(pool, tmp_path, uuid.UUID(doc), every),
                                      delete_image(pool, tmp_path, uuid.UUID(pages[1]), every[::-1]))
        await archiver.handle("imageQueue", b"%PDF- three", {"request_id": pages[2]}, "application/pdf")  # late
        await archiver.handle("imageDataQueue", json.dumps(result(1)).encode(), {"request_id": pages[2]}, None)
        rows = await pool.fetchval("SELECT count(*) FROM image")
        files = list(tmp_path.rglob("*.pdf"))
        await pool.close()
        return stored, rows, files, archiver.counts["discarded"]

    stored, rows, files, discarded = run(go())
    assert True in stored and rows == 0 and files == [] and discarded == 2


def test_a_document_dead_lettered_during_an_upgrade_is_stored_once_replayed(run, pg_url, amqp_url, tmp_path):
    """An archiver of an earlier release reads one UUID in ``request_id``; a document's file names its pages there,
    so that archiver dead-letters the message whole instead of storing one page's file. `replay` sends it back after
    the upgrade and every page is stored with the file; a dead letter from another queue stays where it is."""
    from pamqp.commands import Basic

    from serve_app.storage.publisher import declare_queues
    from serve_app.storage.replay import replay

    async def go():
        pages = [str(uuid.uuid4()) for _ in range(3)]
        document = image_message(pages[0], b"%PDF- upgraded", "application/pdf", also=pages[1:])
        with pytest.raises(ValueError):
            uuid.UUID(document.headers["request_id"])  # what the earlier release's archiver checks, and refuses
        async with pipeline(pg_url, amqp_url, tmp_path) as (pool, publisher, _):
            conn = await aiormq.connect(amqp_url)
            channel = await conn.channel(publisher_confirms=True)
            await declare_queues(channel)  # before the publisher's first connection does
            for queue, message in ((IMAGE_QUEUE, document), ("imageDataQueue", Message(
                    "imageDataQueue", b"{not json", {"request_id": pages[0]}))):  # as `Archiver._dead_letter` does
                await channel.basic_publish(message.body, routing_key=DEAD_LETTER_QUEUE, properties=Basic.Properties(
                    delivery_mode=2, content_type=message.content_type, message_id=message.message_id,
                    headers={**message.headers, "x-original-queue": queue, "x-reason": "malformed request_id"}))
            await conn.close()
            for rid in pages:
                publisher.submit(data_message(rid, result(1)))
            await wait_for(lambda: pool.fetchval("SELECT count(*) = 3 FROM image WHERE data_stored"))
            before = await counts(pool)
            listed = await replay(amqp_url, dry_run=True)
            moved = await replay(amqp_url, queue=IMAGE_QUEUE)
            await wait_for(lambda: _done(pool, (3, 3 * 3, 0)))
            paths = {r["path"] for r in await pool.fetch("SELECT path FROM image")}
            conn = await aiormq.connect(amqp_url)
            left = (await (await conn.channel()).queue_declare(DEAD_LETTER_QUEUE, durable=True, passive=True))
            await conn.close()
        return before, listed, moved, paths, left.message_count

    before, listed, moved, paths, left = run(go())
    assert before == (0, 9, 0)  # the answers arrived; no page has its file
    assert listed == {"seen": 2} and moved == {IMAGE_QUEUE: 1, "stayed": 1}
    assert paths == {content_path(b"%PDF- upgraded", "application/pdf")} and left == 1


def test_a_stored_files_name_says_the_type_it_was_read_as():
    """The image row's ``format`` comes with the answer; the file may be there before it, and is served by this."""
    for kind in EXTENSIONS:
        assert media_type(content_path(b"upload", kind)) == kind
    assert media_type(content_path(b"upload", "application/octet-stream")) is None  # a ".bin": the row's format then
    assert media_type("3f2a/1b.c/id-without-extension") is None and media_type("old/1234.jpg") == "image/jpeg"
