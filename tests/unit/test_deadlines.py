"""A request's deadline grows with the parts a tall strip is read in, up to its cap, and only the innermost one."""

import asyncio

import pytest

from deployments import deadlines


def cut_off_after(work) -> float:
    """Seconds until ``work()`` (a coroutine function) raised TimeoutError."""
    async def timed() -> float:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(TimeoutError):
            await work()
        return loop.time() - t0

    return asyncio.run(timed())


def test_work_past_its_deadline_is_cut_off():
    async def work() -> None:
        async with deadlines.within(0.1, cap=5):
            await asyncio.sleep(2)

    assert 0.09 <= cut_off_after(work) < 1


def test_a_strip_read_in_three_parts_has_three_deadlines_from_when_it_started():
    async def go() -> tuple[deadlines.Deadline, float]:
        loop = asyncio.get_running_loop()
        async with deadlines.within(0.3, cap=5) as allowed:
            t0 = loop.time()
            deadlines.allow_parts(3)
            await asyncio.sleep(0.5)  # past 0.3, within 0.9
        return allowed, loop.time() - t0

    allowed, took = asyncio.run(go())
    assert (allowed.seconds, allowed.parts, allowed.base) == (pytest.approx(0.9), 3, 0.3) and took >= 0.5


def test_the_deadline_never_passes_its_cap_nor_shrinks():
    async def work() -> None:
        async with deadlines.within(0.2, cap=0.5):
            deadlines.allow_parts(100)
            deadlines.allow_parts(1)  # a smaller page later in the same work takes nothing back
            await asyncio.sleep(3)

    assert 0.45 <= cut_off_after(work) < 2  # at the cap (0.5 s), not at 100 x 0.2 s nor at 0.2 s


def test_only_the_innermost_deadline_grows_and_none_outside_any():
    deadlines.allow_parts(4)  # outside a request: nothing to lengthen, and no error

    async def go() -> tuple[deadlines.Deadline, deadlines.Deadline]:
        async with deadlines.within(10, cap=100) as document:
            async with deadlines.within(1, cap=100) as page:
                deadlines.allow_parts(4)
            return document, page

    document, page = asyncio.run(go())
    assert (page.seconds, page.parts) == (4, 4) and (document.seconds, document.parts) == (10, 1)


def test_a_timeout_raised_inside_passes_through_with_its_own_message():
    """A document's page says which page ran late; the document's own deadline must not swallow that."""
    async def go() -> None:
        async with deadlines.within(10, cap=10):
            raise TimeoutError("page 3: no answer within 60 s")

    with pytest.raises(TimeoutError, match="page 3"):
        asyncio.run(go())
