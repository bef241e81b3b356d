"""PDF pages rendered in worker processes that can be stopped, and written again there with a text layer.

PDFium parses a page's whole content stream before drawing it, and nothing in its API bounds that in time or
memory: a 253 kB PDF of ten million tiny rectangles (Flate-compressed) took 16 s and 3.5 GB to load, and 10 MiB
holds forty times as much. In the ingress that held a decoding thread (and PDFium's process-wide lock, so every other
PDF) and then got the replica killed for memory, with every request in it. Here each page is rendered by a worker
process under an address-space limit and a CPU-time limit set by the kernel, and the ingress stops waiting at a
deadline: a page that passes either is refused 413, and only its worker is lost. Laying words over a PDF's own
page (`searchable_pdf.over_pdf`, for ``?format=pdf``) parses its content again, so it runs there too.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import resource
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from serve_app.imaging import CorruptImage, DecodedImage, ImageError, ImageTooLarge

_HEADER = 8  # bytes of a frame's length


def _frame(obj: Any) -> bytes:
    payload = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return len(payload).to_bytes(_HEADER, "big") + payload


class _Worker:
    """One worker process, spoken to over its stdin and stdout in length-prefixed pickles."""

    def __init__(self, memory_mb: int, cpu_s: float) -> None:
        root = str(Path(__file__).resolve().parents[1])  # serve_app's parent, importable wherever this one is
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
               # PDFium draws on one thread; BLAS threads started at numpy's import would only take address space
               "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "serve_app.pdf_sandbox", str(memory_mb), str(cpu_s)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)

    def ask(self, request: dict[str, Any], deadline: float) -> Any:
        """The worker's reply; `TimeoutError` past ``deadline`` (monotonic), `EOFError` if the worker died."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(_frame(request))
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise EOFError("the worker is gone") from None
        fd = self.proc.stdout.fileno()
        waiting = select.poll()  # not select.select, which fails on descriptors past 1023 (a busy replica's)
        waiting.register(fd, select.POLLIN)
        size = int.from_bytes(self._read(fd, waiting, _HEADER, deadline), "big")
        return pickle.loads(self._read(fd, waiting, size, deadline))

    @staticmethod
    def _read(fd: int, waiting: select.poll, n: int, deadline: float) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            left = deadline - time.monotonic()
            if left <= 0 or not waiting.poll(left * 1000):
                raise TimeoutError
            chunk = os.read(fd, min(n - len(buf), 1 << 20))
            if not chunk:
                raise EOFError("the worker is gone")
            buf += chunk
        return bytes(buf)

    def kill(self) -> int | None:
        """Stop the worker; its exit status (negative: the signal that ended it)."""
        with contextlib.suppress(OSError):
            self.proc.kill()
        code = self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                if pipe is not None:
                    pipe.close()
        return code


