"""Turns inside a gevent worker: handed over in arrival order, given up on time, never lost."""

import gevent
import pytest

from container.turns import _Queue


def test_the_turn_passes_to_waiters_in_the_order_they_came():
    queue, order = _Queue(), []
    assert queue.acquire(1.0)

    def wait(name):
        assert queue.acquire(5.0)
        order.append(name)
        gevent.sleep(0.01)
        queue.release()

    waiters = [gevent.spawn(wait, n) for n in "abc"]
    gevent.sleep(0.05)  # all three are queued
    queue.release()
    gevent.joinall(waiters, timeout=5, raise_error=True)
    assert order == ["a", "b", "c"]
    assert queue.acquire(0.1)  # free again at the end


def test_a_waiter_that_times_out_leaves_the_queue_and_the_next_one_gets_the_turn():
    queue = _Queue()
    assert queue.acquire(1.0)
    late = gevent.spawn(queue.acquire, 0.05)
    patient = gevent.spawn(queue.acquire, 5.0)
    assert late.get(timeout=5) is False
    queue.release()
    assert patient.get(timeout=5) is True


@pytest.mark.parametrize("handed_first", [True, False])
def test_a_request_killed_while_waiting_for_its_turn_gives_back_only_what_it_held(handed_first):
    queue = _Queue()
    assert queue.acquire(1.0)

    def request():  # as the app takes a turn: whatever it got, it gives back
        if queue.acquire(5.0):
            try:
                gevent.sleep(10)
            finally:
                queue.release()

    doomed = gevent.spawn(request)
    gevent.sleep(0.01)
    if handed_first:
        queue.release()  # handed over; the kill then finds it waiting to wake, or holding the turn
    doomed.kill()
    if not handed_first:
        assert not queue.acquire(0.05)  # still ours: the killed waiter only left the queue
        queue.release()
    assert queue.acquire(0.5), "the turn was lost with the killed request"
