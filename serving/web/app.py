"""The web pages, server-rendered (Jinja2), mounted on the service at /app.

    GET  /app/member/{token}                 a member's own ranking and data (Vietnamese; ?lang=en)
    POST /app/member/{token}/withdraw        the member withdraws one of their consents
    GET  /app/console                        loan officers: sign in, then the applicant queue
    POST /app/console/login | /logout        a fund's API key -> short signed session cookie
    GET  /app/console/export.csv             the filtered queue as CSV
    GET  /app/console/monitoring             the champion's month-by-month monitoring
    GET  /app/console/applicant/{id}         one applicant: score, reasons, contributions chart
    POST /app/console/applicant/{id}         the what-if form without JavaScript
    POST /app/console/api/whatif             the what-if as JSON (the page's small fetch)
    POST /app/console/decision               approve / decline with a note -> audit log

The service hands the app its Scorer and Records (`web.state.scorer`, `web.state.records`); the
member page reads the ranking through `ranking.rank` / `ranking.advice` when they exist.
Every console request re-reads the session's key (revoked or expired: back to sign-in) and the
server-side session (ended by logout: back to sign-in). A fund sees only the applications addressed
to it (`lender_id` == the officer's bank id): another fund's application answers like an unknown
one (404), audited as a refusal. A row without the member's active consent for the fund shows its
reference (id, date) and nothing personal; every row shown is audited (`serving/web/disclosure.py`).
A decision is re-scored for the amount and term decided, and refused when the scorer refuses.
Every page is in one language (`?lang=en`, else Vietnamese): words from `texts.py`, a vocabulary
code by its label (`label(vocabulary, code)` in the templates, `data_contracts.labels`), a reason
code only in a tooltip and the CSV (docs/web.md, "Every page speaks its language").
""" 
from __future__ import annotations

import hmac
import json
import logging
import math
import re
import threading
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import pandas as pd
from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.exceptions import HTTPException as StarletteHTTPException

from settings import Paths, get_paths
from features.catalogue import FEATURES_BY_NAME
from scoring import schemas
from scoring.errors import ApiError
from scoring.policy import TERM_MONTHS
from records import AuditEntry, AuthError, features_sha256
from data_contracts.labels import label
from data_contracts.vocabulary import LENDERS
from serving.web import charts, disclosure, links, safe_csv, your_data
from serving.web.applications import QUEUE_SIZE, find_application, recent_member_applications
from serving.web.texts import text
from serving.web import limit_view
from serving.web import monitoring_view

log = logging.getLogger("coopscore.web")
log.addFilter(links.redact_member_tokens)  # our own messages never carry a member's link either
HERE = Path(__file__).parent
SESSION_COOKIE = "coopscore_session"
GRADES = ("A", "B", "C", "D", "E", "F")
OFFICER_SCOPES = ("console",)
RAW_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")

web = FastAPI(title="coopscore web pages", docs_url=None, redoc_url=None, openapi_url=None)
web.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
_templates = Environment(loader=FileSystemLoader(HERE / "templates"),
                         autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)


# -- plumbing ------------------------------------------------------------------------------------
def _paths(request: Request) -> Paths:
    return getattr(request.app.state, "paths", None) or get_paths()


def _secret(request: Request) -> bytes:
    state = request.app.state
    if getattr(state, "secret", None) is None:
        state.secret = links.web_secret(_paths(request))
    return state.secret


def _lang(request: Request) -> str:
    return "en" if request.query_params.get("lang") == "en" else "vi"


def _prefix(request: Request) -> str:
    return request.scope.get("root_path", "").rstrip("/")


