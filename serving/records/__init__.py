"""The scoring service's own records: banks and API keys, consents, and the append-only audit log."""
from serving.records.db import RecordsError
from serving.records.store import (SCOPES, AuditEntry, AuthError, ConsentCheck, IssuedKey, Principal,
                                   Records, features_sha256)

__all__ = ["Records", "IssuedKey", "Principal", "AuthError", "ConsentCheck", "AuditEntry", "SCOPES",
           "RecordsError", "features_sha256"]
