"""Pausing Python's cyclic garbage collector while a block builds many objects that hold no cycles.

A users API page parses into some 100,000 dicts and lists (5,000 users). Each 700 new objects set
off a collection of the youngest generation, and every few thousand promoted ones a full
collection that walks every object the process holds: most of the time of parsing and
validating a page went there, and none of it frees anything, since parsed JSON holds no
reference cycles (nothing is collected later either: the objects are freed by reference counting
as ever). The same holds for a day's rows read from a CSV, inserted and read back from the
warehouse. The collector runs again, as configured, once the block ends, and frees then what
little cyclic garbage the block left (users/days.py measures it: some 20 objects a page).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """Runs the block with `gc` disabled, re-enabling it afterwards if it was enabled.

    Blocks may nest and overlap across threads: the collector ends enabled once every block
    that found it enabled has ended (one that found it disabled leaves it as it is)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