def render(request: Request, name: str, status: int = 200, lang: str | None = None, **context) -> HTMLResponse:
    lang = lang or _lang(request)
    other = "en" if lang == "vi" else "vi"
    query = {k: v for k, v in request.query_params.items() if k != "lang"}
    if other == "en":
        query["lang"] = "en"
    html = _templates.get_template(name).render(
        lang=lang, t=lambda key, **kw: text(key, lang, **kw), prefix=_prefix(request),
        label=lambda vocabulary, code: label(vocabulary, code, lang),  # a code's words (data_contracts.labels)
        switch_url=f"{_prefix(request)}{request.scope['path'][len(request.scope.get('root_path', '')):]}"
                   + (f"?{urlencode(query)}" if query else ""),
        switch_label="English" if lang == "vi" else "Tiếng Việt", switch_lang=other, **context)
    return HTMLResponse(html, status_code=status,
                        headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY",
                                 "Referrer-Policy": "no-referrer",
                                 "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                                                            "style-src 'self'; script-src 'self'"})


def _error_page(request: Request, status: int, key: str) -> HTMLResponse:
    """An error in the page's language (?lang=en, else Vietnamese); the switch link offers the other."""
    return render(request, "error.html", status=status, key=key)


@web.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, exc: StarletteHTTPException) -> HTMLResponse:
    key = {403: "forbidden", 404: "not_found"}.get(exc.status_code, "error")
    return _error_page(request, exc.status_code, key)


class SessionEnded(Exception):
    """The key behind an officer's session was revoked, expired or lost the console scope."""


class AuditUnavailable(Exception):
    """A disclosure could not be written to the audit log, so it is not made."""


@web.exception_handler(SessionEnded)
async def _session_ended(request: Request, exc: SessionEnded) -> Response:
    if "/console/api/" in request.url.path:
        response: Response = JSONResponse(
            {"error": "session_ended", "message": text("session_key_gone", "en"),
             "message_vi": text("session_key_gone", "vi")}, status_code=401)
    else:
        response = render(request, "login.html", status=401, error="session_key_gone")
    response.delete_cookie(SESSION_COOKIE, path=_prefix(request) or "/")
    return response


@web.exception_handler(AuditUnavailable)
async def _audit_unavailable(request: Request, exc: AuditUnavailable) -> Response:
    if "/console/api/" in request.url.path:
        return JSONResponse({"error": "audit_unavailable", "message": text("audit_unavailable_body", "en"),
                             "message_vi": text("audit_unavailable_body", "vi")}, status_code=503)
    return _error_page(request, 503, "audit_unavailable")


@web.exception_handler(Exception)
async def _unexpected(request: Request, exc: Exception) -> HTMLResponse:
    log.exception("unexpected error on %s", request.url.path)  # paths redacted by the filter
    return _error_page(request, 500, "error")


# -- the member's page -------------------------------------------------------------------------
def _ranking_api(request: Request):
    """(rank module, advice module) or None when `ranking` is not there yet."""
    given = getattr(request.app.state, "ranking", None)
    if given is not None:
        return given, given
    try:
        from ranking import advice, rank  # noqa: PLC0415 (built alongside; may be missing)
    except ImportError:
        return None
    return rank, advice


def _pct(value) -> int | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return int(round(float(value)))  # ranking.rank gives 0-100


@web.get("/member/{token}", response_class=HTMLResponse)
def member_page(request: Request, token: str) -> HTMLResponse:
    if "." not in token and RAW_ID.match(token):
        return _error_page(request, 404, "not_found")  # a raw id is never a page
    try:
        member_id, version = links.verify_link(token, _secret(request))
    except links.InvalidToken:
        return _error_page(request, 403, "forbidden")
    if version != request.app.state.records.member_link_version(member_id):
        return _error_page(request, 403, "forbidden")  # revoked: every earlier link of the member
    lang = _lang(request)
    api = _ranking_api(request)
    ranking, history, actions, problem = None, [], [], None
    if api is None:
        problem = "no_module"
    else:
        rank, advice = api
        try:
            ranking = rank.latest_ranking(_paths(request), member_id)
            if ranking is not None:
                history = list(rank.rank_history(_paths(request), member_id) or [])
                scorer = getattr(request.app.state, "scorer", None)  # the service's: no second load
                actions = list(advice.advise(scorer or _paths(request), member_id) or [])[:3]
        except (FileNotFoundError, LookupError) as exc:
            log.info("no ranking for this member: %s", type(exc).__name__)  # no id in the logs
            ranking = None
        if ranking is None:
            problem = "no_data"
    pcts = {}
    if ranking:
        pcts = {k: _pct(ranking.get(f"pct_{k}")) for k in ("cooperative", "province", "sector")}
    trend = charts.trend_svg(history, lang) if len(history) >= 2 else None  # a line needs two
    limit = (limit_view.view(request.app.state, _paths(request), member_id, lang)
             if ranking and ranking.get("status") == "ranked" else None)  # what they could borrow
    return render(request, "member.html", lang=lang, r=ranking, pcts=pcts, actions=actions,
                  trend=trend, history=history, problem=problem, limit=limit,
                  data=_your_data(request, token, member_id, lang))


