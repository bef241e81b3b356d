"""The soak benchmark's readings: Ray processes found by title, growth per request, latency per span."""

from __future__ import annotations

import random
import subprocess
import time
from collections import Counter

import pytest

from benchmarks.soak import (
    MIB,
    WEIGHTS,
    Sample,
    Sent,
    draw_kind,
    latency_table,
    median_slope_per_1000,
    memory_table,
    ray_processes,
    slope_per_1000,
)


def test_a_ray_process_is_found_by_its_title_whatever_method_it_runs() -> None:
    # Ray retitles a replica's process by the method it is in; the label must stay that of the replica
    proc = subprocess.Popen(["bash", "-c", 'exec -a "ray::ServeReplica:app:Fake.handle_request x" sleep 30'])
    idle = subprocess.Popen(["bash", "-c", 'exec -a "ray::IDLE" sleep 30'])
    try:
        for _ in range(50):
            found = ray_processes()
            if f"ray::ServeReplica:app:Fake#{proc.pid}" in found:
                break
            time.sleep(0.05)
        assert found[f"ray::ServeReplica:app:Fake#{proc.pid}"] > 0
        assert not any(label.endswith(f"#{idle.pid}") for label in found)  # pooled idle workers come and go
    finally:
        proc.kill()
        idle.kill()


def test_growth_is_the_least_squares_slope_per_thousand_requests() -> None:
    assert slope_per_1000([(0, 100), (500, 600), (1000, 1100)]) == pytest.approx(1000)
    assert slope_per_1000([(0, 5), (10, 5)]) == 0
    assert slope_per_1000([(7, 5)]) == 0  # one reading says nothing of growth
    assert slope_per_1000([(3, 5), (3, 9)]) == 0  # nor do readings with no request between them


def test_memory_is_judged_after_the_warm_up_and_over_the_second_half() -> None:
    # grows 10 MiB per 1,000 requests while warming, then holds: no leak
    samples = [Sample(t, t * 100, {"ray::A#1": int((100 + min(t, 10) * 1) * MIB)}) for t in range(21)]
    label, warm, end, most, slope, robust = memory_table(samples, warm_up_s=5)[0]
    assert (label, warm, end, most) == ("ray::A#1", 105, 110, 110)
    assert slope == 0 and robust == 0
    # grows all along: a leak
    leaking = [Sample(t, t * 100, {"ray::A#1": int((100 + t) * MIB)}) for t in range(21)]
    assert memory_table(leaking, warm_up_s=5)[0][4:] == (pytest.approx(10), pytest.approx(10))


def test_the_median_slope_sees_a_steady_growth_and_not_a_swing_late_in_the_run() -> None:
    # flat at 100 MiB, with large uploads in flight at two of the last readings: swings, no growth
    swinging = [(n * 100, int((100 + (120 if n in (16, 19) else 0)) * MIB)) for n in range(21)]
    assert slope_per_1000(swinging) / MIB > 20  # least squares is tilted by the two late readings
    assert median_slope_per_1000(swinging) == 0
    # a growth of 5 MiB per 1,000 requests under the same swings is still found
    growing = [(n * 100, y + int(n * 0.5 * MIB)) for n, (_, y) in enumerate(swinging)]
    assert median_slope_per_1000(growing) / MIB == pytest.approx(5, rel=0.05)
    assert median_slope_per_1000([(7, 5)]) == median_slope_per_1000([(3, 5), (3, 9)]) == 0


def test_a_process_seen_in_part_of_the_run_is_measured_over_its_own_readings() -> None:
    samples = [Sample(t, t * 10, {"ray::A#1": 50 * MIB} if t < 5 else {"ray::A#2": 60 * MIB}) for t in range(10)]
    rows = {row[0]: row for row in memory_table(samples, warm_up_s=7)}
    assert rows["ray::A#1"][1:4] == (50, 50, 50)  # replaced before the warm-up ended: all its readings
    assert rows["ray::A#2"][1:4] == (60, 60, 60)


def test_latency_medians_are_of_answered_requests_in_each_span() -> None:
    sent = [Sent(1, "frame", 200, 0.2), Sent(2, "frame", 200, 0.4), Sent(3, "frame", 500, 9.0),
            Sent(8, "frame", 200, 0.3), Sent(9, "word", 200, 0.05), Sent(10, "frame", 200, 0.5)]
    table = latency_table(sent, seconds=10, parts=2)
    assert table["frame"] == [pytest.approx(0.3), pytest.approx(0.4)]  # the 500 is not a latency of an answer
    assert table["word"] == [None, 0.05]


def test_only_the_kinds_asked_for_are_sent_and_a_read_waits_for_something_stored() -> None:
    rng = random.Random(0)
    cheap = ("word", "not an image", "stored")
    drawn = Counter(draw_kind(rng, cheap, stored=True, ids=True) for _ in range(2000))
    assert set(drawn) == set(cheap)
    assert drawn["word"] / drawn["not an image"] == pytest.approx(WEIGHTS["word"] / WEIGHTS["not an image"], rel=0.2)
    before_any = {draw_kind(rng, cheap, stored=True, ids=False) for _ in range(200)}
    assert before_any == {"word", "not an image"}  # nothing to read back yet
    assert {draw_kind(rng, cheap, stored=False, ids=True) for _ in range(200)} == {"word", "not an image"}
    assert {draw_kind(rng, ("stored",), stored=True, ids=False) for _ in range(20)} == {"frame"}
