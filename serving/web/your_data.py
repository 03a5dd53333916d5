"""A member's say over their own data (Personal Data Protection Law No. 91/2025/QH15): what the
member page's section "Dữ liệu của bạn / Your data" shows, and the one thing it writes.

* **Who holds my consent**: every consent of the member (`Records.list_consents`), the lender's
  name, the purpose, until when, and its state (active, withdrawn, expired, not yet in force);
  active ones first.
* **Withdraw one**: `withdraw` calls `Records.revoke_consent(..., source="member_page",
  actor=Member(id))`, the very code the platform's `POST /v1/consents/{id}/revoke` and `coopscore
  consents revoke` use: the consent ends at once (the API's consent check reads it on the next
  request) and its audit row names the member as the actor. Another member's consent id answers
  like an unknown one (LookupError) and changes nothing.
* **Who looked**: the audit-log rows about this member (`Records.access_log`), most recent first,
  capped at ACCESS_LOG_ROWS with a note of the total. Each row says who (the lender's name; "you";
  the platform's operator), when (Viet Nam time), what and with what answer, in words; never a key
  id, a request id or another subject's data (the rows are selected by this member's id and only
  named fields of the answer are read).
"""
from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

from data_contracts.labels import label
from data_contracts.vocabulary import LENDERS
from records import Member
from serving.web.texts import text

ACCESS_LOG_ROWS = 50
VIET_NAM = timezone(timedelta(hours=7))  # no daylight saving time
CONSENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

# endpoint of an audit row -> what happened, in words (texts.py: "look_<key>")
_WHAT = {
    "/v1/scores": "api", "/v1/scores:batch": "api",
    "/app/console": "queue", "/app/console/export.csv": "export",
    "/app/console/applicant": "applicant", "/app/console/api/whatif": "applicant",
    "/app/console/decision": "decision",
    "consents.grant": "consent_granted", "consents.revoke": "consent_revoked",
    "/v1/subjects/consents": "read_consents", "/v1/subjects/access-log": "read_log",
}
# outcome -> the answer given, in words (texts.py: "answer_<key>")
_ANSWER = {
    "scored": "scored", "viewed": "scored", "whatif": "scored", "listed": "listed", "exported": "listed",
    "insufficient_history": "insufficient", "no_consent": "refused", "unknown_subject": "refused",
    "listed_no_consent": "reference_only", "exported_no_consent": "reference_only",
    "not_addressed_to_fund": "not_addressed", "approved": "approved", "declined": "declined",
    "decision_refused": "not_recorded", "consent_granted": "recorded", "consent_revoked": "recorded",
    "read": "read",
}


def when(moment: datetime | None, lang: str, with_time: bool = True) -> str:
    """A moment in Viet Nam time: 14/03/2026 09:05 (Vietnamese) or 2026-03-14 09:05 (English)."""
    if moment is None:
        return ""
    local = (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).astimezone(VIET_NAM)
    day = local.strftime("%d/%m/%Y" if lang == "vi" else "%Y-%m-%d")
    return f"{day} {local:%H:%M}" if with_time else day


def _names(records, lang: str) -> dict[str, str]:
    """bank id -> the name the member reads: a lender of the platform (vocabulary.LENDERS) by its
    name in the page's language, any other bank by the name it was registered with."""
    names = {b["bank_id"]: b["name"] for b in records.list_banks()}
    return {**names, **{code: label("lender", code, lang) for code in LENDERS}}


def _state(row: dict, now: datetime) -> tuple[str, datetime | None]:
    if row["revoked_at"] is not None and row["revoked_at"] <= now:
        return "revoked", row["revoked_at"]
    if row["expires_at"] <= now:
        return "expired", row["expires_at"]
    if row["granted_at"] > now:
        return "not_started", row["granted_at"]
    return "active", row["expires_at"]


def consents(records, member_id: str, lang: str, names: dict[str, str] | None = None) -> list[dict]:
    """The member's consents, active first (latest expiry first), then the others newest first."""
    names = _names(records, lang) if names is None else names
    now = datetime.now(timezone.utc)
    out = []
    for row in records.list_consents("member", member_id):
        state, on = _state(row, now)
        out.append({"consent_id": row["consent_id"], "lender": names.get(row["bank_id"], row["bank_id"]),
                    "purpose": text(f"purpose_{row['purpose']}", lang), "state": state,
                    "on": when(on, lang, with_time=state != "active"), "since": when(row["granted_at"], lang,
                                                                                     with_time=False)})
    active = sorted((c for c in out if c["state"] == "active"), key=lambda c: c["on"], reverse=True)
    return active + [c for c in out if c["state"] != "active"]


def _who(row: dict, names: dict[str, str], lang: str) -> str:
    if row["bank_id"] == "member":
        return text("who_you", lang)
    if row["bank_id"] == "operator":
        return text("who_operator", lang)
    return names.get(row["bank_id"], row["bank_id"])


def _answer(row: dict, names: dict[str, str], lang: str) -> str:
    try:
        given = json.loads(row["answer"]) if row.get("answer") else {}
    except ValueError:
        given = {}
    given = given if isinstance(given, dict) else {}
    key = _ANSWER.get(row["outcome"]) or ("refused_other" if row["http_status"] >= 400 else "answered")
    if key == "scored" and given.get("score") is None:
        key = "shown"
    if key == "recorded":
        return text(f"answer_{row['outcome']}", lang,
                    lender=names.get(given.get("bank_id"), given.get("bank_id") or ""))
    if key == "scored":
        score = given["score"]
        return text("answer_scored", lang, score=round(float(score)), grade=given.get("grade") or "-")
    return text(f"answer_{key}", lang)


def access_log(records, member_id: str, lang: str, names: dict[str, str] | None = None,
               limit: int = ACCESS_LOG_ROWS) -> tuple[list[dict], int]:
    """(rows shown, most recent first, at most `limit`; how many rows there are in all)."""
    names = _names(records, lang) if names is None else names
    total = records.audit_count(subject_type="member", subject_id=member_id)
    rows = []
    for row in records.access_log("member", member_id, limit=limit):
        rows.append({"at": when(row["at"], lang), "iso": row["at"].isoformat(), "who": _who(row, names, lang),
                     "what": text(f"look_{_WHAT.get(row['endpoint'], 'other')}", lang),
                     "answer": _answer(row, names, lang), "refused": row["http_status"] >= 400})
    return rows, total


def view(records, member_id: str, lang: str, withdraw_url: str, csrf: str,
         withdrawn: str | None = None) -> dict:
    """Everything the section shows; `withdrawn` is the consent id just withdrawn (its lender is
    named in the confirmation, looked up among this member's own consents only)."""
    names = _names(records, lang)
    mine = consents(records, member_id, lang, names)
    log, total = access_log(records, member_id, lang, names)
    done = next((c for c in mine if c["consent_id"] == withdrawn), None) if withdrawn else None
    return {"consents": mine, "log": log, "log_total": total, "log_cap": ACCESS_LOG_ROWS,
            "withdraw_url": withdraw_url, "csrf": csrf, "withdrawn": done}


def withdraw(records, member_id: str, consent_id: str) -> dict:
    """Withdraw one of the member's own consents through the platform's one revoke path; raises
    LookupError for an id that is not theirs (or not a consent id at all): nothing changes."""
    if not isinstance(consent_id, str) or not CONSENT_ID.match(consent_id):
        raise LookupError("not a consent id")
    return records.revoke_consent(consent_id, source="member_page", actor=Member(member_id))