# -- the member's say over their data (serving/web/your_data.py) ------------------------------------
def _member_of(request: Request, token: str) -> str | None:
    """The member of a genuine, unexpired, unrevoked link, else None."""
    try:
        member_id, version = links.verify_link(token, _secret(request))
    except links.InvalidToken:
        return None
    return member_id if version == request.app.state.records.member_link_version(member_id) else None


def _member_csrf(request: Request, token: str) -> str:
    """The withdraw form's CSRF token: the app's csrf_token, bound to this very link."""
    return links.csrf_token(f"member:{token}", _secret(request))


def _your_data(request: Request, token: str, member_id: str, lang: str) -> dict:
    url = f"{_prefix(request)}/member/{token}/withdraw" + ("?lang=en" if lang == "en" else "")
    return your_data.view(request.app.state.records, member_id, lang, url, _member_csrf(request, token),
                          withdrawn=request.query_params.get("withdrawn"))


@web.post("/member/{token}/withdraw")
def member_withdraw(request: Request, token: str, consent_id: str = Form(""),
                    csrf: str = Form("")) -> Response:
    """One click withdraws one of the member's own consents, at once, audited with the member as the
    actor (Records.revoke_consent, the platform's own path). A revoked or expired link, a wrong CSRF
    token: 403; another member's consent id answers like an unknown one: 404; nothing changes."""
    member_id = _member_of(request, token)
    expected = _member_csrf(request, token).encode()
    if member_id is None or not hmac.compare_digest(csrf.encode(), expected):
        return _error_page(request, 403, "forbidden")
    try:
        your_data.withdraw(request.app.state.records, member_id, consent_id)
    except LookupError:
        return _error_page(request, 404, "not_found")
    query = urlencode({"withdrawn": consent_id, **({"lang": "en"} if _lang(request) == "en" else {})})
    return RedirectResponse(f"{_prefix(request)}/member/{token}?{query}#your-data", status_code=303)


# -- the officers' console: sessions -----------------------------------------------------------
class Officer:
    """A signed-in loan officer: their fund (`bank_id`, a lender), key, session and CSRF token."""

    def __init__(self, bank_id: str, key_id: str, session_id: str, secret: bytes):
        self.bank_id, self.key_id, self.session_id = bank_id, key_id, session_id
        self.csrf = links.csrf_token(session_id, secret)


