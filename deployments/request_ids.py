"""Request ids: fresh for every request, or the same for every try of one, when the client names it.

A client that sends an upload again (its answer lost on the way back, its connection dropped) would otherwise have
it stored twice, under two ids. With an ``Idempotency-Key`` every try gets the same request id, and the archiver
stores a request once whatever arrives. The key is scoped by the API key presented, so that two callers who happen
to choose the same key never share an id. An id is what reads a stored image, so a guessable key makes a
guessable id: the shipped client and page send random UUIDs.
"""

from __future__ import annotations

import hashlib
import uuid

#: Every OCR answer and every error names its request id here too: answers as text, TSV or ALTO have no other place
#: for it, and it is what reads the stored image back, corrects it or deletes it. Not ``X-Request-ID``: Serve's proxy
#: adds that to every answer with its own id, drawn from ``random.getrandbits`` (guessable, so never a stored image's).
HEADER = "X-OCR-Request-Id"
#: Fixed forever: ids derived under it must stay the same across releases and replicas.
NAMESPACE = uuid.UUID("5d0b8a36-8f0e-4b8e-9d57-0c3f2f0a6e11")
MAX_KEY_LENGTH = 255


def request_id(idempotency_key: str | None, api_key: str | None) -> str:
    """A new random id, or the one every request with this key (under this API key) gets."""
    if not idempotency_key:
        return str(uuid.uuid4())
    scope = hashlib.sha256((api_key or "").encode()).hexdigest()
    return str(uuid.uuid5(NAMESPACE, f"{scope}\n{idempotency_key}"))


def page_id(request_id: str, page: int) -> str:
    """The id page ``page`` of a request that reads several (``?pages=``) is stored under.

    Derived, so that every try of one request (one ``Idempotency-Key``) stores each page once, and as hard to guess
    as the request's own id.
    """
    return str(uuid.uuid5(uuid.UUID(request_id), f"page {page}"))
