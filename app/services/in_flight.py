"""Keep up to `width` engine calls in flight and store each result in the calling thread.

Generation and scoring jobs both need this: an SGLang server serves many requests at once, while the
database has one writer, so the calls run in a pool and everything that touches storage (reading the
next input, storing a result) stays in the job's own thread.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TypeVar

T = TypeVar("T")  # an item to work on
C = TypeVar("C")  # what the caller keeps about an item while its call runs
R = TypeVar("R")  # a call's result


def run_in_flight(width: int, items: Iterable[T], prepare: Callable[[T], tuple[C, Callable[[], R]] | None],
                  done: Callable[[C, R], None], failed: Callable[[C, Exception, int], None],
                  stop: Callable[[], bool], name: str) -> None:
    """For each item, `prepare` (in this thread) returns (context, call), or None when there is nothing
    to do. Calls run `width` at a time; `done(context, result)` or `failed(context, error, still in
    flight)` run in this thread as each ends. Once `stop()` is true no new item starts; those in flight
    still end through `done` / `failed`. An error raised by `failed` ends the run after the pool drains.

    >>> out = []
    >>> run_in_flight(2, [1, 2, 3], lambda i: (i, lambda: i * 10), lambda c, r: out.append(r),
    ...               lambda c, e, n: None, lambda: False, "doc")
    >>> sorted(out)
    [10, 20, 30]
    """
    todo = iter(items)
    pending: dict[Future[R], C] = {}
    with ThreadPoolExecutor(max(1, width), thread_name_prefix=name) as pool:
        while True:
            while len(pending) < width and not stop():
                item = next(todo, _END)
                if item is _END:
                    break
                job = prepare(item)  # type: ignore[arg-type]
                if job is not None:
                    pending[pool.submit(job[1])] = job[0]
            if not pending:
                return
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                context = pending.pop(future)
                try:
                    result = future.result()
                except Exception as e:  # noqa: BLE001 - the caller decides what a failure means
                    failed(context, e, len(pending))
                    continue
                done(context, result)


_END = object()
