"""Fuzzing the real server with schemathesis, from its own OpenAPI spec (/v1/openapi.json).

Every operation of the spec gets generated requests (valid ones, then invalid ones), sent over HTTP
with a bank key that has every scope, to the real BentoML server. What must hold for every answer:
- no 5xx, ever (schemathesis's `not_a_server_error`);
- the answer conforms to the spec: a documented status code, content type and response schema.
Some generated scoring requests get the id of a member who consented to the bank, so that fuzzed
amounts, terms and dates reach the scorer; hand-made valid requests must answer 200/201.

Size: COOPSCORE_FUZZ_EXAMPLES examples per operation and mode (default 25, reproducible:
derandomized). `make fuzz` runs 500. The counts (cases run, failed) are printed in pytest's
terminal summary and written as JSON to the test's tmp dir (path in the summary).
"""
from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import hypothesis
import hypothesis.errors
import hypothesis.strategies as st
import pandas as pd
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                              status_code_conformance)

from serving.launcher import start_server, stop_server

pytestmark = pytest.mark.e2e

EXAMPLES = int(os.environ.get("COOPSCORE_FUZZ_EXAMPLES", "25"))
CONFORMANCE = [status_code_conformance, content_type_conformance, response_schema_conformance]


@dataclass
class Tally:
    """What ran and what failed, per operation and mode."""
    cases: Counter = field(default_factory=Counter)
    statuses: dict = field(default_factory=lambda: defaultdict(Counter))
    server_errors: list = field(default_factory=list)  # 5xx or no answer at all
    conformance: list = field(default_factory=list)  # answers that do not match the spec
    failed_cases: int = 0
    skipped: list = field(default_factory=list)  # operations with nothing to generate in a mode

    def to_json(self) -> dict:
        return {"examples_per_operation_and_mode": EXAMPLES, "cases": sum(self.cases.values()),
                "failed_cases": self.failed_cases, "server_errors": len(self.server_errors),
                "conformance_failures": len(self.conformance),
                "skipped": self.skipped, "cases_by_operation": dict(self.cases),
                "statuses_by_operation": {k: {str(s): n for s, n in v.items()}
                                          for k, v in self.statuses.items()},
                "failures_by_kind": [
                    {"operation": op, "status": status, "error": error, "count": n}
                    for (op, status, error), n in Counter(
                        (e["operation"], e.get("status"), e["error"])
                        for e in self.server_errors + self.conformance).most_common()],
                "server_error_details": self.server_errors[:200],
                "conformance_details": self.conformance[:200]}


class _Summary:
    """A pytest plugin registered by the fixture: the counts in the terminal summary, with or
    without -s."""

    def __init__(self, tally: Tally, path):
        self.tally, self.path = tally, path

    def pytest_terminal_summary(self, terminalreporter):
        t = self.tally
        terminalreporter.write_sep("-", "schemathesis fuzz of /v1")
        terminalreporter.write_line(
            f"fuzz: {sum(t.cases.values())} cases run ({EXAMPLES} examples per operation and mode), "
            f"{t.failed_cases} failed: {len(t.server_errors)} with 5xx or no answer, "
            f"{len(t.conformance)} not conforming to the spec; details in {self.path}")


@pytest.fixture(scope="module")
def server(pipeline_home, bank_token):
    # the rate limit would turn part of the fuzz into 429s: raised, the fuzz reaches the handlers
    proc, base = start_server(pipeline_home.home, env={"COOPSCORE_RATE_LIMIT": "100000/200000"},
                              log_path=pipeline_home.home / "fuzz-server.log")
    yield base
    stop_server(proc)


@pytest.fixture(scope="module")
def consented(pipeline_home, grant) -> list[str]:
    """Members with history who consented to the test bank: their requests reach the scorer."""
    snap = pd.read_parquet(pipeline_home.features / "snapshot.parquet")
    ids = snap[(snap.entity_type == "member") & (snap.transactions_365d > 20)].entity_id.head(8).tolist()
    assert ids, "the test data set has no member with history"
    for member_id in ids:
        grant("member", member_id)
    return ids


@pytest.fixture(scope="module")
def tally(request, tmp_path_factory) -> Tally:
    tally = Tally()
    path = tmp_path_factory.mktemp("fuzz") / "fuzz-report.json"
    request.config.pluginmanager.register(_Summary(tally, path), "coopscore-fuzz-summary")
    yield tally
    path.write_text(json.dumps(tally.to_json(), indent=2, default=str), encoding="utf-8")


