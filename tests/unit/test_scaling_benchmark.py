"""The scaling benchmark's windows: every answer counted once, in the window it came in."""

from benchmarks.scaling import Answer, windows


def test_answers_are_counted_in_the_window_they_came_in():
    answers = [Answer(0.5, 1.0, 200), Answer(14.9, 3.0, 200), Answer(15.0, 2.0, 200), Answer(31.0, 0.5, 503)]
    got = windows(answers, 15.0, 45.0)
    assert got == [(0.0, 2, 2.0), (15.0, 1, 2.0), (30.0, 1, 0.5)]
    assert sum(n for _, n, _ in got) == len(answers)
    assert windows([], 10.0, 20.0) == [(0.0, 0, None), (10.0, 0, None)]
