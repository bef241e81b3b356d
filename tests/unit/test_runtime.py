"""Process settings of the replicas: freed activation buffers stay in the heap instead of being faulted in again."""

import platform
import resource

import numpy as np
import pytest

from serve_app.ocr import runtime


def forward_like_pass() -> int:
    """Buffers of several sizes alive at once, then all freed: glibc's default returns them to the kernel."""
    mb = 1024 * 1024
    buffers = [np.ones(k * 4 * mb, dtype=np.uint8) for k in (1, 2, 3, 4)]  # every page touched
    return sum(int(b[::4096].sum()) for b in buffers)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_freed_buffers_are_reused_without_page_faults():
    """Without `keep_freed_memory` these five passes faulted about 8,000 pages in again; with it none."""
    assert runtime.keep_freed_memory()
    forward_like_pass()  # the heap grows once
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        assert forward_like_pass() == 10 * 4 * 1024 * 1024 // 4096
    assert resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before < 500


def test_threads_are_lent_for_a_block_and_given_back():
    torch = pytest.importorskip("torch")
    own = torch.get_num_threads()
    with runtime.threads(own + 1):
        assert torch.get_num_threads() == own + 1
    assert torch.get_num_threads() == own
    with pytest.raises(RuntimeError), runtime.threads(own + 1):
        raise RuntimeError("a failed read")
    assert torch.get_num_threads() == own  # given back even when the block fails


def test_one_process_at_a_time_uses_the_machines_spare_cores(tmp_path):
    """Two recognizer replicas on one machine reading parts of one lone page both read on two threads, four on two
    cores (17.7 s against 9.7 s for 797 lines); the lock lets one do so, the other reads on its own core."""
    import subprocess
    import sys

    lock = str(tmp_path / "cores.lock")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys\nfrom serve_app.ocr import runtime\n"
         f"with runtime.spare_cores({lock!r}) as got:\n    print(got, flush=True)\n    sys.stdin.readline()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "True"
        with runtime.spare_cores(lock) as got:
            assert got is False  # another process holds them: not waited for
    finally:
        holder.communicate("\n", timeout=30)
    with runtime.spare_cores(lock) as got:
        assert got is True
        with runtime.spare_cores(lock) as again:
            assert again is False  # one holder, even within a process
    with pytest.raises(RuntimeError), runtime.spare_cores(lock):
        raise RuntimeError("a failed read")
    with runtime.spare_cores(lock) as got:
        assert got is True  # given back when the block fails
    with runtime.spare_cores(str(tmp_path / "missing" / "cores.lock")) as got:
        assert got is True  # nowhere to agree through: read as before there was a lock
