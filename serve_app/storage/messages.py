"""The three queues and their messages; every message carries a ``request_id`` header.

A document's file carries its pages' ids there, comma-separated.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

IMAGE_QUEUE = "imageQueue"
DATA_QUEUE = "imageDataQueue"
CORRECTION_QUEUE = "textCorrectionQueue"
DEAD_LETTER_QUEUE = "ocrDeadLetterQueue"
QUEUES = (IMAGE_QUEUE, DATA_QUEUE, CORRECTION_QUEUE, DEAD_LETTER_QUEUE)


@dataclass
class Message:
    """One AMQP message as we publish it (persistent, on a durable queue)."""

    queue: str
    body: bytes
    headers: dict[str, str]
    content_type: str = "application/json"
    message_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def request_id(self) -> str:
        return self.headers["request_id"]


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def image_message(request_id: str, data: bytes, content_type: str, created_at: str | None = None,
                  also: list[str] | tuple[str, ...] = ()) -> Message:
    """The uploaded file of ``request_id``, and of the requests ``also`` names (other pages of the same upload).

    The pages of a document share one message, its ``request_id`` header all their ids, comma-separated: the file
    crosses the broker once, whatever its page count (`archive` says why not a header of its own).
    """
    headers = {"request_id": ",".join([request_id, *also]), "created_at": created_at or now_iso()}
    return Message(IMAGE_QUEUE, data, headers, content_type)


def data_message(request_id: str, result: dict[str, Any], created_at: str | None = None) -> Message:
    """The OCR answer (boxes, text, confidences, models, timings) as JSON."""
    headers = {"request_id": request_id, "created_at": created_at or now_iso()}
    return Message(DATA_QUEUE, json.dumps(result, separators=(",", ":")).encode(), headers)


def correction_message(
    request_id: str, value: str, line_index: int | None, correction_id: str | None = None
) -> Message:
    """A user's corrected text for one line (or the whole image when ``line_index`` is None)."""
    cid = correction_id or str(uuid.uuid4())
    body = {"correction_id": cid, "image_id": request_id, "line_index": line_index, "value": value}
    headers = {"request_id": request_id, "correction_id": cid, "created_at": now_iso()}
    return Message(CORRECTION_QUEUE, json.dumps(body).encode(), headers)
