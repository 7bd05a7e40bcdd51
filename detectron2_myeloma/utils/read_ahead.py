"""An iterator whose next item is fetched in a background thread while the caller works on the current
one: image decoding (which releases the GIL) overlaps the model's work on the image before."""
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")
_END = object()


def read_ahead(items: Iterable[T]) -> Iterator[T]:
    """``items`` in order, one fetched ahead in a background thread; an exception raised while fetching
    an item is raised where that item would have been yielded."""
    iterator = iter(items)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="read-ahead") as pool:
        pending = pool.submit(next, iterator, _END)
        while True:
            item = pending.result()
            if item is _END:
                return
            pending = pool.submit(next, iterator, _END)
            yield item
