"""The challenger scored beside the champion on live traffic, off the answer's critical path.

After an answer is audited and sent on its way, the request hands (subject, date, amount, term, the
champion's PD and grade) to this worker's shadow queue: one `put_nowait`, microseconds. A daemon
thread takes what is waiting in groups, scores the challenger on the same history rows
(`scoring.shadow.ShadowModels`, one model call per group, no TreeSHAP) and records the pairs in the
records database (`shadow_scores`), one transaction per group. The answer never waits for any of it.

The queue is bounded (`COOPSCORE_SHADOW_QUEUE`): when the worker falls behind under a burst, new
shadow items are skipped rather than letting memory grow or the answers slow down. Skipped items are
counted (`coopscore_shadow_scores_total{outcome="skipped"}`) and the shadow report says how many
answers it covers; a skipped shadow item is a missing sample of a comparison, never a missing answer
or audit row. `COOPSCORE_SHADOW=0` switches the shadow off.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from datetime import date, datetime, timezone

import numpy as np

from records import Records
from scoring.scorer import Scorer
from scoring.shadow import ShadowModels
from serving import metrics

log = logging.getLogger("coopscore.shadow")
GROUP_MAX = 512  # items scored and written together


class ShadowRecorder:
    def __init__(self, scorer: Scorer, records: Records, queue_size: int, refresh_seconds: float):
        self.scorer, self.records = scorer, records
        self.models = ShadowModels(scorer)
        self.refresh_seconds = refresh_seconds
        self._queue: queue.Queue[tuple] = queue.Queue(maxsize=queue_size)
        self._refreshed = 0.0
        self._thread = threading.Thread(target=self._run, name="shadow-recorder", daemon=True)
        self._thread.start()

    # -- what a request calls: never blocks ------------------------------------------------------
    def submit(self, request_id: str, answer, amount_vnd: int, term_months: int) -> None:
        """Queue a scored answer for the shadow (anything else is ignored)."""
        if getattr(answer, "status", None) != "scored":
            return
        item = (request_id, answer.subject_type, answer.subject_id, answer.as_of_date, int(amount_vnd),
                int(term_months), str(answer.model.version), float(answer.pd), float(answer.score),
                str(answer.grade))
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            metrics.shadowed(answer.subject_type, "skipped")

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until every queued item is recorded (tests and shutdown); False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._queue.unfinished_tasks == 0:
                return True
            time.sleep(0.01)
        return False

    # -- the thread --------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            group = [self._queue.get()]
            while len(group) < GROUP_MAX:
                try:
                    group.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self._record(group)
            except Exception as exc:  # noqa: BLE001 - the shadow must never take the worker down
                log.warning("shadow scores of %d answers not recorded: %s", len(group), exc)
                for subject in {g[1] for g in group}:
                    metrics.shadowed(subject, "failed", sum(1 for g in group if g[1] == subject))
            finally:
                for _ in group:
                    self._queue.task_done()

    def _record(self, group: list[tuple]) -> None:
        now = time.monotonic()
        if now - self._refreshed >= self.refresh_seconds or not self._refreshed:
            self.models.refresh()
            self._refreshed = now
        by: dict[tuple[str, date], list[tuple]] = {}
        for item in group:
            by.setdefault((item[1], item[3]), []).append(item)
        rows = []
        at = datetime.now(timezone.utc)
        for (subject, as_of), items in by.items():
            if subject not in self.models.plans:
                continue  # no challenger for this subject type: nothing to compare
            history = self.scorer._history([i[2] for i in items], subject, as_of)
            pd_, score, grade = self.models.score(subject, history, np.array([i[4] for i in items], dtype=float),
                                                  np.array([i[5] for i in items], dtype=float))
            version = self.models.versions[subject]
            for item, p, s, g in zip(items, pd_, score, grade):
                rows.append({"request_id": item[0], "at": at, "subject_type": subject, "subject_id": item[2],
                             "as_of_date": as_of, "amount_vnd": item[4], "term_months": item[5],
                             "champion_version": item[6], "champion_pd": item[7], "champion_score": item[8],
                             "champion_grade": item[9], "challenger_version": version,
                             "challenger_pd": float(p), "challenger_score": float(s),
                             "challenger_grade": str(g)})
        self.records.append_shadow(rows)
        for subject in {r["subject_type"] for r in rows}:
            metrics.shadowed(subject, "recorded", sum(1 for r in rows if r["subject_type"] == subject))
