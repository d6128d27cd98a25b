"""executor.Launches: builds ahead of need wait until the round's tasks were submitted and
none is about to start its recipe (threads, no subprocess)."""

from __future__ import annotations

import threading

from envbisect.executor import Launches


def test_wait_needs_every_expected_task_submitted_and_settled():
    launches = Launches()
    expected = launches.expect(2)
    assert not launches.wait(expected, 0.05), "nothing submitted yet"
    first = launches.enter()
    second = launches.enter()
    assert not launches.wait(expected, 0.05), "both about to start their recipe"
    first()
    assert not launches.wait(expected, 0.05), "one still about to start"
    second()
    assert launches.wait(expected, 0.05)


def test_settled_counts_once_and_wakes_a_waiter():
    launches = Launches()
    expected = launches.expect(1)
    settled = launches.enter()
    settled()
    settled()  # a task settles when its env must be built and again when it ends: once
    other = launches.enter()
    assert not launches.wait(launches.expect(0), 0.05), "a second settle must not cover another task"
    woke = []
    waiter = threading.Thread(target=lambda: woke.append(launches.wait(expected, 10)))
    waiter.start()
    other()
    waiter.join(10)
    assert woke == [True]


def test_a_round_whose_tasks_never_come_holds_nobody_back_past_the_timeout():
    launches = Launches()
    assert launches.wait(launches.expect(0), 0.01)
    assert not launches.wait(launches.expect(3), 0.05)
