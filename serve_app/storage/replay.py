"""Send dead letters back to the queue they came from, once whatever refused them is fixed.

The archiver moves a message it cannot store to ``ocrDeadLetterQueue`` with ``x-original-queue`` and ``x-reason``
headers. Some of those are worth storing later: a document's file read by an archiver of an earlier release during
an upgrade (it finds several ids in ``request_id``), or a message a bug refused. This moves them back, each
published with the broker's confirm before it is taken off the dead-letter queue, so a crash midway loses none
(at worst one is in both, and the archiver stores it once):

    python -m serve_app.storage.replay                      # every dead letter back to its queue
    python -m serve_app.storage.replay --queue imageQueue   # only those from imageQueue; the others stay
    python -m serve_app.storage.replay --dry-run            # what is there, and why
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import sys
from typing import Any, cast

from pamqp.commands import Basic
from pamqp.common import FieldTable

from serve_app.storage.messages import DEAD_LETTER_QUEUE, QUEUES
from serve_app.storage.publisher import open_channel

#: Headers the dead-lettering added, dropped when a message goes back.
DEAD_LETTER_HEADERS = ("x-original-queue", "x-reason", "x-dead-lettered-at", "x-retries")


async def replay(url: str, queue: str | None = None, dry_run: bool = False) -> collections.Counter[str]:
    """Move the dead letters there now (those from ``queue`` only, if given); returns how many went where.

    Each message is looked at once: one that stays goes to the back of the dead-letter queue.
    """
    conn, channel = await open_channel(url)
    moved: collections.Counter[str] = collections.Counter()
    try:
        declared = await channel.queue_declare(DEAD_LETTER_QUEUE, durable=True, passive=True)
        for _ in range(declared.message_count or 0):
            got = await channel.basic_get(DEAD_LETTER_QUEUE, no_ack=False)
            delivery = got.delivery
            if not isinstance(delivery, Basic.GetOk) or delivery.delivery_tag is None:
                break  # emptied by someone else meanwhile
            props = got.header.properties
            headers: dict[str, Any] = dict(props.headers or {})
            origin = str(headers.get("x-original-queue", ""))
            back = origin in QUEUES and origin != DEAD_LETTER_QUEUE and (queue is None or origin == queue)
            if dry_run:
                print(f"{origin or '?'}\t{headers.get('request_id', '')}\t{headers.get('x-reason', '')}")
                await channel.basic_reject(delivery.delivery_tag, requeue=True)
                moved["seen"] += 1
                continue
            target = origin if back else DEAD_LETTER_QUEUE
            if back:
                headers = {k: v for k, v in headers.items() if k not in DEAD_LETTER_HEADERS}
            ack = await channel.basic_publish(got.body, routing_key=target, timeout=30, properties=Basic.Properties(
                delivery_mode=2, headers=cast(FieldTable, headers), content_type=props.content_type,
                message_id=props.message_id))
            if not isinstance(ack, Basic.Ack):  # left where it is: the broker did not take the copy
                raise RuntimeError(f"broker did not confirm message {props.message_id}: {ack!r}")
            await channel.basic_ack(delivery.delivery_tag)
            moved[target if back else "stayed"] += 1
    finally:
        await conn.close()
    return moved


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rabbitmq-url", default=os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/"),
                   help="the broker (default: $RABBITMQ_URL)")
    p.add_argument("--queue", choices=[q for q in QUEUES if q != DEAD_LETTER_QUEUE], default=None,
                   help="only the dead letters that came from this queue")
    p.add_argument("--dry-run", action="store_true", help="list them (queue, request id, reason); move none")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    moved = asyncio.run(replay(args.rabbitmq_url, args.queue, args.dry_run))
    print(", ".join(f"{n} {'to ' + q if q in QUEUES else q}" for q, n in sorted(moved.items())) or "no dead letters")
    return 0


if __name__ == "__main__":
    sys.exit(main())