@pytest.fixture(scope="module")
def api(server):
    """The loaded schema and the base URL its paths are relative to."""
    schema = schemathesis.openapi.from_url(f"{server}/v1/openapi.json")
    paths = list(schema.raw_schema["paths"])
    base_url = server if all(p.startswith("/v1") for p in paths) else f"{server}/v1"
    return schema, base_url


def _operations(schema) -> list:
    ops = [result.ok() for result in schema.get_all_operations()]
    assert len(ops) >= 8, f"expected every endpoint in the spec, got {[op.label for op in ops]}"
    return ops


def _send(case, label: str, mode: str, base_url: str, headers: dict, tally: Tally):
    """One case: call, then the checks; failures are recorded, not raised (no shrinking, exact
    counts). Returns the response or None."""
    key = f"{label} [{mode}]"
    tally.cases[key] += 1
    try:
        response = case.call(base_url=base_url, headers=headers, timeout=60)
    except Exception as exc:  # noqa: BLE001 - no answer at all is a server failure too
        tally.failed_cases += 1
        tally.server_errors.append({"operation": key, "error": f"{type(exc).__name__}: {exc}"[:500],
                                    "curl": _curl(case, headers)})
        return None
    tally.statuses[key][response.status_code] += 1
    failed = False
    try:
        case.validate_response(response, checks=[not_a_server_error], headers=headers)
    except (Exception, FailureGroup) as exc:  # noqa: BLE001 - FailureGroup is a BaseExceptionGroup
        failed = True
        tally.server_errors.append({"operation": key, "status": response.status_code,
                                    "body": response.text[:500], "error": _title(exc),
                                    "curl": _curl(case, headers)})
    try:
        case.validate_response(response, checks=CONFORMANCE, headers=headers)
    except (Exception, FailureGroup) as exc:  # noqa: BLE001
        failed = True
        tally.conformance.append({"operation": key, "status": response.status_code,
                                  "body": response.text[:500], "error": _title(exc),
                                  "curl": _curl(case, headers)})
    tally.failed_cases += failed
    return response


def _title(exc: BaseException) -> str:
    """The failed checks' titles (e.g. 'Undocumented status code'), or the exception."""
    failures = getattr(exc, "exceptions", None) or [exc]
    return "; ".join(f"{type(f).__name__}: {getattr(f, 'title', None) or str(f)[:300]}"
                     for f in failures)


def _curl(case, headers: dict) -> str:
    try:
        return case.as_curl_command(headers={**headers, "Authorization": "Bearer <test key>"})
    except Exception:  # noqa: BLE001
        return "(no curl)"


def _with_consented_ids(strategy, ids: list[str]):
    """About half the generated scoring requests ask about a consented member."""
    def swap(drawn):
        case, member_id, use = drawn
        if use and isinstance(case.body, dict):
            if "applications" in case.body and isinstance(case.body["applications"], list):
                for item in case.body["applications"]:
                    if isinstance(item, dict):
                        item["subject_type"], item["subject_id"] = "member", member_id
            elif "subject_id" in case.body:
                case.body["subject_type"], case.body["subject_id"] = "member", member_id
        return case
    return st.tuples(strategy, st.sampled_from(ids), st.booleans()).map(swap)


PLATFORM_PATHS = ("/consents", "/revoke", "/access-log")  # the platform's own endpoints


def _key_for(path: str, bank_token: str, platform_token: str) -> dict:
    """The platform's key on its endpoints, the bank's on the others: the fuzz reaches the handlers."""
    token = platform_token if path.endswith(PLATFORM_PATHS) else bank_token
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_fuzz_every_operation(api, bank_token, platform_token, consented, tally, mode):
    schema, base_url = api
    for op in _operations(schema):
        headers = _key_for(op.path, bank_token, platform_token)
        strategy = op.as_strategy(generation_mode=mode)
        if mode is GenerationMode.POSITIVE and op.method.upper() == "POST" and "/scores" in op.path:
            strategy = _with_consented_ids(strategy, consented)

        @hypothesis.given(case=strategy)
        @hypothesis.settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
                             phases=[Phase.explicit, Phase.generate], print_blob=False,
                             suppress_health_check=list(HealthCheck))
        def run(case):
            _send(case, op.label, mode.value, base_url, headers, tally)

        try:
            run()
        except hypothesis.errors.Unsatisfiable:
            # nothing to make invalid (GET /reason-codes, /status have no parameters): not a failure
            assert mode is GenerationMode.NEGATIVE, f"{op.label}: no valid request could be generated"
            tally.skipped.append(f"{op.label} [{mode.value}]")
    mine = [e for e in tally.server_errors if e["operation"].endswith(f"[{mode.value}]")]
    assert not mine, f"{len(mine)} requests got a 5xx or no answer:\n" + json.dumps(mine[:5], indent=2)


