"""The monitoring page of the fund console in a real headless Chromium, on the shifted home of
tests/test_monitoring.py (built once per session): behind the console login, Vietnamese first with
English, the three charts drawn, every monitored month in the table, the alerts in the page's words."""
from __future__ import annotations

import os
import re

import pytest

from test_monitoring import proof_home
from web_browser import ThreadServer, screenshot
from web_browser import browser, page  # noqa: F401 (fixtures)
from web_browser import fund_key as new_fund_key

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500)]
sync_api = pytest.importorskip("playwright.sync_api")
FUND = "quy-htx-trung-uong"
CODE = re.compile(r"\b[A-Z]{3,}_[A-Z_]{3,}\b")  # a reason code such as CASH_HEAVY


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    from records import Records
    from scoring.monitor_run import monitor, read_tables
    from scoring.scorer import Scorer
    from serving.web.app import web
    from settings import Paths, reset_settings

    home = proof_home(tmp_path_factory)
    os.environ["COOPSCORE_HOME"] = str(home)
    reset_settings()
    paths = Paths(home)
    if read_tables(paths)["monthly"].empty:
        monitor(paths, "member", log=False, draws=300)
    months = sorted(read_tables(paths)["monthly"]["month"].unique())
    with Records(paths) as records:
        key = new_fund_key(records, FUND)
        web.state.paths, web.state.records, web.state.scorer = paths, records, Scorer(paths)
        with ThreadServer(web) as url:
            yield url, key, months


def _sign_in(page, url, key):
    page.goto(f"{url}/console/monitoring")
    page.fill("#api_key", key)  # signed out: the console's login, not the page
    page.click("button[type=submit]")
    page.wait_for_load_state()


def test_monitoring_page_in_vietnamese_then_english(page, site):
    url, key, months = site
    page.goto(f"{url}/console/monitoring")
    assert page.locator("#api_key").count() == 1 and page.locator("#months").count() == 0
    _sign_in(page, url, key)
    assert page.locator("#nav-monitoring").count() == 1  # the console links to the page
    page.click("#nav-monitoring")
    page.wait_for_selector("#months")
    assert page.locator("h1").inner_text() == "Giám sát mô hình theo tháng"
    for chart in ("#psi-chart", "#auc-chart", "#vintage-chart"):
        svg = page.locator(f"{chart} svg")
        assert svg.count() == 1, chart
        assert svg.locator("polyline").count() >= 1, chart
        assert svg.get_attribute("aria-label"), chart
    assert page.locator("#auc-chart svg circle").count() >= 5  # realised AUC as labels matured
    assert page.locator("#months tbody tr").count() == len(months)
    assert page.locator("#alerts li.alert-act").count() >= 1
    visible = page.locator("main").inner_text()
    assert "PSI của" in visible and "PSI of" not in visible
    assert not CODE.findall(visible), CODE.findall(visible)[:5]
    screenshot(page, "monitoring-vi")

    page.click("text=English")
    page.wait_for_selector("#months")
    assert page.locator("h1").inner_text() == "Model monitoring, month by month"
    visible = page.locator("main").inner_text()
    assert "PSI of" in visible and "Giám sát" not in visible
    assert not CODE.findall(visible)
    screenshot(page, "monitoring-en")
