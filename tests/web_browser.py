"""Helpers for the web-page tests: Debian's headless Chromium through Playwright (no download),
screenshots, load times and WCAG contrast computed from the page's computed styles."""
from __future__ import annotations

import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "var" / "test-artifacts" / "screenshots"
LOAD_TIMES: dict[str, float] = {}


def launch(playwright):
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.fail("Chromium is missing: `apt-get install -y chromium` (.ci/run does it)")
    return playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--headless=new"])


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium per test module (import this fixture and `page` into the module)."""
    from playwright import sync_api

    with sync_api.sync_playwright() as p:
        b = launch(p)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    """A fresh desktop-size page in its own browser context."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    yield pg
    context.close()


def screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path


def load_time_ms(page, name: str) -> float:
    """Navigation start to the end of the load event, from the Navigation Timing API."""
    ms = page.evaluate("""() => { const n = performance.getEntriesByType('navigation')[0];
                                  return n.loadEventEnd - n.startTime; }""")
    LOAD_TIMES[name] = ms
    print(f"load time {name}: {ms:.0f} ms")
    return ms


# Contrast of every visible element that has its own text, against the first opaque background
# behind it (WCAG 2 relative luminance). Returns the failures.
CONTRAST_JS = """() => {
  const parse = c => { const m = c.match(/rgba?\\(([^)]+)\\)/); if (!m) return null;
    const p = m[1].split(',').map(x => parseFloat(x)); return {r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1}; };
  const lum = c => { const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b); };
  const bg = el => { for (let e = el; e; e = e.parentElement) { const c = parse(getComputedStyle(e).backgroundColor);
    if (c && c.a > 0.5) return c; } return {r: 255, g: 255, b: 255, a: 1}; };
  const out = []; let checked = 0;
  for (const el of document.querySelectorAll('body *')) {
    if (['SCRIPT', 'STYLE', 'svg', 'SVG'].includes(el.tagName) || el.closest('svg')) continue;
    const own = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
    const r = el.getBoundingClientRect();
    if (!own || r.width === 0 || r.height === 0 || r.right < 0) continue;
    const fg = parse(getComputedStyle(el).color), b = bg(el);
    const [hi, lo] = [lum(fg), lum(b)].sort((x, y) => y - x);
    const ratio = (hi + 0.05) / (lo + 0.05); checked++;
    if (ratio < 4.5) out.push({tag: el.tagName, text: el.textContent.trim().slice(0, 40), ratio});
  }
  return {checked, failures: out};
}"""

LABELS_JS = """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
  .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label'))
  .map(el => el.name || el.id)"""


class ThreadServer:
    """An ASGI app served by uvicorn in a thread of the test process (for the member page with a
    stand-in ranking)."""

    def __init__(self, app):
        import uvicorn

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="warning", root_path=""))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started and time.time() < deadline:
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


# -- the console in-process (Starlette's TestClient), for tests where a browser adds nothing ---------
def fund_key(records, bank_id: str, scopes=("console",)) -> str:
    """A console key of the lender `bank_id` (registered on first use: one records store per session)."""
    if bank_id in {b["bank_id"] for b in records.list_banks()}:
        return records.issue_key(bank_id, list(scopes)).token
    return records.add_bank(bank_id, f"Fund {bank_id}", list(scopes)).token


def consent(records, member_id: str, bank_id: str) -> str:
    """The member's consent for the fund, recorded as the platform's operator would; its id."""
    from datetime import datetime, timedelta, timezone

    from records import Operator

    return records.grant_consent("member", member_id, bank_id, purpose="credit_scoring",
                                 expires_at=datetime.now(timezone.utc) + timedelta(days=300),
                                 source="operator", actor=Operator("tests"))["consent_id"]


def console_client(paths, records, scorer):
    """A TestClient on the web app with the service's state (paths, records, scorer)."""
    from starlette.testclient import TestClient

    from serving.web.app import web

    web.state.paths, web.state.records, web.state.scorer = paths, records, scorer
    return TestClient(web, follow_redirects=False)


def sign_in(client, key: str) -> str:
    """Sign `client` in with a console key; returns the page's CSRF token."""
    import re

    response = client.post("/console/login", data={"api_key": key})
    assert response.status_code == 303, response.text
    page = client.get("/console")
    assert page.status_code == 200, page.text
    return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
