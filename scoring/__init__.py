"""The scoring core every door goes through: the API, the batch endpoint, `coopscore score`, the
fund console, the member page, ranking and the CLI.

    scoring.scorer       the scorer and its decision steps (features, model, explanation, reasons)
    scoring.policy       what a valid application is: subject types, ids, Decree 156 limits, history
    scoring.disclosure   who may see a score: the consent check and the audit entry, for every outcome
    scoring.errors       refusals as typed errors with a stable code, an HTTP status and the field
    scoring.schemas      the request and response bodies

Nothing here knows about HTTP or the terminal: the adapters map a typed error to a status code or a
CLI message once.
"""
