"""read_ahead: the same items in order, the next one fetched while the caller holds the current, and a
fetch's exception raised at that item."""
import threading

import pytest

from detectron2_myeloma.utils.read_ahead import read_ahead


def test_items_in_order_with_the_next_fetched_while_the_caller_works():
    fetched = []
    ready = threading.Event()

    def items():
        for i in range(4):
            fetched.append(i)
            if i == 1:
                ready.set()
            yield i

    out = []
    for item in read_ahead(items()):
        if item == 0:
            assert ready.wait(5)  # item 1 was fetched while the caller still held item 0
        out.append(item)
    assert out == [0, 1, 2, 3] and fetched == out


def test_an_exception_while_fetching_is_raised_at_its_item():
    def items():
        yield "a"
        raise ValueError("broken file")

    iterator = read_ahead(items())
    assert next(iterator) == "a"
    with pytest.raises(ValueError, match="broken file"):
        next(iterator)
