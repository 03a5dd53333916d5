"""Audit rows are written before the answer leaves, and many requests share one commit.

Each request hands its rows to one writer thread and waits until they are committed. The writer
takes everything that is waiting and writes it in ONE transaction (group commit): under load a
commit carries the rows of many requests, so the database sees a few dozen transactions a second
instead of one per request, and threads no longer queue on SQLite's write lock. If the commit
fails, every request in that group gets the error, and none of them is answered.

`write` blocks the calling thread; `write_async` lets an async route wait on the event loop, so
that other requests are served while the commit runs (no thread-pool hop per request).
"""
from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from records import AuditEntry, Records
from serving import metrics

WAIT_SECONDS = 10.0  # a request waits at most this long for its commit, then answers 503


@dataclass
class _Pending:
    entries: list[AuditEntry]
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    on_done: Callable[[], None] | None = None  # called in the writer thread once committed (or failed)


class AuditWriter:
    def __init__(self, records: Records):
        self._records = records
        self._queue: queue.Queue[_Pending] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()

    def write(self, entries: list[AuditEntry]) -> None:
        """Return once `entries` are committed; raise if they could not be."""
        pending = _Pending(entries)
        self._queue.put(pending)
        if not pending.done.wait(WAIT_SECONDS):
            metrics.audit_failed("timeout")
            raise TimeoutError(f"the audit log did not commit within {WAIT_SECONDS:.0f} s")
        if pending.error is not None:
            raise pending.error

    async def write_async(self, entries: list[AuditEntry]) -> None:
        """The same as `write`, awaited on the running event loop instead of blocking a thread."""
        loop = asyncio.get_running_loop()
        committed = loop.create_future()

        def wake() -> None:  # writer thread -> event loop
            loop.call_soon_threadsafe(_settle, committed, pending.error)

        pending = _Pending(entries, on_done=wake)
        self._queue.put(pending)
        try:
            await asyncio.wait_for(committed, WAIT_SECONDS)
        except asyncio.TimeoutError:
            metrics.audit_failed("timeout")
            raise TimeoutError(f"the audit log did not commit within {WAIT_SECONDS:.0f} s") from None

    def _run(self) -> None:
        while True:
            group = [self._queue.get()]
            while True:  # everything that arrived meanwhile goes in the same commit
                try:
                    group.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            started = time.perf_counter()
            try:
                self._records.append_audit([e for p in group for e in p.entries])
                metrics.audit_written(time.perf_counter() - started)
            except BaseException as exc:  # noqa: BLE001 - handed to every waiting request
                metrics.audit_failed("commit")
                for p in group:
                    p.error = exc
            for p in group:
                p.done.set()
                if p.on_done is not None:
                    try:
                        p.on_done()
                    except RuntimeError:  # its event loop has closed (shutdown): nobody waits
                        pass


def _settle(future: asyncio.Future, error: BaseException | None) -> None:
    if future.done():  # the request gave up waiting (timeout) or was cancelled
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
