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
