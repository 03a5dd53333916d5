"""Pick up a newly promoted champion without a restart, and keep the last good model if it breaks.

A daemon thread asks the MLflow registry every `interval` seconds which version holds the alias
`champion` for each subject. When it changes, the new version is loaded completely in the
background and only then swapped in (one reference assignment), so requests in flight finish on the
model they started with and no request fails. A version that cannot be loaded is logged and
skipped: the last good model keeps serving, and the status says which version failed and why.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from serving import metrics
from settings import get_settings

log = logging.getLogger("coopscore.model_watch")



@dataclass
class WatchStatus:
    checked_at: float | None = None
    loaded: dict[str, str] = field(default_factory=dict)  # subject -> version serving
    failed: dict[str, str] = field(default_factory=dict)  # subject -> "version N: why"


class ChampionWatcher:
    def __init__(self, subjects: tuple[str, ...], current_version: Callable[[str], str | None],
                 champion_version: Callable[[str], str | None], load_and_swap: Callable[[str, str], None],
                 interval: float | None = None):
        self.subjects = subjects
        self._current = current_version  # the version the scorer serves now
        self._champion = champion_version  # the version the registry names champion now
        self._load_and_swap = load_and_swap
        self.interval = interval if interval is not None else get_settings().reload_seconds
        self.status = WatchStatus()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.interval <= 0:
            return  # reloading switched off
        self._thread = threading.Thread(target=self._run, name="champion-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def check_once(self) -> None:
        for subject in self.subjects:
            try:
                wanted = self._champion(subject)
            except Exception as exc:  # registry unreachable: keep serving, say so
                self.status.failed[subject] = f"registry not reachable: {exc}"
                metrics.reload_failed(subject, "registry")
                log.warning("could not ask the registry for the %s champion: %s", subject, exc)
                continue
            current = self._current(subject)
            if current is not None:
                self.status.loaded[subject] = current
            if wanted is None or wanted == current:
                continue
            if self.status.failed.get(subject, "").startswith(f"version {wanted}:"):
                continue  # already failed; wait for the next promotion
            try:
                self._load_and_swap(subject, wanted)
            except Exception as exc:
                self.status.failed[subject] = f"version {wanted}: {exc}"
                metrics.reload_failed(subject, "load")
                log.error("champion %s version %s could not be loaded (%s); version %s keeps serving",
                          subject, wanted, exc, current)
                continue
            self.status.failed.pop(subject, None)
            self.status.loaded[subject] = wanted
            metrics.model_serving(subject, wanted, replaced=current)
            log.info("now serving %s champion version %s (was %s)", subject, wanted, current)
        self.status.checked_at = time.time()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.check_once()
