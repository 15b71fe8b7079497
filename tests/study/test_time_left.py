"""The study's 'about ... left': the remaining runs' planned cost, scaled by how the finished ones compared with
their plan; not the mean of the finished runs (an 18 s encoder run then said 18 s before a 198 s CNN)."""

import pytest

from adlab.study.plan import seconds_left


def test_what_is_left_follows_the_plan_of_the_runs_left():
    # an 18 s run planned at 9 s (x2): a 99 s plan left is about 198 s, whatever the finished run took
    assert seconds_left([(9.0, 18.0)], [99.0]) == pytest.approx(198.0)
    assert seconds_left([(9.0, 18.0), (10.0, 10.0)], [19.0]) == pytest.approx(19.0 * 28.0 / 19.0)


def test_runs_without_a_plan_count_as_the_finished_runs_mean():
    assert seconds_left([(None, 30.0), (10.0, 10.0)], [None, 5.0]) == pytest.approx(20.0 + 5.0)
    assert seconds_left([(None, 30.0)], [5.0, None]) == pytest.approx(60.0)  # no plan to scale by: the mean


def test_before_any_run_the_plan_itself():
    assert seconds_left([], [3.0, None, 4.0]) == pytest.approx(7.0)
