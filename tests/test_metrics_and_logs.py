"""Metrics and JSON logs of the real server: after calls with known outcomes, GET /metrics counts them
by route template and outcome (BentoML's own series next to ours), the model-version gauge says what
/v1/status says, and neither a label nor a log line carries a subject id, a key or a member token."""
from __future__ import annotations

import json
from collections import Counter

import httpx
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from serving import metrics
from serving.launcher import start_server, stop_server

pytestmark = pytest.mark.e2e

SLOW_BANK = "slowbank"  # a rate limit of one request, then 429


@pytest.fixture(scope="module")
def served(pipeline_home, bank_token, tmp_path_factory):
    log_path = tmp_path_factory.mktemp("json-logs") / "server.log"
    proc, base = start_server(pipeline_home.home, log_path=log_path, env={
        "COOPSCORE_JSON_LOGS": "1", "COOPSCORE_RATE_LIMITS": f"{SLOW_BANK}=0.001/1"})
    with httpx.Client(base_url=base, timeout=30, headers={"Authorization": f"Bearer {bank_token}"}) as client:
        yield client, log_path
    stop_server(proc)


@pytest.fixture(scope="module")
def subjects(pipeline_home, grant):
    """A consented member with history, one without consent, and the member's first day on the platform."""
    snap = pd.read_parquet(pipeline_home.features / "snapshot.parquet")
    ids = snap[(snap.entity_type == "member") & (snap.transactions_365d > 40)].entity_id
    member, stranger = ids.iloc[3], ids.iloc[-5]
    grant("member", member)
    tx = pd.read_parquet(pipeline_home.clean / "transactions.parquet")
    first_day = tx[tx.entity_id == member].ts.min()
    return member, stranger, (first_day + pd.Timedelta(days=30)).date().isoformat()


def _body(subject_id, amount=50_000_000, **extra):
    return {"subject_type": "member", "subject_id": subject_id,
            "application": {"amount_vnd": amount, "term_months": 12, "purpose": "working_capital"}, **extra}


def _scrape(client) -> tuple[str, dict]:
    response = client.get("/metrics")
    assert response.status_code == 200
    samples = {(s.name, frozenset(s.labels.items())): s.value
               for family in text_string_to_metric_families(response.text) for s in family.samples}
    return response.text, samples


def _delta(after, before, name, **labels) -> float:
    key = (name, frozenset(labels.items()))
    return after.get(key, 0.0) - before.get(key, 0.0)


@pytest.fixture(scope="module")
def calls(served, subjects, records, platform_token, pipeline_home):
    """The calls, their answers, and /metrics before and after; the secrets none of it may show."""
    from serving.web import links

    client, log_path = served
    member, stranger, early = subjects
    slow_token = records.add_bank(SLOW_BANK, "Slow bank", ("scores:read", "scores:batch")).token
    member_token = links.member_link(member, str(client.base_url), pipeline_home).rsplit("/", 1)[1]
    platform = {"Authorization": f"Bearer {platform_token}"}
    _, before = _scrape(client)
    answers = {
        "scored": [client.post("/v1/scores", json=_body(member)),
                   client.post("/v1/scores", json=_body(member, amount=20_000_000))],
        "insufficient_history": [client.post("/v1/scores", json=_body(member, as_of_date=early))],
        "no_consent": [client.post("/v1/scores", json=_body(stranger))],
        "invalid": [client.post("/v1/scores", json=_body(member, amount=-5))],
        "refused": [client.post("/v1/scores", json=_body(member), headers={"Authorization": "Bearer nope"})],
    }
    slow = [client.post("/v1/scores", json=_body(member), headers={"Authorization": f"Bearer {slow_token}"})
            for _ in range(3)]
    batch = client.post("/v1/scores:batch", json={"applications": [_body(member), _body(stranger)]})
    read = client.get(f"/v1/subjects/member/{member}/consents", headers=platform)
    page = client.get(f"/app/member/{member_token}")
    status = client.get("/v1/status").json()
    text, after = _scrape(client)
    return dict(answers=answers, slow=slow, batch=batch, read=read, page=page, status=status,
                before=before, after=after, text=text, log_path=log_path,
                secrets=[member, stranger, client.headers["Authorization"].split()[1], slow_token,
                         platform_token, member_token])