def _officer(request: Request) -> Officer | None:
    """The signed-in officer, None without a valid cookie of a live server-side session (logged
    out: a replayed cookie signs nobody in); raises SessionEnded when the session's key is no
    longer live. Key and session are re-read on every request (two indexed SELECTs, no cache): a
    revoked officer must not keep a 30-minute cookie's worth of access."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    try:
        bank_id, key_id, session_id = links.verify_session(cookie, _secret(request))
    except links.InvalidToken:
        return None
    records = request.app.state.records
    if not records.session_live(session_id):
        return None
    principal = records.key_principal(key_id)
    if principal is None or principal.bank_id != bank_id or principal.kind != "lender" \
            or not any(s in principal.scopes for s in OFFICER_SCOPES):
        raise SessionEnded(key_id)
    return Officer(bank_id, key_id, session_id, _secret(request))


def _audit(request: Request, entries: list[AuditEntry]) -> None:
    """Written before the page leaves: no audit row, no disclosure."""
    if not entries:
        return
    try:
        request.app.state.records.append_audit(entries)
    except Exception as exc:
        log.exception("could not write %d audit rows", len(entries))
        raise AuditUnavailable() from exc


def _csrf_ok(officer: Officer, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(given, officer.csrf)


def _to_login(request: Request) -> RedirectResponse:
    return RedirectResponse(f"{_prefix(request)}/console", status_code=303)


@web.post("/console/login")
def login(request: Request, api_key: str = Form("")) -> Response:
    records = request.app.state.records
    try:
        principal = records.authenticate(api_key.strip())
    except AuthError:
        return render(request, "login.html", status=401, error="login_failed")
    if principal.kind != "lender" or not any(s in principal.scopes for s in OFFICER_SCOPES):
        return render(request, "login.html", status=403, error="login_scope")
    session_id = records.start_session(
        principal.bank_id, principal.key_id,
        datetime.now(timezone.utc) + timedelta(seconds=links.SESSION_SECONDS))
    response = RedirectResponse(f"{_prefix(request)}/console", status_code=303)
    response.set_cookie(SESSION_COOKIE, links.session_token(principal.bank_id, principal.key_id,
                                                            session_id, _secret(request)),
                        max_age=links.SESSION_SECONDS, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", path=_prefix(request) or "/")
    return response


@web.post("/console/logout")
def logout(request: Request, csrf: str = Form("")) -> Response:
    """Ends the session on the server; needs the page's CSRF token (a forged cross-site logout is
    refused with 403 and the session stays live)."""
    officer = _officer(request)
    if officer is not None:
        if not _csrf_ok(officer, csrf):
            return _error_page(request, 403, "forbidden")
        request.app.state.records.end_session(officer.session_id)
    response = _to_login(request)
    response.delete_cookie(SESSION_COOKIE, path=_prefix(request) or "/")
    return response


# -- the queue ---------------------------------------------------------------------------------
_queue_lock = threading.Lock()
_queue_cache: dict[tuple, pd.DataFrame] = {}


def _queue(request: Request, lender_id: str) -> pd.DataFrame:
    """The most recent QUEUE_SIZE member applications addressed to `lender_id`, scored (vectorised)
    for their amount and term on the latest data; cached per process and lender until the member
    model or the snapshot changes. A lender no application is addressed to has an empty queue.
    Never shown as is: `_shown` hides what this officer's fund may not see."""
    scorer = request.app.state.scorer
    key = (str(_paths(request).home), scorer.served_version("member"), scorer.snapshot_date, lender_id)
    with _queue_lock:
        if key in _queue_cache:
            return _queue_cache[key]
        apps = recent_member_applications(_paths(request), QUEUE_SIZE if lender_id in LENDERS else 0,
                                          lender_id if lender_id in LENDERS else None)
        requests = [schemas.ScoreRequest.model_construct(
            subject_type="member", subject_id=r.entity_id, as_of_date=None,
            application=schemas.Application.model_construct(
                amount_vnd=int(r.requested_amount_vnd), term_months=int(r.term_months),
                purpose=r.purpose)) for r in apps.itertuples()]
        results = scorer.score_many(requests) if requests else []
        apps["score"] = [r.score if not isinstance(r, ApiError) and r.score is not None else np.nan
                         for r in results]
        apps["pd"] = [r.pd if not isinstance(r, ApiError) and r.pd is not None else np.nan for r in results]
        apps["grade"] = [r.grade if not isinstance(r, ApiError) and r.grade else "" for r in results]
        apps["status"] = ["error" if isinstance(r, ApiError) else r.status for r in results]
        apps["note"] = [r.message if isinstance(r, ApiError) else "" for r in results]
        ok = [None if isinstance(r, ApiError) else r for r in results]  # for the audit rows
        apps["model_name"] = [r.model.name if r else None for r in ok]
        apps["model_version"] = [r.model.version if r else None for r in ok]
        apps["as_of_date"] = pd.Series([r.as_of_date if r else None for r in ok], dtype=object)
        for old in [k for k in _queue_cache if k[:3] != key[:3]]:  # another model or snapshot
            del _queue_cache[old]
        _queue_cache[key] = apps
        return apps


