"""What a fund's officer may see of an applicant, and the audit row that says they saw it.

Financial data is sensitive (Personal Data Protection Law No. 91/2025/QH15, Decree 356/2025): the
console shows a member's score, grade, PD, reasons and what-if to a fund only while the member has
an active consent for that fund and the purpose `credit_scoring`, the same check the scoring API
makes (`Records.consent_for`). It is checked on every request, so a withdrawal takes effect on the
next page; every disclosure and every refusal is a row of the audit log the member can read
(`Records.access_log`).
"""
from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable

import pandas as pd

from records import AuditEntry, Records
from scoring.disclosure import Disclosure
SUBJECT = "member"  # the console lists members' applications
# columns of the scored queue that come from the member's data: blanked without consent
SCORED_COLUMNS = {"score": math.nan, "pd": math.nan, "grade": "", "note": "", "model_name": None,
                  "model_version": None, "as_of_date": None}
# who applied and for what: personal too, so a row without consent shows none of it either
PERSONAL_COLUMNS = {"entity_id": None, "cooperative_id": None, "province": None, "business_sector": None,
                    "requested_amount_vnd": None, "term_months": None, "purpose": None}
# all a fund sees of an application without consent: that it exists, and when it was made
REFERENCE_COLUMNS = ("application_id", "application_date")


@dataclass(frozen=True)
class Consent:
    """A member's consent for one fund now: `state` is active, none, revoked, expired or not_started;
    `on` is the day it was revoked, expired or starts; `reason` is the records' own words."""

    active: bool
    state: str
    on: str | None
    consent_id: str | None
    reason: str


def consent_of(records: Records, bank_id: str, member_id: str) -> Consent:
    """The API's own consent check (scoring.disclosure), with its state in a form the page can
    translate. The console lists only applications addressed to the fund, so every subject exists."""
    check = Disclosure(records, knows=lambda *_: True).check(bank_id, SUBJECT, member_id)
    return Consent(check.active, check.state, check.on.strftime("%Y-%m-%d") if check.on else None,
                   check.consent_id, check.reason)


def consents_of(records: Records, bank_id: str, member_ids: Iterable[str]) -> dict[str, Consent]:
    """One check per distinct member (200 indexed SELECTs for a full queue, ~70 ms on SQLite)."""
    return {m: consent_of(records, bank_id, m) for m in dict.fromkeys(member_ids)}


def for_fund(queue: pd.DataFrame, consents: dict[str, Consent]) -> pd.DataFrame:
    """The scored queue as this fund may see it (same index as `queue`): a row without consent
    keeps only the application's reference (id and date) and its consent state; who applied, for
    how much and everything computed from the member's data are blanked, so neither the page, its
    data-* attributes, the CSV nor a filter can reveal them."""
    shown = queue.copy()
    states = [consents[m] for m in shown["entity_id"]]
    blank = [not c.active for c in states]
    shown["consent"] = [c.state for c in states]
    shown["consent_on"] = [c.on or "" for c in states]
    for column, empty in {**SCORED_COLUMNS, **PERSONAL_COLUMNS}.items():
        if column in shown:
            shown[column] = shown[column].astype(object)
            shown.loc[blank, column] = empty
    shown.loc[blank, "status"] = "no_consent"
    for column in ("score", "pd"):
        shown[column] = pd.to_numeric(shown[column])
    return shown


def _clean(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def entry(bank_id: str, key_id: str, member_id: str, endpoint: str, outcome: str,
          http_status: int = 200, answer: dict | None = None, model_name: str | None = None,
          model_version: str | None = None, as_of_date=None, features_sha256: str | None = None,
          request_id: str | None = None) -> AuditEntry:
    """One audit row: this fund (bank_id) was shown, or refused, this member's data."""
    return AuditEntry(request_id=request_id or uuid.uuid4().hex, at=datetime.now(timezone.utc),
                      bank_id=bank_id, key_id=key_id, subject_type=SUBJECT, subject_id=member_id,
                      endpoint=endpoint, http_status=http_status, outcome=outcome,
                      model_name=_clean(model_name), model_version=_clean(model_version),
                      as_of_date=_clean(as_of_date), features_sha256=features_sha256,
                      answer=json.dumps(answer, ensure_ascii=False, default=str) if answer else None)


def listed(bank_id: str, key_id: str, rows: pd.DataFrame, members: pd.Series, endpoint: str,
           outcome: str) -> list[AuditEntry]:
    """One row per member whose application the page (or the CSV) showed, with what it showed:
    the scores under consent (`outcome`), the bare references without it (`<outcome>_no_consent`,
    so the member's access log says the fund saw that an application exists and nothing more).
    `members` maps the rows' index to the member id (the rows shown may have it blanked)."""
    request_id = uuid.uuid4().hex  # one page view: one request id, one row per member
    shown: dict[tuple[str, bool], list[dict]] = {}  # (member, consented) -> applications, in page order
    first: dict[tuple[str, bool], tuple] = {}  # -> its first row (model and date of the scores)
    columns = ["application_id", "consent", "status", "score", "grade", "pd", "model_name",
               "model_version", "as_of_date"]
    # one plain pass: a pandas groupby with a row lookup per member took ~300 ms for 200 rows
    for member_id, r in zip(members.loc[rows.index], rows.reindex(columns=columns).itertuples(index=False)):
        active = r.consent == "active"
        shown.setdefault((member_id, active), []).append(
            {"application_id": r.application_id, "status": r.status, "score": _clean(r.score),
             "grade": r.grade or None, "pd": _clean(r.pd)} if active
            else {"application_id": r.application_id, "consent": r.consent})
        first.setdefault((member_id, active), r)
    return [entry(bank_id, key_id, member_id, endpoint, outcome if active else f"{outcome}_no_consent",
                  answer={"applications": apps},
                  model_name=first[member_id, active].model_name if active else None,
                  model_version=first[member_id, active].model_version if active else None,
                  as_of_date=first[member_id, active].as_of_date if active else None,
                  request_id=f"{request_id}-{i}")
            for i, ((member_id, active), apps) in enumerate(shown.items())]
