"""Who may see a score, and the audit entry that says who saw what: the disclosure step every door
takes (the API's single and batch scores, the fund console, offline scoring for a lender).

Financial data is sensitive (Personal Data Protection Law No. 91/2025/QH15, Decree 356/2025): a
lender sees a subject's score only while the subject's explicit consent for that lender and the
purpose is active. A subject the platform does not know gets the very same refusal as one who did
not consent, so a lender cannot learn which ids exist by asking. Every outcome (scored,
insufficient history, refused) becomes one audit entry; the caller writes it before the answer
leaves.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timezone

from scoring.errors import ApiError, NoConsent
from records import AuditEntry, ConsentCheck, features_sha256

PURPOSE = "credit_scoring"


class Disclosure:
    """The consent check and the audit entries for one records store.

    Parameters
    ----------
    records : the service's records (consent_for; the entries are written by the caller)
    knows : (subject_type, subject_id) -> bool, whether the subject exists on the platform
    """

    def __init__(self, records, knows: Callable[[str, str], bool]):
        self.records = records
        self.knows = knows

    def check(self, lender_id: str, subject_type: str, subject_id: str,
              purpose: str = PURPOSE) -> ConsentCheck:
        """The one consent check of every door: is the subject's consent for this lender and
        purpose active now? (The console shows its state; the API answers with `refusal`.)"""
        return self.records.consent_for(subject_type, subject_id, lender_id, purpose=purpose)

    def refusal(self, lender_id: str, subject_type: str, subject_id: str,
                purpose: str = PURPOSE) -> NoConsent | None:
        """None when the lender may see the subject now, else the refusal to answer with. The
        refusal's `internal_outcome` says what the audit log records (unknown_subject or
        no_consent); the lender's answer is the same either way."""
        words = (f"{subject_type} {subject_id} has no active consent for {lender_id} to be scored "
                 f"for {purpose}. The subject grants it on the platform; silence is not consent.")
        if not self.knows(subject_type, subject_id):
            refusal = NoConsent(words)
            refusal.internal_outcome = "unknown_subject"
            return refusal
        check = self.check(lender_id, subject_type, subject_id, purpose)
        if check.active:
            return None
        refusal = NoConsent(f"{words} ({check.reason})" if check.consent_id else words)
        refusal.internal_outcome = "no_consent"
        return refusal


def answered_entry(principal, request_id: str, endpoint: str, answer, features_used: dict | None,
                   client_request_id: str | None = None) -> AuditEntry:
    """The audit entry of an answer given (scored or insufficient_history)."""
    summary = {"status": answer.status, "pd": answer.pd, "score": answer.score, "grade": answer.grade,
               "reasons": [r.code for r in answer.reasons], "missing": [m.code for m in answer.missing],
               "recommended_limit_vnd": getattr(answer, "recommended_limit_vnd", None)}
    return AuditEntry(request_id=request_id, at=datetime.now(timezone.utc), bank_id=principal.bank_id,
                      key_id=principal.key_id, subject_type=answer.subject_type,
                      subject_id=answer.subject_id, endpoint=endpoint, http_status=200,
                      outcome=answer.status, model_name=answer.model.name,
                      model_version=answer.model.version, as_of_date=answer.as_of_date,
                      features_sha256=features_sha256(features_used) if features_used is not None else None,
                      answer=json.dumps(summary), client_request_id=client_request_id)


def refused_entry(principal, request_id: str, endpoint: str, subject_type: str, subject_id: str,
                  error: ApiError, client_request_id: str | None = None) -> AuditEntry:
    """The audit entry of a refusal (no consent, unknown subject, invalid application, ...)."""
    outcome = getattr(error, "internal_outcome", None) or error.error
    return AuditEntry(request_id=request_id, at=datetime.now(timezone.utc), bank_id=principal.bank_id,
                      key_id=principal.key_id, subject_type=subject_type, subject_id=subject_id,
                      endpoint=endpoint, http_status=error.status, outcome=outcome,
                      answer=json.dumps({"error": error.error, "message": error.message}),
                      client_request_id=client_request_id)


def read_entry(principal, request_id: str, endpoint: str, subject_type: str, subject_id: str,
               rows: int, client_request_id: str | None = None) -> AuditEntry:
    """The audit entry of a read of a subject's consents or access log: reading who looked is
    itself a look, and the subject may see it."""
    return AuditEntry(request_id=request_id, at=datetime.now(timezone.utc), bank_id=principal.bank_id,
                      key_id=principal.key_id, subject_type=subject_type, subject_id=subject_id,
                      endpoint=endpoint, http_status=200, outcome="read",
                      answer=json.dumps({"rows": rows}), client_request_id=client_request_id)