SORTS = {"score": ("score", True), "-score": ("score", False),
         "grade": ("grade", True), "-grade": ("grade", False),
         "date": ("application_date", True), "-date": ("application_date", False)}


def _shown(request: Request, officer: Officer) -> tuple[pd.DataFrame, pd.Series]:
    """The queue as this officer's fund may see it now (consent is checked on every page load),
    and the member id of each row by index (for the audit rows only, never shown)."""
    queue = _queue(request, officer.bank_id)
    consents = disclosure.consents_of(request.app.state.records, officer.bank_id, queue["entity_id"])
    return disclosure.for_fund(queue, consents), queue["entity_id"]


def _filtered(request: Request, shown: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    q = request.query_params
    filters = {k: q.get(k, "").strip() for k in ("cooperative", "province", "sector", "grade")}
    sort = q.get("sort", "-score") if q.get("sort", "-score") in SORTS else "-score"
    df = shown  # blanked values match no filter: a filter cannot reveal an unconsented row
    if filters["cooperative"]:
        df = df[df["cooperative_id"].fillna("").str.upper() == filters["cooperative"].upper()]
    if filters["province"]:
        df = df[df["province"] == filters["province"]]
    if filters["sector"]:
        df = df[df["business_sector"] == filters["sector"]]
    if filters["grade"]:
        df = df[df["grade"] == filters["grade"]]
    column, ascending = SORTS[sort]
    key = None
    if column == "grade":  # unscored applicants last either way
        key = lambda s: s.replace("", "Z")  # noqa: E731
    df = df.sort_values([column, "application_id"], ascending=[ascending, True], na_position="last",
                        key=key, kind="stable")
    return df, {**filters, "sort": sort}


@web.get("/console", response_class=HTMLResponse)
def console(request: Request) -> HTMLResponse:
    officer = _officer(request)
    if officer is None:
        return render(request, "login.html", error=None)
    full, members = _shown(request, officer)
    df, chosen = _filtered(request, full)
    _audit(request, disclosure.listed(officer.bank_id, officer.key_id, df, members, "/app/console",
                                      "listed"))
    return render(request, "queue.html", officer=officer, rows=df.to_dict("records"), chosen=chosen,
                  total=len(full), no_consent=int((df["consent"] != "active").sum()),
                  provinces=sorted(full["province"].dropna().unique()),
                  sectors=sorted(full["business_sector"].dropna().unique(),
                                 key=lambda s: label("member_sector", s, _lang(request))), grades=GRADES,
                  query=urlencode({k: v for k, v in chosen.items() if v and k != "sort"}),
                  export_query=urlencode({k: v for k, v in chosen.items() if v}))


@web.get("/console/monitoring", response_class=HTMLResponse)
def monitoring_page(request: Request) -> HTMLResponse:
    """The champion's month-by-month monitoring (serving/web/monitoring_view.py), behind the console login."""
    officer = _officer(request)
    if officer is None:
        return render(request, "login.html", error=None)
    return render(request, "monitoring.html", officer=officer,
                  **monitoring_view.view(_paths(request), _lang(request)))


@web.get("/console/export.csv")
def export_csv(request: Request) -> Response:
    officer = _officer(request)
    if officer is None:
        return _to_login(request)
    shown, members = _shown(request, officer)
    df, _ = _filtered(request, shown)
    _audit(request, disclosure.listed(officer.bank_id, officer.key_id, df, members,
                                      "/app/console/export.csv", "exported"))
    columns = ["application_id", "entity_id", "cooperative_id", "province", "business_sector",
               "application_date", "requested_amount_vnd", "term_months", "purpose", "status",
               "score", "grade", "pd", "note", "consent", "consent_on"]
    body = safe_csv.to_csv(["member_id" if c == "entity_id" else c for c in columns],
                           df[columns].itertuples(index=False))
    return Response(body, media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="applicants.csv"',
                             "Cache-Control": "no-store"})