def test_spec_examples_and_valid_requests_answer(api, bank_token, platform_token, consented, tally):
    """The spec's own examples, and hand-made valid requests that must reach the scorer (200/201),
    through the same checks."""
    from datetime import datetime, timedelta, timezone

    schema, base_url = api
    headers = {"Authorization": f"Bearer {bank_token}"}
    platform = {"Authorization": f"Bearer {platform_token}"}
    ops = {(op.method.upper(), op.path): op for op in _operations(schema)}

    def op(method, suffix):
        return next(o for (m, p), o in ops.items() if m == method and p.endswith(suffix))

    examples = 0
    for operation in ops.values():
        for strategy in schema.get_strategies_from_examples(operation):
            @hypothesis.given(case=strategy)
            @hypothesis.settings(max_examples=5, derandomize=True, database=None, deadline=None,
                                 suppress_health_check=list(HealthCheck))
            def run(case):
                _send(case, operation.label, "examples", base_url,
                      _key_for(operation.path, bank_token, platform_token), tally)
            run()
            examples += 1

    member = consented[0]
    application = {"amount_vnd": 50_000_000, "term_months": 12, "purpose": "working_capital"}
    score = op("POST", "/scores")
    r = _send(score.Case(body={"subject_type": "member", "subject_id": member,
                               "application": application}),
              score.label, "valid", base_url, headers, tally)
    assert r is not None and r.status_code == 200, r and r.text
    assert r.json()["subject_id"] == member

    batch = op("POST", "/scores:batch")
    items = [{"subject_type": "member", "subject_id": m, "application": application} for m in consented]
    items.append({"subject_type": "member", "subject_id": "TV9999999", "application": application})
    r = _send(batch.Case(body={"applications": items}), batch.label, "valid", base_url, headers, tally)
    assert r is not None and r.status_code == 200, r and r.text
    results = r.json()["results"]
    assert [x["status"] != "rejected" for x in results] == [True] * len(consented) + [False]

    grant = op("POST", "/consents")
    until = (datetime.now(timezone.utc) + timedelta(days=200)).isoformat()
    r = _send(grant.Case(body={"subject_type": "member", "subject_id": consented[1],
                               "bank_id": "testbank", "purpose": "credit_scoring", "expires_at": until,
                               "source": "application_form"}),
              grant.label, "valid", base_url, platform, tally)
    assert r is not None and r.status_code == 201, r and r.text
    revoke = op("POST", "/revoke")
    r = _send(revoke.Case(path_parameters={"consent_id": r.json()["consent_id"]},
                          body={"source": "member_page"}),
              revoke.label, "valid", base_url, platform, tally)
    assert r is not None and r.status_code == 200, r and r.text

    for suffix in ("/consents", "/access-log"):
        get = op("GET", suffix)
        r = _send(get.Case(path_parameters={"subject_type": "member", "subject_id": member}),
                  get.label, "valid", base_url, platform, tally)
        assert r is not None and r.status_code == 200 and r.json(), r and r.text
    for suffix in ("/reason-codes", "/status"):
        get = op("GET", suffix)
        r = _send(get.Case(), get.label, "valid", base_url, headers, tally)
        assert r is not None and r.status_code == 200, r and r.text

    mine = [e for e in tally.server_errors if e["operation"].endswith(("[examples]", "[valid]"))]
    assert not mine, json.dumps(mine[:5], indent=2)


def test_answers_conform_to_the_spec(tally):
    """Runs last: every answer of the fuzz had a documented status, content type and body."""
    assert sum(tally.cases.values()) > 0
    assert not tally.conformance, (f"{len(tally.conformance)} answers do not match the spec:\n"
                                   + json.dumps(tally.conformance[:5], indent=2))
