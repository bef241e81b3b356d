"""A bounded on-disk spool of messages waiting for the broker.

Every message is written here before it is published and removed after the broker confirms it, so a broker
outage or a crash loses nothing that the spool accepted.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from serve_app.storage.messages import Message


class SpoolFull(RuntimeError):
    """The spool holds its limit of messages or bytes, or its disk refused the write; the caller reports it."""


class Spool:
    def __init__(self, directory: str | Path, max_messages: int, max_bytes: int) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_messages, self.max_bytes = max_messages, max_bytes
        self._lock = threading.Lock()
        for tmp in self.dir.glob("*.tmp"):  # a write interrupted by a crash never became a message
            tmp.unlink(missing_ok=True)
        files = self.pending()
        self._count, self._bytes = len(files), sum(f.stat().st_size for f in files)
        self.write_error: str | None = None  # why the last write failed (a full disk); None once one succeeds

    def put(self, msg: Message) -> Path:
        header = json.dumps({"queue": msg.queue, "headers": msg.headers, "content_type": msg.content_type,
                             "message_id": msg.message_id}).encode()
        size = len(header) + 1 + len(msg.body)
        with self._lock:
            if self._count >= self.max_messages or self._bytes + size > self.max_bytes:
                raise SpoolFull(f"spool full: {self._count} messages, {self._bytes} bytes")
            self._count += 1
            self._bytes += size
        path = self.dir / f"{time.time_ns():020d}-{msg.message_id}.msg"
        tmp = path.with_suffix(".tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(header + b"\n" + msg.body)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as exc:  # a full or failing disk: the message was never spooled
            tmp.unlink(missing_ok=True)
            with self._lock:
                self._count -= 1
                self._bytes -= size
            self.write_error = f"{type(exc).__name__}: {exc}"
            raise SpoolFull(f"the spool cannot be written: {self.write_error}") from exc
        self.write_error = None
        return path

    def pending(self) -> list[Path]:
        """Spooled messages, oldest first."""
        return sorted(self.dir.glob("*.msg"))

    @staticmethod
    def load(path: Path) -> Message:
        raw = path.read_bytes()
        header, body = raw.split(b"\n", 1)
        h = json.loads(header)
        return Message(h["queue"], body, h["headers"], h["content_type"], h["message_id"])

    def remove(self, path: Path) -> None:
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            return
        with self._lock:
            self._count -= 1
            self._bytes -= size

    def oldest_age_s(self, now_ns: int | None = None) -> float:
        """Seconds the oldest message has waited here (0 when empty), from the time in its name.

        A spool whose depth stays low can still be stuck: this says whether messages leave it, whatever stops them
        (a broker that is down, a publisher that stopped), and counts the time across a restart of the replica.
        """
        if self._count <= 0:
            return 0.0
        oldest = min((p.name for p in self.dir.glob("*.msg")), default=None)
        stamp = oldest.split("-", 1)[0] if oldest else ""
        if not stamp.isdigit():
            return 0.0
        return max(0.0, ((now_ns if now_ns is not None else time.time_ns()) - int(stamp)) / 1e9)

    @property
    def depth(self) -> int:
        return self._count

    @property
    def size_bytes(self) -> int:
        return self._bytes

    @property
    def full(self) -> bool:
        """At its limits, or its disk refused the last write."""
        return self._count >= self.max_messages or self._bytes >= self.max_bytes or self.write_error is not None
