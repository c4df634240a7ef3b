import threading
import time

import pytest

from ncf.prefetch import ahead


def counted(n, made):
    for k in range(n):
        made.append(k)
        yield k


def prefetch_threads():
    return [t for t in threading.enumerate() if t.name == "ncf-prefetch"]


def test_every_item_comes_once_in_order():
    assert list(ahead(iter(range(50)))) == list(range(50))
    assert list(ahead(iter([]))) == []


def test_no_more_than_one_item_is_made_ahead_of_the_caller():
    taken = [0]

    def guarded(n):
        for k in range(n):
            # item k may be made while the caller works on item k - 1 (or has just been handed it), never sooner
            if k > taken[0] + 1:
                raise AssertionError(f"item {k} made while the caller had taken {taken[0]}")
            yield k

    for item in ahead(guarded(20)):
        time.sleep(0.005)  # a slow caller: an unbounded producer would run ahead
        taken[0] = item + 1
    assert taken[0] == 20


def test_closing_while_an_item_is_being_made_waits_for_it_and_leaves_no_thread():
    making, release = threading.Event(), threading.Event()

    def slow():
        yield 0
        making.set()
        release.wait(10)
        yield 1

    drawn = ahead(slow())
    assert next(drawn) == 0
    assert making.wait(10)  # item 1 is being made, blocked on `release`
    closer = threading.Thread(target=drawn.close)
    closer.start()
    closer.join(0.2)
    assert closer.is_alive(), "close() returned while the thread was still making an item"
    release.set()
    closer.join(10)
    assert not closer.is_alive() and not prefetch_threads()


def test_an_error_while_making_an_item_is_raised_where_that_item_was_due():
    def failing():
        yield 1
        yield 2
        raise ValueError("chunk 3 could not be drawn")

    got = []
    with pytest.raises(ValueError, match="chunk 3"):
        for item in ahead(failing()):
            got.append(item)
    assert got == [1, 2]
    assert not prefetch_threads()


def test_a_caller_that_stops_early_leaves_no_thread_running():
    made = []
    drawn = ahead(counted(1000, made))
    assert next(drawn) == 0
    assert next(drawn) == 1
    drawn.close()
    assert not prefetch_threads()
    assert len(made) <= 3  # the two taken and at most one made ahead


def test_a_caller_that_never_asks_for_an_item_starts_no_thread():
    made = []
    never_started = ahead(counted(5, made))
    never_started.close()
    assert not prefetch_threads() and made == []
