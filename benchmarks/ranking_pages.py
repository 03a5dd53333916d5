"""Speed of the members' ranking and of the web pages, reproducible with one command:
`make benchmark-ranking`.

    python -m benchmarks.ranking_pages [--home DIR] [--members 20000] [--cooperatives 1000]
                                       [--sample 200] [--repeats 3] [--rows 1000000]
                                       [--loads 20] [--out docs/benchmarks-ranking.md]

Builds a demo-size home (20,000 members, 1,000 cooperatives, seed 42) in a temporary folder (or
reuses --home) with benchmarks.api_bench.build_home and measures, each against a baseline in the
same run:
1. ranking.rank.rank_members for every member against the obvious implementation: per member one
   Scorer.score of the reference application, then one single-row re-score per advice lever,
   timed on a sample and extrapolated to every member;
2. ranking.bench.main at 10^6 members (the snapshot tiled) against the same baseline extrapolated;
3. page load times in Debian's Chromium (Navigation Timing, navigation start to loadEventEnd) on
   the real server: the member page, the console queue (its first load after the server starts
   scores the queue, so it is reported apart) and an applicant page, against the server's floor,
   a page that renders no data (the member page with a forged link: the 403 error page).
Writes docs/benchmarks-ranking.md with the machine and the date.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import resource
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from importlib.metadata import version
from pathlib import Path

import numpy as np

from benchmarks.api_bench import build_home, machine, say
from settings import Paths
from ranking import advice, rank
from scoring import schemas
from serving.launcher import start_server, stop_server
from serving.service import WORKERS

ROOT = Path(__file__).resolve().parents[1]
FUND = "demo-bank"  # a lender of the generated data (data_contracts.vocabulary.LENDERS): its queue is non-empty


def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1 (sizes, loads, repeats)."""
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


# -- 1. ranking at the demo size ----------------------------------------------------------------
def earlier_month_start(day: date) -> date:
    """The latest first-of-month before `day`: a ranking date whose history comes from DuckDB."""
    return [d for d in rank.month_starts(day, 2) if d < day][-1]