class PdfSandbox:
    """Renders PDF pages in worker processes, each within ``timeout_s`` and ``memory_mb`` (beyond the worker's own).

    Up to ``idle`` workers are kept started between pages, so a page does not wait for a worker to import PDFium.
    Thread-safe: each caller takes a worker of its own.
    """

    def __init__(self, timeout_s: float, memory_mb: int, idle: int = 2) -> None:
        self.timeout_s, self.memory_mb, self.idle = timeout_s, memory_mb, idle
        self._lock = threading.Lock()
        self._idle: list[_Worker] = [self._start() for _ in range(idle)]
        self.lost = 0  # workers stopped for a page (for tests and logs)

    def _start(self) -> _Worker:
        return _Worker(self.memory_mb, self.timeout_s + 1)

    def _take(self) -> _Worker:
        with self._lock:
            while self._idle:
                worker = self._idle.pop()
                if worker.proc.poll() is None:
                    return worker
                worker.kill()  # ended while idle (killed from outside): not this page's doing
        return self._start()

    def _give_back(self, worker: _Worker) -> None:
        with self._lock:
            if len(self._idle) < self.idle:
                self._idle.append(worker)
                return
        worker.kill()

    def render(self, data: bytes, max_pixels: int, keep_side: int | None, page: int, dpi: float,
               keep_short: int = 0) -> DecodedImage:
        """`imaging.decode_pdf`, in a worker; an `ImageError` for the client otherwise, as decode_pdf raises."""
        request = {"data": data, "max_pixels": max_pixels, "keep_side": keep_side, "page": page, "dpi": dpi,
                   "keep_short": keep_short}
        return self._ask("render", request, f"PDF page {page}", "rendered")

    def overlay(self, data: bytes, answers: list[dict[str, Any]]) -> bytes:
        """`searchable_pdf.over_pdf`, in a worker: the PDF's pages read, each with its words laid over it."""
        pages = ", ".join(str(a["image"]["page"]) for a in answers)
        return self._ask("overlay", {"upload": data, "answers": answers}, f"PDF page {pages}", "written with its words")

    def _ask(self, job: str, request: dict[str, Any], what: str, done: str) -> Any:
        worker = self._take()
        try:
            kind, value = worker.ask({"job": job, **request}, time.monotonic() + self.timeout_s)
        except TimeoutError:
            self._lose(worker)
            raise ImageTooLarge(f"{what} was not {done} within {self.timeout_s:g} s: it draws too much "
                                "(a page of millions of paths, say); send it as an image") from None
        except EOFError:
            code = self._lose(worker)
            if code in (-signal.SIGABRT, -signal.SIGXCPU, -signal.SIGKILL):
                # PDFium aborts when an allocation fails; SIGXCPU is the kernel's time limit
                raise ImageTooLarge(f"{what} could not be {done} within {self.memory_mb} MiB and "
                                    f"{self.timeout_s:g} s (the renderer was stopped by signal {-code})") from None
            raise CorruptImage(f"{what} could not be {done}: the worker exited ({code})") from None
        self._give_back(worker)
        if kind == "ok":
            return value
        if kind == "memory":
            raise ImageTooLarge(f"{what} needs more than {self.memory_mb} MiB to be {done}")
        raise value  # an ImageError, as decode_pdf raised it

    def _lose(self, worker: _Worker) -> int | None:
        self.lost += 1
        return worker.kill()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.kill()


def _serve(memory_mb: int, cpu_s: float, requests: IO[bytes], replies: IO[bytes]) -> None:
    """The worker's loop: one page per request, until its stdin closes (the ingress is gone)."""
    from serve_app.imaging import decode_pdf
    from serve_app.searchable_pdf import over_pdf

    # what a page may take, on top of what the worker holds once started (which differs by machine and libraries)
    with open("/proc/self/statm") as f:
        started = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    limit = started + memory_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    while header := requests.read(_HEADER):
        request = pickle.loads(requests.read(int.from_bytes(header, "big")))
        # the kernel's own deadline, should the ingress be gone and not stop this worker: CPU seconds from now
        used = resource.getrusage(resource.RUSAGE_SELF)
        soft = int(used.ru_utime + used.ru_stime + cpu_s) + 1
        resource.setrlimit(resource.RLIMIT_CPU, (soft, resource.RLIM_INFINITY))
        job = request.pop("job")
        try:
            reply: tuple[str, Any] = ("ok", decode_pdf(**request) if job == "render" else over_pdf(**request))
        except ImageError as exc:
            reply = ("error", exc)
        except MemoryError:
            reply = ("memory", None)
        except Exception as exc:  # noqa: BLE001 - PDFium refused to write it: said so, the worker stays
            reply = ("error", CorruptImage(f"the PDF could not be written again: {exc}"))
        replies.write(_frame(reply))
        replies.flush()


if __name__ == "__main__":
    # replies go out on a private copy of stdout; whatever a library prints goes to stderr instead
    _replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    _serve(int(sys.argv[1]), float(sys.argv[2]), sys.stdin.buffer, _replies)
