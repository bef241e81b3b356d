"""How fast answers go from the sidecar's spool into PostgreSQL and the image store, and what they take there.

The real publisher, broker, archiver and database, in a throwaway database and RabbitMQ vhost (created and dropped
here, as the tests do: ``rabbitmqctl`` and PostgreSQL's admin URL). Two loads: single-page answers, each with an
upload of its own, and documents whose pages share one upload. Every message is spooled and published first, then
the archiver starts on the full queues, so that its own pace is measured. Printed per load: seconds to publish,
seconds to archive, answers archived per second, files and bytes in the image store, and bytes of image messages
published.

    python -m benchmarks.archive                       # 200 answers of 150 kB, then 20 documents of 10 pages
    python -m benchmarks.archive --answers 500 --kb 400 --documents 10 --pages 50
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg

from serve_app.storage.archive import Archiver
from serve_app.storage.messages import data_message, image_message
from serve_app.storage.migrate import migrate
from serve_app.storage.publisher import Publisher
from serve_app.storage.spool import Spool

PG_ADMIN = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP_BASE = os.environ.get("TEST_AMQP_BASE", "amqp://guest:guest@127.0.0.1:5672")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--answers", type=int, default=200, help="single-page answers, each with its own upload")
    p.add_argument("--kb", type=int, default=150, help="upload size in kB (a phone JPEG of a receipt: 150-400)")
    p.add_argument("--documents", type=int, default=20, help="documents, each one upload shared by its pages")
    p.add_argument("--pages", type=int, default=10, help="pages per document")
    return p


def answer(request_id: str) -> dict[str, Any]:
    """An answer of 20 lines of 4 words each, a receipt's size."""
    lines = [{"box": [10, 30 * i, 300, 30 * i + 25], "text": f"line {i} of the answer", "confidence": 0.9,
              "words": [{"box": [10 + 70 * w, 30 * i, 70 + 70 * w, 30 * i + 25], "text": f"w{w}", "confidence": 0.9}
                        for w in range(4)]} for i in range(20)]
    return {"request_id": request_id, "image": {"width": 1000, "height": 800, "format": "JPEG"}, "lines": lines,
            "models": {"detector": "ctpn", "recognizer": "crnn"}, "timings": {"total_ms": 500.0}}


async def one_load(name: str, uploads: list[tuple[bytes, list[str]]], pg_url: str, amqp_url: str,
                   work: Path) -> dict[str, Any]:
    """Spool every upload with its answers, and wait until every answer is stored with its file."""
    pool = await asyncpg.create_pool(pg_url, min_size=1, max_size=8)
    async with pool.acquire() as conn:
        await migrate(conn)
        await conn.execute("TRUNCATE image, image_deleted CASCADE")
    publisher = Publisher(amqp_url, Spool(work / f"spool-{name}", 10**6, 10**11))
    archiver = Archiver(amqp_url, pool, work / f"images-{name}")
    publisher.start()
    expected = sum(len(ids) for _, ids in uploads)
    t0 = time.perf_counter()
    image_bytes = 0
    for data, ids in uploads:
        message = image_message(ids[0], data, "image/jpeg", also=ids[1:])
        image_bytes += len(message.body)
        await asyncio.to_thread(publisher.submit, message)
        for rid in ids:
            await asyncio.to_thread(publisher.submit, data_message(rid, answer(rid)))
    while publisher.status()["spool_depth"]:
        await asyncio.sleep(0.05)
    published = time.perf_counter() - t0
    t1 = time.perf_counter()  # the archiver alone, from here: every message waits in its queue
    archiver.start()
    while await pool.fetchval("SELECT count(*) FROM image WHERE data_stored AND path IS NOT NULL") < expected:
        await asyncio.sleep(0.02)
    seconds = time.perf_counter() - t1
    files = [p for p in (work / f"images-{name}").rglob("*") if p.is_file()]
    await publisher.close()
    await archiver.close()
    await pool.close()
    return {"load": name, "answers": expected, "s to publish": published, "s to archive": seconds,
            "answers archived/s": expected / seconds, "files": len(files),
            "MB stored": sum(p.stat().st_size for p in files) / 1e6, "MB of image messages": image_bytes / 1e6}


async def main(args: argparse.Namespace) -> None:
    database, vhost = f"ocr_bench_{uuid.uuid4().hex[:8]}", f"ocr_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{database}"')
    subprocess.run(["rabbitmqctl", "-q", "add_vhost", vhost], check=True, capture_output=True)
    subprocess.run(["rabbitmqctl", "-q", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"], check=True,
                   capture_output=True)
    pg_url, amqp_url = PG_ADMIN.rsplit("/", 1)[0] + f"/{database}", f"{AMQP_BASE}/{vhost}"
    size = args.kb * 1000
    singles = [(os.urandom(size), [str(uuid.uuid4())]) for _ in range(args.answers)]
    documents = [(os.urandom(size), [str(uuid.uuid4()) for _ in range(args.pages)]) for _ in range(args.documents)]
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for name, uploads in (("single pages", singles), (f"documents of {args.pages} pages", documents)):
                if uploads:
                    rows.append(await one_load(name.split()[0], uploads, pg_url, amqp_url, Path(tmp)))
                    rows[-1]["load"] = name
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], capture_output=True)
    print(f"\nuploads of {args.kb} kB; spool -> RabbitMQ -> archiver -> PostgreSQL and the image store\n")
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in row.values()) + " |")


if __name__ == "__main__":
    asyncio.run(main(get_args_parser().parse_args()))