def time_rank_members(paths: Paths, scorer, repeats: int) -> dict:
    """rank_members on the snapshot date `repeats` times (median run kept, with its step timings)
    and once on the month start before it (history on DuckDB; also gives every member a trend)."""
    runs = []
    for i in range(repeats):
        t = time.perf_counter()
        run = rank.rank_members(paths, as_of=scorer.snapshot_date, scorer=scorer)
        runs.append((time.perf_counter() - t, run))
        say(f"  rank_members as of {run.as_of}, run {i + 1}/{repeats}: {runs[-1][0]:.2f} s")
    runs.sort(key=lambda r: r[0])
    total, run = runs[len(runs) // 2]
    earlier = earlier_month_start(scorer.snapshot_date)
    t = time.perf_counter()
    past = rank.rank_members(paths, as_of=earlier, scorer=scorer)
    past_total = time.perf_counter() - t
    say(f"  rank_members as of {earlier}: {past_total:.2f} s")
    return {"run": run, "total_s": total, "all_s": [r[0] for r in runs],
            "past": past, "past_total_s": past_total}


def rank_one_member_naively(scorer, member_id: str, history_row: np.ndarray):
    """The obvious implementation for one member: one Scorer.score of the reference application,
    then the advice followed live for this member alone (ranking.advice.advise(stored=False): each
    lever applied to the member's raw rows, the features recomputed, re-scored). Returns the response."""
    request = schemas.ScoreRequest(
        subject_type="member", subject_id=member_id,
        application=schemas.Application(amount_vnd=rank.REFERENCE_AMOUNT_VND,
                                        term_months=rank.REFERENCE_TERM_MONTHS,
                                        purpose=rank.REFERENCE_PURPOSE))
    response = scorer.score(request)
    advice.advise(scorer, member_id, stored=False)
    return response


def naive_baseline(scorer, frame, sample: int) -> dict:
    """Per-member time of the naive ranking on a random sample of RANKED members (the ones that
    cost: members without enough history are left out, so the extrapolation flatters the
    baseline), and whether its scores equal the vectorised run's."""
    ranked = frame.loc[frame["status"] == "ranked", ["member_id", "score"]]
    picked = ranked.sample(n=min(sample, len(ranked)), random_state=7)
    rows = scorer.row[rank.SUBJECT]
    matrix = scorer.matrix[rank.SUBJECT]
    first = picked.iloc[0]["member_id"]
    rank_one_member_naively(scorer, first, matrix[[rows[first]]])  # warm-up, not timed
    ms, same = [], 0
    for member_id, score in zip(picked["member_id"], picked["score"]):
        t = time.perf_counter()
        response = rank_one_member_naively(scorer, member_id, matrix[[rows[member_id]]])
        ms.append((time.perf_counter() - t) * 1000)
        same += abs(response.score - score) < 0.05
    return {"members": len(ms), "mean_ms": float(np.mean(ms)), "p50_ms": float(np.median(ms)),
            "same_score": same, "ranked_members": len(ranked)}


# -- 2. ranking at 10^6 members -----------------------------------------------------------------
def time_at_scale(rows: int) -> dict:
    """ranking.bench.main (tiles the snapshot; scoring, advice, percentiles) and the peak memory
    of this process so far (Linux reports ru_maxrss in KiB)."""
    from ranking import bench

    t = time.perf_counter()
    out = bench.main(rows)
    out["wall_s"] = time.perf_counter() - t
    out["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
    return out


# -- 3. page load times -------------------------------------------------------------------------
def fund_with_consents(paths: Paths, member_ids) -> str:
    """The fund's console key (a new key if the fund exists) and a year's consent of every member
    in the console queue, as the members gave it when they applied."""
    from records import Operator, Records

    with Records(paths) as records:
        try:
            key = records.add_bank(FUND, "Benchmark development fund", ["console"]).token
        except ValueError:
            key = records.issue_key(FUND, ["console"]).token
        until = datetime.now(timezone.utc) + timedelta(days=364)
        for member_id in sorted(set(member_ids)):
            records.grant_consent("member", member_id, FUND, purpose="credit_scoring", expires_at=until,
                                  source="application_form", actor=Operator("benchmark"))
    return key


def choose_pages(paths: Paths, frame) -> dict:
    """Who the pages show: the queue's members (the fund has their consent), its newest
    application from a ranked member (scored on the applicant page) and that member's own page."""
    from serving.web.applications import recent_member_applications

    queue = recent_member_applications(paths, lender_id=FUND)
    ranked = set(frame.loc[frame["status"] == "ranked", "member_id"])
    application = next((r for r in queue.itertuples() if r.entity_id in ranked), None)
    if application is None:
        raise RuntimeError("no application in the console queue is from a ranked member")
    return {"queue_members": sorted(set(queue["entity_id"])), "member_id": application.entity_id,
            "application_id": application.application_id}


def page_urls(paths: Paths, base: str, chosen: dict) -> dict[str, str]:
    """The member's signed link (as `coopscore member-link` prints it), the queue, the applicant,
    and the floor: the same member page with a link signed by another secret (forged)."""
    from serving.web import links

    member = chosen["member_id"]
    forged = links.member_token(member, b"not the service's secret")
    return {"floor": f"{base}/app/member/{forged}",
            "member": links.member_link(member, base, paths=paths),
            "console": f"{base}/app/console",
            "applicant": f"{base}/app/console/applicant/{chosen['application_id']}"}


# What each page must show once loaded (a 200 with an error text inside would measure nothing).
EXPECT = {"floor": (403, "main"), "member": (200, "#tier-h"), "console": (200, "#queue"),
          "applicant": (200, "#contributions svg")}


def load_ms(page, name: str) -> float:
    """tests/web_browser.load_time_ms once the load event has ended (it reads loadEventEnd);
    its per-load print is silenced, progress is said per round instead."""
    from tests.web_browser import load_time_ms

    page.wait_for_function("performance.getEntriesByType('navigation')[0].loadEventEnd > 0")
    with contextlib.redirect_stdout(io.StringIO()):
        return load_time_ms(page, name)


def first_byte_ms(page) -> float:
    """Navigation start to the first byte of the answer: the server's share of the load time."""
    return page.evaluate("() => performance.getEntriesByType('navigation')[0].responseStart")


def open_page(page, name: str, url: str) -> tuple[float, float]:
    """(load time, time to first byte) of one load of the page, checked to be the page expected."""
    status, selector = EXPECT[name]
    response = page.goto(url)
    if response is None or response.status != status:
        raise RuntimeError(f"{name} page {url} answered {response and response.status}, "
                           f"expected {status}")
    page.wait_for_selector(selector)
    return load_ms(page, name), first_byte_ms(page)


def sign_in_first_queue(page, base: str, key: str) -> float:
    """The officer signs in through the form; the redirect lands on the queue, whose first load
    after the server starts scores the queue's applications."""
    page.goto(f"{base}/app/console")
    page.fill("#api_key", key)
    page.click("button[type=submit]")
    page.wait_for_selector(EXPECT["console"][1])
    return load_ms(page, "console")


def measure_pages(urls: dict[str, str], base: str, key: str, loads: int) -> dict:
    """Chromium as tests/web_browser.py drives it. The console's first load comes first, right
    after the server started; then `loads` rounds of every page, interleaved so that a change in
    the machine's other load touches every page alike."""
    from playwright.sync_api import sync_playwright

    from tests.web_browser import CHROMIUM, launch

    if not Path(CHROMIUM).exists():
        raise SystemExit(f"Chromium is missing at {CHROMIUM}: `apt-get install -y chromium`")
    times: dict[str, list[float]] = {name: [] for name in EXPECT}
    first_byte: dict[str, list[float]] = {name: [] for name in EXPECT}
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page()
        first_queue = sign_in_first_queue(page, base, key)
        say(f"  console queue, first load after the server started: {first_queue:.0f} ms")
        for i in range(loads):
            for name in EXPECT:
                load, server = open_page(page, name, urls[name])
                times[name].append(load)
                first_byte[name].append(server)
            say(f"  round {i + 1}/{loads}: " + ", ".join(f"{n} {times[n][-1]:.0f} ms" for n in EXPECT))
        chromium = browser.version
        browser.close()
    return {"first_queue_ms": first_queue, "times": times, "first_byte": first_byte,
            "chromium": chromium}


# -- the report ---------------------------------------------------------------------------------
def stats(values: list[float]) -> dict:
    return {"p50": float(np.percentile(values, 50)), "p95": float(np.percentile(values, 95)),
            "max": float(max(values))}


def write_report(out: Path, m: dict, setup: dict, ranking: dict, naive: dict, scale: dict,
                 pages: dict) -> None:
    run = ranking["run"]
    n = len(run.frame)
    naive_all_s = naive["mean_ms"] / 1000 * naive["ranked_members"]
    naive_scale_s = naive["mean_ms"] / 1000 * scale["rows"]
    scale_s = scale["score_with_reasons_s"] + scale["advice_s"] + scale["percentiles_s"]
    step_rows = "\n".join(f"| {step} | {run.timings[step]:.2f} | {ranking['past'].timings[step]:.2f} |"
                          for step in run.timings)
    floor = stats(pages["times"]["floor"])

    def page_row(name: str, label: str) -> str:
        s, server = stats(pages["times"][name]), stats(pages["first_byte"][name])
        return (f"| {label} | {len(pages['times'][name])} | {s['p50']:.0f} | {s['p95']:.0f} | "
                f"{s['max']:.0f} | {s['p50'] - floor['p50']:+.0f} | {server['p50']:.0f} |")

    text = f"""# Benchmarks: the members' ranking and the web pages

Written by `make benchmark-ranking` (`python -m benchmarks.ranking_pages`) on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.

Machine: {m['cpu']}, {m['cores']} cores, {m['ram']} RAM; {m['os']}; Python {m['python']}, BentoML
{m['bentoml']}, LightGBM {m['lightgbm']}, SHAP {m['shap']}; Chromium {pages['chromium']} through
Playwright {version('playwright')}. Load average before the run: {m['load_before']} (other work may
have shared the machine).

Data: {setup['members']:,} members and {setup['cooperatives']:,} cooperatives (seed 42, built by
`benchmarks.api_bench.build_home`{setup['home_note']}); snapshot date {setup['snapshot_date']}. Scorer loaded once in
{setup['scorer_load_s']:.1f} s and shared by every step below (as `coopscore rank` does).

## 1. Ranking every member, `ranking.rank.rank_members`

| | members | time (s) |
| --- | --- | --- |
| `rank_members` as of the snapshot date (median of {len(ranking['all_s'])}: {', '.join(f'{s:.2f}' for s in ranking['all_s'])}) | {n:,} ({run.ranked:,} ranked) | {ranking['total_s']:.2f} |
| `rank_members` as of {ranking['past'].as_of} (history on DuckDB) | {len(ranking['past'].frame):,} ({ranking['past'].ranked:,} ranked) | {ranking['past_total_s']:.2f} |
| baseline: per member `Scorer.score` + one single-row `Scorer.decide` per lever, {naive['members']} ranked members timed, extrapolated to the {naive['ranked_members']:,} ranked | {naive['ranked_members']:,} | {naive_all_s:.1f} |

Steps of the two `rank_members` runs (seconds, `RankingRun.timings`):

| step | snapshot date | {ranking['past'].as_of} |
| --- | --- | --- |
{step_rows}

Baseline per ranked member: mean {naive['mean_ms']:.1f} ms, p50 {naive['p50_ms']:.1f} ms; its score
equals the vectorised run's for {naive['same_score']} of {naive['members']} members.

Reading: `rank_members` ranks all {n:,} members in {ranking['total_s']:.2f} s, about
{naive_all_s / ranking['total_s']:.0f}x faster than the per-member loop ({naive_all_s:.0f} s). The
baseline leaves out what `rank_members` also does (members without enough history, percentiles,
writing the Parquet partition), so the ratio understates the gap.

## 2. Ranking at {scale['rows']:,} members, `ranking.bench.main`

The snapshot's ranked members tiled up to {scale['rows']:,} rows; nothing is written.

| step | time (s) |
| --- | --- |
| scoring with reasons (`Scorer.decide`, TreeSHAP) | {scale['score_with_reasons_s']:.1f} |
| advice, every lever (`ranking.advice.advise_all`) | {scale['advice_s']:.1f} |
| percentiles in 35,000 cooperatives, 34 provinces, 10 sectors | {scale['percentiles_s']:.1f} |
| total of the steps (wall clock with the tiling: {scale['wall_s']:.1f}) | {scale_s:.1f} |
| baseline: the per-member loop above, extrapolated | {naive_scale_s:,.0f} ({naive_scale_s / 3600:.1f} h) |

Reading: {scale['rows']:,} members in {scale_s:.0f} s against about {naive_scale_s / 3600:.1f} h for the
loop ({naive_scale_s / scale_s:.0f}x). Peak resident memory of the benchmark process so far:
{scale['peak_rss_gib']:.1f} GiB.

## 3. Page load times in Chromium

Real BentoML server ({setup['workers']} worker processes), headless Chromium on the same machine;
load time is Navigation Timing's navigation start to the end of the load event (HTML, CSS, scripts
and images). The fund `{FUND}` (scope `console`) has the consent of the {setup['consented']} members
of the queue; the member page is {setup['member_id']}'s own signed link, ranked on
{setup['ranking_dates']} dates (so it draws a trend), advice scored live.

Console queue, first load after the server started (sign-in redirect included; scores the
{setup['consented']} applications of the queue): **{pages['first_queue_ms']:.0f} ms**.

| page | loads | p50 (ms) | p95 (ms) | max (ms) | p50 above the floor (ms) | first byte, p50 (ms) |
| --- | --- | --- | --- | --- | --- | --- |
{page_row('floor', 'floor: member page with a forged link (403 error page, no data)')}
{page_row('member', 'member page, Vietnamese')}
{page_row('console', 'console queue (queue cached; consents checked, views audited)')}
{page_row('applicant', 'console applicant (scored live, contributions chart)')}

Reading: the floor is what the server, the browser and the page's static files cost with no data at
all; "above the floor" is what each page's own work adds, and the time to the first byte is the
server's share of the load (the rest is the browser's: parsing, static files, layout). Each of the {setup['workers']} worker
processes scores the queue on its own first queue request, so one of the later queue loads (its
max) may include that scoring too.
"""
    out.write_text(text, encoding="utf-8")
    say(f"wrote {out}")


# -- the run ------------------------------------------------------------------------------------
def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, help="reuse (or build in) this COOPSCORE_HOME")
    parser.add_argument("--members", type=positive_int, default=20_000)
    parser.add_argument("--cooperatives", type=positive_int, default=1_000)
    parser.add_argument("--sample", type=positive_int, default=200,
                        help="ranked members timed for the per-member baseline")
    parser.add_argument("--repeats", type=positive_int, default=3, help="rank_members runs (median kept)")
    parser.add_argument("--rows", type=positive_int, default=1_000_000, help="members for ranking.bench")
    parser.add_argument("--loads", type=positive_int, default=20, help="loads of each page")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks-ranking.md")
    args = parser.parse_args()
    if not args.out.parent.is_dir():
        parser.error(f"--out: the folder {args.out.parent} does not exist")
    return args


def main() -> None:
    args = parse_args()
    m = machine()
    say(f"machine: {m}")
    with tempfile.TemporaryDirectory() as tmp:
        home = args.home or Path(tmp) / "home"
        home.mkdir(parents=True, exist_ok=True)
        reused = (Paths(home).features / "snapshot.parquet").exists()
        paths = build_home(home, args.members, args.cooperatives)

        t = time.perf_counter()
        scorer = rank.get_scorer(paths)
        # sizes read from the data: a reused --home may differ from the flags
        setup = {"members": len(scorer.ids[rank.SUBJECT]), "cooperatives": len(scorer.cooperatives),
                 "home_note": ", reused with --home" if reused else ", member model trained in the run",
                 "scorer_load_s": time.perf_counter() - t, "snapshot_date": scorer.snapshot_date}
        say(f"scorer loaded in {setup['scorer_load_s']:.1f} s; rank_members x{args.repeats} ...")
        ranking = time_rank_members(paths, scorer, args.repeats)
        frame = ranking["run"].frame
        say(f"naive baseline on {args.sample} ranked members ...")
        naive = naive_baseline(scorer, frame, args.sample)
        say(f"  {naive['mean_ms']:.1f} ms per member (p50 {naive['p50_ms']:.1f}); same score for "
            f"{naive['same_score']}/{naive['members']}")

        say(f"ranking.bench.main({args.rows:,}) ...")
        scale = time_at_scale(args.rows)
        say(f"  {scale}")

        chosen = choose_pages(paths, frame)
        say(f"fund {FUND} and consents for the {len(chosen['queue_members'])} queue members ...")
        key = fund_with_consents(paths, chosen["queue_members"])
        setup.update(consented=len(chosen["queue_members"]), workers=WORKERS,
                     member_id=chosen["member_id"], ranking_dates=len(rank.ranking_dates(paths)))
        say("starting the server ...")
        proc, base = start_server(home, log_path=home / "bench-server.log")
        try:
            say(f"server at {base}; page loads ({args.loads} of each) ...")
            pages = measure_pages(page_urls(paths, base, chosen), base, key, args.loads)
        finally:
            stop_server(proc)
    write_report(args.out, m, setup, ranking, naive, scale, pages)


if __name__ == "__main__":
    main()