# -- one applicant -----------------------------------------------------------------------------
def _application(request: Request, officer: Officer, application_id: str, endpoint: str) -> dict | None:
    """The application if it is in this officer's fund's queue, else None, answered as 404 by the
    caller whether it is unknown or another fund's; the latter is audited as a refusal (the
    member's access log shows the attempt)."""
    df = _queue(request, officer.bank_id)
    match = df[df["application_id"] == application_id]
    if len(match):
        return match.iloc[0].to_dict()
    other = find_application(_paths(request), application_id) if RAW_ID.match(application_id) else None
    if other is not None and other["entity_type"] == "member":
        _audit(request, [disclosure.entry(officer.bank_id, officer.key_id, other["entity_id"], endpoint,
                                          "not_addressed_to_fund", http_status=404,
                                          answer={"application_id": application_id})])
    return None


def _rescore(request: Request, app: dict, amount: int, term: int):
    req = schemas.ScoreRequest(subject_type="member", subject_id=app["entity_id"],
                               application=schemas.Application(amount_vnd=amount, term_months=term,
                                                               purpose=app["purpose"]))
    return request.app.state.scorer.score(req)


def _int_field(value, low: int, high: int) -> int | None:
    try:
        number = int(str(value).replace(",", "").replace(".", "").replace(" ", ""))
    except (TypeError, ValueError):
        return None
    return number if low <= number <= high else None


def _refused_key(exc: ApiError) -> str:
    """texts.py key of the scorer's refusal in words: above the Decree 156 limit, or another reason
    (the scorer's own message, in English, stays the detail)."""
    over = any(f.get("field") == "application.amount_vnd" for f in exc.fields)
    return "whatif_over_limit" if over else "whatif_refused"


def _consent(request: Request, officer: Officer, app: dict) -> disclosure.Consent:
    return disclosure.consent_of(request.app.state.records, officer.bank_id, app["entity_id"])


def _refusal(request: Request, officer: Officer, app: dict, consent: disclosure.Consent,
             endpoint: str) -> None:
    """A refusal is audited like the API's: 403, no_consent, and the reason."""
    _audit(request, [disclosure.entry(officer.bank_id, officer.key_id, app["entity_id"], endpoint,
                                      "no_consent", http_status=403,
                                      answer={"application_id": app["application_id"],
                                              "reason": consent.reason})])


def _shown_answer(request: Request, officer: Officer, app: dict, answer, endpoint: str, outcome: str,
                  amount: int, term: int) -> None:
    """Audit one score shown to the officer (a page view or a what-if)."""
    used = type(request.app.state.scorer).features_used(answer)
    _audit(request, [disclosure.entry(
        officer.bank_id, officer.key_id, app["entity_id"], endpoint, outcome,
        answer={"application_id": app["application_id"], "amount_vnd": amount, "term_months": term,
                "status": answer.status, "score": answer.score, "grade": answer.grade, "pd": answer.pd,
                "reasons": [r.code for r in answer.reasons]},
        model_name=answer.model.name, model_version=answer.model.version, as_of_date=answer.as_of_date,
        features_sha256=features_sha256(used) if used is not None else None)])


def _no_consent_page(request: Request, officer: Officer, app: dict, consent: disclosure.Consent,
                     decision_refused: bool = False) -> HTMLResponse:
    return render(request, "applicant.html", status=403, officer=officer, app=app, consent=consent,
                  answer=None, error=None, chart=None, decided=None, decision_refused=decision_refused)


