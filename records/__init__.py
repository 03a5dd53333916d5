"""The service's own records: parties (lenders, the platform) and API keys, consents, the hash-chained
append-only audit log, console sessions and member-link versions."""
from records.db import RecordsError
from records.store import (CONSENT_MAX_DAYS, CONSENT_SOURCES, LENDER_SCOPES, PLATFORM_SCOPES, PURPOSES,
                                   SCOPES, AuditEntry, AuthError, ChainReport, ConsentCheck, IssuedKey, Member,
                                   NotAllowed, Operator, Principal, Records, features_sha256)

__all__ = ["Records", "IssuedKey", "Principal", "Operator", "Member", "AuthError", "NotAllowed",
           "ConsentCheck", "AuditEntry", "ChainReport", "SCOPES", "LENDER_SCOPES", "PLATFORM_SCOPES", "PURPOSES",
           "CONSENT_SOURCES", "CONSENT_MAX_DAYS", "RecordsError", "features_sha256"]
