"""Process-wide settings for a process that runs the networks: intra-op threads, and how freed memory is kept.

Deployments call `setup` once in their constructor; in-process evaluation calls it before its first image.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import os
import platform
import resource
import tempfile
from collections.abc import Iterator

import torch

#: glibc's `mallopt` parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3

#: Blocks up to this size are reused from the heap: a 1696 px detector input is 19.5 MB, the largest activation of
#: the CTPN 26 MB. 32 MiB is the most glibc allows on 64-bit.
MMAP_THRESHOLD = 32 * 1024 * 1024


def keep_freed_memory() -> bool:
    """Make glibc keep freed activation buffers for the next forward pass instead of returning them to the kernel.

    By default glibc maps large buffers fresh and trims the heap once enough of it is free, so each pass over a 720p
    frame faulted in and zeroed about 35,000 pages again. Raising the mmap and trim thresholds cut the detector's
    page faults 3.5x and its system time by more than half, and a frame's detection from about 345-370 to 300-340 ms
    (2 threads, 2-core AVX2 VM). The cost: a replica's resident memory stays at its peak. False where the C library
    is not glibc (nothing changed then).
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30))


#: Environment of a model replica's process (`deployments.app` puts it in the replica's ``runtime_env``): one malloc
#: arena for every thread. Serve runs a replica's model on a worker thread, and glibc gives each such thread an arena
#: of its own whose heaps (64 MiB at most) are unmapped as soon as they empty, whatever the trim threshold: each
#: detector pass over a 720p frame faulted in 10-28 k pages again (50-90 ms of system time). With one arena the
#: thresholds of `keep_freed_memory` hold for every thread: 0-5 faults in most passes (now and then 5-13 k while the
#: shared heap grows), and a frame's detection inside the replica took 329 against 375 ms (2 threads, 2-core AVX2
#: EPYC). glibc reads this once, when the process starts.
#:
#: And how long torch's OpenMP threads spin, waiting for the next parallel region, before they sleep. An LSTM is
#: hundreds of small parallel regions back to back: threads that sleep at once (``OMP_WAIT_POLICY=PASSIVE``) are
#: woken for each, and a lone receipt took 418 against 266 ms to answer. Threads that spin libgomp's default 300,000
#: rounds keep cores busy that a request waiting in another replica needs: 4 clients at a time got 3.1 receipts per
#: second against 4.0. 10,000 rounds keeps most of both: 285 ms alone, 3.5 per second (a 720p frame: 208 against
#: 201 ms alone, 3.7 against 3.6 per second; `benchmarks.latency --concurrency 4`, three rounds, 2-core Xeon
#: with AMX; docs/accuracy.md). On a 2-core AMD Zen 4 receipts gain alike (1.70 -> 1.98 per second under load) but
#: frames lose: 274 against 249 ms alone, 2.5 against 2.9 per second. Kept until more CPUs are measured.
REPLICA_ENV: dict[str, str] = {"GLIBC_TUNABLES": "glibc.malloc.arena_max=1", "GOMP_SPINCOUNT": "10000"}

#: How many built oneDNN kernels (primitives) a process keeps, one per operation and input shape; oneDNN reads it
#: once, at its first use (its default: 1024). The models' ``kernel_cache`` setting.
KERNEL_CACHE = "ONEDNN_PRIMITIVE_CACHE_CAPACITY"


def replica_env(kernel_cache: int) -> dict[str, str]:
    """A model replica's environment: `REPLICA_ENV`, and the kernels it keeps built."""
    return {**REPLICA_ENV, KERNEL_CACHE: str(kernel_cache)}


def process_env() -> dict[str, str | None]:
    """The values of `replica_env`'s variables in this process (a replica reports them: they must reach it)."""
    return {k: os.environ.get(k) for k in (*REPLICA_ENV, KERNEL_CACHE)}


def minor_faults() -> int:
    """Pages this process has faulted in so far (without I/O): what `keep_freed_memory` and `REPLICA_ENV` keep low."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def setup(threads: int) -> None:
    """``threads`` intra-op threads (one per core the process may use), and freed memory kept (`keep_freed_memory`)."""
    torch.set_num_threads(threads)
    keep_freed_memory()


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    """Run a block on ``n`` intra-op threads, then go back to the process's own number."""
    before = torch.get_num_threads()
    if n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n != before:
            torch.set_num_threads(before)


#: The lock a replica holds while it reads on more threads than its own share of the machine (`spare_cores`). A
#: file in this process's temporary directory: one per machine locally, one per pod on KubeRay.
SPARE_CORES_LOCK = os.path.join(tempfile.gettempdir(), "show-off-ocr.spare-cores.lock")


@contextlib.contextmanager
def spare_cores(path: str = SPARE_CORES_LOCK) -> Iterator[bool]:
    """Whether this process may use the machine's idle cores for the block: True for one process at a time.

    A lone page's crops are read on the detector's idle core too. Read in parts by two recognizer replicas on one
    2-core machine, both did so: four busy threads on two cores, and a 1280 x 20000 screenshot's 797 lines took
    17.7 s against 9.7 s on one replica (2-core Xeon with AMX). The one that cannot take the lock reads on its own
    cores. Not blocking: a replica that would wait for the lock reads at once on fewer threads instead.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:  # no writable temporary directory: nothing to agree through, as before there was
        fd = -1
    if fd < 0:
        yield True
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held = True
    except OSError:  # another process holds it
        held = False
    try:
        yield held
    finally:
        if held:
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