def _applicant(request: Request, application_id: str, amount=None, term=None,
               decided: str | None = None, outcome: str = "viewed") -> HTMLResponse:
    officer = _officer(request)
    if officer is None:
        return _to_login(request)
    app = _application(request, officer, application_id, "/app/console/applicant")
    if app is None:
        return _error_page(request, 404, "not_found")
    consent = _consent(request, officer, app)
    if not consent.active:
        _refusal(request, officer, app, consent, "/app/console/applicant")
        return _no_consent_page(request, officer, app, consent)
    lang = _lang(request)
    amount_v = _int_field(amount, 1, 10**13) if amount is not None else int(app["requested_amount_vnd"])
    term_v = _int_field(term, *TERM_MONTHS) if term is not None else int(app["term_months"])
    answer, error, detail = None, None, None
    if amount_v is None or term_v is None:
        error = text("whatif_invalid", lang)
    else:
        try:
            answer = _rescore(request, app, amount_v, term_v)
        except ApiError as exc:
            error, detail = text(_refused_key(exc), lang), exc.message  # the scorer's words: a tooltip
    if answer is not None:
        _shown_answer(request, officer, app, answer, "/app/console/applicant", outcome, amount_v, term_v)
    chart = None
    limit = (limit_view.view(request.app.state, _paths(request), app["entity_id"], lang, term_v)
             if answer is not None and answer.status == "scored" else None)
    if answer is not None and answer.explanation is not None:
        top = sorted(answer.explanation.contributions, key=lambda c: abs(c.points), reverse=True)[:10]
        chart = charts.contributions_svg(
            [(FEATURES_BY_NAME[c.feature].vi if lang == "vi" else FEATURES_BY_NAME[c.feature].en,
              c.points) for c in top], lang)
    return render(request, "applicant.html", lang=lang, officer=officer, app=app, consent=consent,
                  answer=answer, error=error, error_detail=detail, chart=chart, limit=limit,
                  amount=amount_v if amount_v is not None else amount,
                  term=term_v if term_v is not None else term, decided=decided,
                  status=422 if error else 200)


@web.get("/console/applicant/{application_id}", response_class=HTMLResponse)
def applicant(request: Request, application_id: str) -> HTMLResponse:
    q = request.query_params
    return _applicant(request, application_id, q.get("amount"), q.get("term"), q.get("decided"))


@web.post("/console/applicant/{application_id}", response_class=HTMLResponse)
def applicant_whatif(request: Request, application_id: str, amount_vnd: str = Form(""),
                     term_months: str = Form(""), csrf: str = Form("")) -> HTMLResponse:
    """The what-if form without JavaScript: a POST like the decision's, so it needs the CSRF token
    too (another site must not make an officer's browser re-score and audit applicants)."""
    officer = _officer(request)
    if officer is not None and not _csrf_ok(officer, csrf):
        return _error_page(request, 403, "forbidden")
    return _applicant(request, application_id, amount_vnd, term_months, outcome="whatif")


@web.post("/console/api/whatif")
async def whatif_json(request: Request) -> JSONResponse:
    import anyio  # noqa: PLC0415

    officer = await anyio.to_thread.run_sync(_officer, request)  # a database read: off the loop
    if officer is None:
        return JSONResponse({"error": "unauthenticated", "message": "sign in again"}, status_code=401)
    if not _csrf_ok(officer, request.headers.get("x-csrf-token")):
        return JSONResponse({"error": "forbidden", "message": "bad CSRF token"}, status_code=403)
    try:
        body = await request.json()
    except ValueError:
        return JSONResponse({"error": "invalid_request", "message": "the body is not JSON"}, status_code=400)
    if not isinstance(body, dict):
        return JSONResponse({"error": "invalid_request", "message": "the body must be a JSON object"},
                            status_code=400)
    return await anyio.to_thread.run_sync(_whatif, request, officer, body)


def _whatif(request: Request, officer: Officer, body: dict) -> JSONResponse:
    app = _application(request, officer, str(body.get("application_id", "")), "/app/console/api/whatif")
    if app is None:
        return JSONResponse({"error": "not_found", "message": "no such application"}, status_code=404)
    consent = _consent(request, officer, app)
    if not consent.active:
        _refusal(request, officer, app, consent, "/app/console/api/whatif")
        return JSONResponse({"error": "no_consent", "message": _consent_words(consent, "en"),
                             "message_vi": _consent_words(consent, "vi")}, status_code=403)
    amount = _int_field(body.get("amount_vnd"), 1, 10**13)
    term = _int_field(body.get("term_months"), *TERM_MONTHS)
    if amount is None or term is None:
        return JSONResponse({"error": "invalid_request", "message": text("whatif_invalid", "en"),
                             "message_vi": text("whatif_invalid", "vi")}, status_code=422)
    try:
        answer = _rescore(request, app, amount, term)
    except ApiError as exc:
        key = _refused_key(exc)
        return JSONResponse({"error": exc.error, "message": exc.message, "message_vi": text(key, "vi"),
                             "message_en": text(key, "en")}, status_code=exc.status)
    _shown_answer(request, officer, app, answer, "/app/console/api/whatif", "whatif", amount, term)
    return JSONResponse({"status": answer.status, "score": answer.score, "grade": answer.grade,
                         "pd": answer.pd, "amount_vnd": amount, "term_months": term})