def test_answers_are_counted_by_route_template_and_outcome(calls):
    before, after = calls["before"], calls["after"]
    answers = calls["answers"]
    assert [r.json()["status"] for r in answers["scored"]] == ["scored", "scored"]
    assert answers["insufficient_history"][0].json()["status"] == "insufficient_history"
    assert answers["no_consent"][0].json()["error"] == "no_consent"
    assert answers["invalid"][0].status_code == 422
    assert answers["refused"][0].status_code == 401
    expected = Counter({outcome: len(responses) for outcome, responses in answers.items()})
    # the slow bank's calls: 429 once its burst of one is spent, else 403 (no consent for it)
    expected.update({"rate_limited": sum(r.status_code == 429 for r in calls["slow"]),
                     "no_consent": sum(r.status_code == 403 for r in calls["slow"])})
    assert sum(r.status_code in (403, 429) for r in calls["slow"]) == len(calls["slow"])
    for outcome in metrics.OUTCOMES:
        assert _delta(after, before, "coopscore_answers_total", endpoint="/v1/scores",
                      outcome=outcome) == expected[outcome], outcome

    limited = sum(r.status_code == 429 for r in calls["slow"])
    assert limited >= 1  # a burst of one per worker: of three calls, one or two are refused
    assert _delta(after, before, "coopscore_rate_limited_total", endpoint="/v1/scores") == limited

    scored_calls = sum(map(len, calls["answers"].values())) + len(calls["slow"])
    assert _delta(after, before, "coopscore_request_duration_seconds_count", endpoint="/v1/scores") == scored_calls

    assert calls["batch"].status_code == 200
    assert _delta(after, before, "coopscore_answers_total", endpoint="/v1/scores:batch", outcome="ok") == 1
    assert _delta(after, before, "coopscore_batch_items_total", outcome="scored") == 1
    assert _delta(after, before, "coopscore_batch_items_total", outcome="no_consent") == 1

    assert calls["read"].status_code == 200
    template = "/v1/subjects/{subject_type}/{subject_id}/consents"
    assert _delta(after, before, "coopscore_answers_total", endpoint=template, outcome="ok") == 1

    for (name, labels), _ in after.items():
        if name.startswith("coopscore_answers"):
            assert dict(labels)["outcome"] in metrics.OUTCOMES


def test_audit_writes_are_timed_and_none_failed(calls):
    before, after = calls["before"], calls["after"]
    commits = _delta(after, before, "coopscore_audit_write_seconds_count")
    assert 1 <= commits <= 12  # group commit: requests may share one; 401, 422 and 429 write none
    assert sum(v for (name, _), v in after.items() if name == "coopscore_audit_write_failures_total") == 0


def test_the_model_version_gauge_matches_the_status(calls):
    after = calls["after"]
    serving = {(dict(labels)["subject"], dict(labels)["version"]) for (name, labels), v in after.items()
               if name == "coopscore_model_info" and v == 1}
    assert serving == {(s, v) for s, v in calls["status"]["models"].items() if v is not None}
    assert serving and not any(name == "coopscore_model_reload_failures_total" and v
                               for (name, _), v in after.items())


def test_bentomls_own_series_are_served_with_route_templates(calls):
    after = calls["after"]
    endpoints = {dict(labels).get("endpoint") for (name, labels) in after if name.startswith("bentoml_")}
    assert {"/v1/scores", "/v1/subjects/{subject_type}/{subject_id}/consents", "/app/member/{token}"} <= endpoints
    assert calls["page"].status_code in (200, 403, 404)


def test_no_label_carries_a_subject_id_a_key_or_a_member_token(calls):
    text = calls["text"]
    for secret in calls["secrets"] + [SLOW_BANK, "testbank"]:
        assert secret not in text, f"/metrics shows {secret[:6]}..."
    labels = {value for family in text_string_to_metric_families(text) for s in family.samples
              for key, value in s.labels.items() if key == "endpoint"}
    assert all(v in metrics.BENTOML_PATHS or v == metrics.UNMATCHED or v.startswith(("/v1/", "/app/"))
               for v in labels), labels


def test_json_logs_one_line_per_event_with_the_request_id_and_no_personal_data(calls):
    lines = [line for line in calls["log_path"].read_text().splitlines() if line.strip()]
    events = [json.loads(line) for line in lines]  # every line is JSON
    for event in events:
        assert {"time", "level", "logger", "event"} <= set(event), event
    requests = [e for e in events if e["logger"] == "coopscore.request" and e["event"] == "request"]
    by_id = {e["request_id"]: e for e in requests}
    answered = [r for rs in calls["answers"].values() for r in rs] + calls["slow"] + [calls["batch"]]
    for response in answered:
        event = by_id[response.json()["request_id"]]
        assert event["status"] == response.status_code
        assert event["endpoint"] in ("/v1/scores", "/v1/scores:batch")
        assert event["duration_ms"] >= 0
    outcomes = Counter(by_id[r.json()["request_id"]]["outcome"] for rs in calls["answers"].values() for r in rs)
    assert outcomes == Counter({k: len(v) for k, v in calls["answers"].items()})
    text = "\n".join(lines)
    for secret in calls["secrets"]:
        assert secret not in text, f"the server log shows {secret[:6]}..."
