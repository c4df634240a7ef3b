"""The next chunk of training examples drawn in a thread while the current one trains.

Drawing an epoch's negatives is a sizeable share of its training time at ml-25m's size, and TensorFlow's step
and numpy's drawing both release the GIL for their large loops, so the two overlap on a machine's cores
instead of taking turns (the A/B that kept the thread is in git history, commit log of this file). One chunk
is made ahead, no more: memory grows by one chunk's arrays (`sampling.CHUNK_EXAMPLES`, two to three times that
while it is being drawn), whatever the data's size. The chunks come in the same order, drawn from the same generator,
as without the thread: a job's results do not change.
"""

from __future__ import annotations

import threading
from typing import Iterator, TypeVar

T = TypeVar("T")

_END = object()


def ahead(items: Iterator[T]) -> Iterator[T]:
    """Yields what `items` yields, making each next one in a thread while the caller works on the last.

    An exception raised while making an item is raised here, where that item would have been yielded. If the
    caller stops early (`close()`, or the generator being dropped), the thread finishes the item in hand and
    ends; nothing is left running.
    """
    ready = threading.Semaphore(0)      # an item (or the end) is in `slot`
    wanted = threading.Semaphore(1)     # the caller took the last item: make the next
    slot: list = []
    stop = threading.Event()

    def produce() -> None:
        while True:
            wanted.acquire()
            if stop.is_set():
                return
            try:
                made = (next(items), None)
            except StopIteration:
                made = (_END, None)
            except BaseException as error:  # noqa: BLE001 - handed to the caller, raised there
                made = (_END, error)
            slot.append(made)
            ready.release()
            if made[0] is _END:
                return

    thread = threading.Thread(target=produce, name="ncf-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            ready.acquire()
            item, error = slot.pop()
            if error is not None:
                raise error
            if item is _END:
                return
            wanted.release()
            yield item
    finally:
        stop.set()
        wanted.release()
        thread.join()