def _consent_words(consent: disclosure.Consent, lang: str) -> str:
    """'No consent for this fund: <why>' in one language (the page, the JSON, the queue)."""
    return f"{text('no_consent', lang)}: {text('consent_' + consent.state, lang, date=consent.on)}"


@web.post("/console/decision")
def decision(request: Request, application_id: str = Form(""), decision: str = Form(""),
             note: str = Form(""), csrf: str = Form(""), amount_vnd: str = Form(""),
             term_months: str = Form("")) -> Response:
    """Approve or decline, re-scored for the amount and term decided: what the scorer refuses (above
    the Decree 156 limit, a bad amount, not enough history) is refused here too, and audited."""
    officer = _officer(request)
    if officer is None:
        return _to_login(request)
    if not _csrf_ok(officer, csrf):
        return _error_page(request, 403, "forbidden")
    app = _application(request, officer, application_id, "/app/console/decision")
    if app is None:
        return _error_page(request, 404, "not_found")
    if decision not in ("approve", "decline"):
        return _error_page(request, 400, "error")
    consent = _consent(request, officer, app)
    if not consent.active:  # a decision rests on the score: none without consent
        _refusal(request, officer, app, consent, "/app/console/decision")
        return _no_consent_page(request, officer, app, consent, decision_refused=True)
    amount, term = _int_field(amount_vnd, 1, 10**13), _int_field(term_months, *TERM_MONTHS)
    answer, refused = None, None
    if amount is None or term is None:
        refused = ("whatif_invalid", text("whatif_invalid", "en"), "invalid_request", 422)
    else:
        try:
            answer = _rescore(request, app, amount, term)
        except ApiError as exc:
            over = any(f.get("field") == "application.amount_vnd" for f in exc.fields)
            refused = ("decision_over_limit" if over else "decision_refused", exc.message, exc.error, 422)
        else:
            if answer.status != "scored":
                refused = ("decision_insufficient", text("decision_insufficient", "en"), answer.status, 422)
    if refused is not None:
        key, message, code, status = refused
        _audit(request, [disclosure.entry(officer.bank_id, officer.key_id, app["entity_id"],
                                          "/app/console/decision", "decision_refused", http_status=status,
                                          answer={"application_id": application_id, "decision": decision,
                                                  "amount_vnd": amount, "term_months": term,
                                                  "error": code, "message": message})])
        return render(request, "applicant.html", status=status, officer=officer, app=app, consent=consent,
                      answer=None, error=text(key, _lang(request)), chart=None, decided=None,
                      amount=amount if amount is not None else amount_vnd,
                      term=term if term is not None else term_months,
                      refused={"text": text(key, _lang(request)), "detail": message})
    outcome = "approved" if decision == "approve" else "declined"
    entry = AuditEntry(
        request_id=uuid.uuid4().hex, at=datetime.now(timezone.utc), bank_id=officer.bank_id,
        key_id=officer.key_id, subject_type="member", subject_id=app["entity_id"],
        endpoint="/app/console/decision", http_status=200, outcome=outcome,
        model_name=answer.model.name, model_version=answer.model.version, as_of_date=answer.as_of_date,
        answer=json.dumps({"application_id": application_id, "note": note[:2000],
                           "amount_vnd": amount, "term_months": term, "score": answer.score,
                           "grade": answer.grade, "pd": answer.pd}, ensure_ascii=False))
    _audit(request, [entry])
    query = urlencode({"decided": outcome, "amount": amount, "term": term,
                       **({"lang": "en"} if _lang(request) == "en" else {})})
    return RedirectResponse(f"{_prefix(request)}/console/applicant/{application_id}?{query}",
                            status_code=303)
