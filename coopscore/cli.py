"""The `coopscore` command: each step of the pipeline on its own, and `demo` for all of them.

    coopscore generate --members 20000 --seed 42 [--dirty]
    coopscore ingest
    coopscore features [--as-of 2026-01-01]
    coopscore train [--subject member]
    coopscore serve [--port 3000]
    coopscore score --input applications.csv --output scores.parquet
    coopscore rank [--as-of 2026-01-01] [--months 6]
    coopscore monitor [--month 2026-01] [--subject member]
    coopscore demo [--rebuild]
    coopscore banks add|list|revoke, coopscore platform add-key, coopscore consents grant|revoke|list
    coopscore audit show|verify, coopscore records grant ROLE
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Iterator, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from settings import Paths, get_paths, get_settings
from coopscore.records_cli import audit_app, banks_app, consents_app, platform_app, records_app

logging.getLogger("mlflow").setLevel(logging.WARNING)  # our own progress says what happens
app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="coopscore: credit scores for Viet Nam's e-cooperatives.")
console = Console()
# The service's records: partner banks and their API keys, members' consents, the audit log.
app.add_typer(banks_app, name="banks")
app.add_typer(consents_app, name="consents")
app.add_typer(platform_app, name="platform")
app.add_typer(audit_app, name="audit")
app.add_typer(records_app, name="records")


def _version_callback(value: bool) -> None:
    """`coopscore --version`: the package's version and the model versions the service would serve."""
    if not value:
        return
    from importlib.metadata import version

    console.print(f"coopscore {version('coopscore')}")
    paths = get_paths()
    if get_settings().tracking_uri is None and not (paths.mlflow / "mlflow.db").exists():
        console.print(f"models: none yet (no MLflow store at {paths.mlflow}; run `make demo` or "
                      "`coopscore train`)")
        raise typer.Exit()
    from training import registry

    registry.use_store(paths)
    for subject in ("member", "cooperative"):
        champion = registry.champion_version(subject)
        console.print(f"{registry.model_name(subject)}: " + (
            f"version {champion.version} (champion)" if champion is not None else "no champion yet"))
    raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True,
                                       help="Print the coopscore version and the serving models' versions")) -> None:
    """coopscore: credit scores for Viet Nam's e-cooperatives."""


def fail(message: str) -> None:
    """Errors read like advice, not stack traces."""
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code=1)


@contextmanager
def progress_bar(title: str) -> Iterator:
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                  TimeElapsedColumn(), console=console, transient=False) as bar:
        task = bar.add_task(title, total=1.0)

        def update(step: str, fraction: float) -> None:
            bar.update(task, completed=fraction, description=f"{title}: {step}")

        yield update
        bar.update(task, completed=1.0, description=f"{title}: done")


@app.command()
def generate(members: int = typer.Option(20_000, min=50, help="Number of members to generate"),
             seed: int = typer.Option(42, help="Random seed (same seed, same data)"),
             cooperatives: Optional[int] = typer.Option(None, min=1, help="Default: members / 250"),
             dirty: bool = typer.Option(False, help="Inject the dirt real feeds have"),
             past_policy_decline_share: float = typer.Option(
                 0.0, min=0.0, max=0.9, help="A lender's past policy declines this share of applications "
                 "(by an older score plus noise); their outcomes stay in the generator's truth table "
                 "(docs/reject-inference.md)"),
             stream: bool = typer.Option(
                 False, help="Write transactions and e-invoices chunk by chunk, in bounded memory, as "
                 "folders of Parquet parts by month and province (docs/scaling.md); for large sizes")) -> None:
    """Write a synthetic data set that conforms to the data contracts into var/data/raw."""
    from coopscore.synthetic import SUGGEST_STREAM_ABOVE, generate as run

    paths = get_paths()
    if members > SUGGEST_STREAM_ABOVE and not stream:
        console.print(f"{members:,} members: every transaction is held in memory (about 2 GB per 100,000 "
                      f"members); --stream writes them in bounded memory")
    with progress_bar("generating") as update:
        summary = run(paths.raw, members=members, seed=seed, cooperatives=cooperatives,
                      dirty=dirty, progress=update, past_policy_decline_share=past_policy_decline_share,
                      stream=stream)
    table = Table("table", "rows", title=f"written to {paths.raw} in {summary.seconds:.1f} s")
    for name, rows in summary.rows.items():
        table.add_row(name, f"{rows:,}")
    console.print(table)
    if summary.dirt:
        console.print(f"injected dirt: {summary.dirt}")


@app.command()
def ingest(received_at: Optional[datetime] = typer.Option(
        None, help="Reference time for 'future' rows (default: now)"),
        engine: str = typer.Option(
            "duckdb", help="duckdb (one machine) or spark (each table judged per partition on "
            "Spark, the same rules and verdicts; the master from Spark's usual settings: "
            "SPARK_MASTER, spark-defaults.conf, else local[*])"),
        spark_master: Optional[str] = typer.Option(
            None, help="with --engine spark: the master URL, e.g. spark://host:7077")) -> None:
    """Validate var/data/raw against the contracts: accept each row or quarantine it with a reason."""
    from data_contracts.ingest import ENGINES, IngestError, ingest as run

    if engine not in ENGINES:
        fail(f"--engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if spark_master and engine != "spark":
        fail("--spark-master needs --engine spark")
    paths = get_paths()
    started = time.perf_counter()
    try:
        with progress_bar("ingesting" + (" on Spark" if engine == "spark" else "")) as update:
            report = run(paths.raw, paths.clean, paths.quarantine, received_at=received_at,
                         progress=update, engine=engine, spark_master=spark_master)
    except IngestError as exc:
        fail(str(exc))
    table = Table("table", "input", "accepted", "quarantined", "reconciles",
                  title="ingest: every row accepted or quarantined")
    for t in report.tables:
        table.add_row(t.table, f"{t.input_rows:,}", f"{t.accepted:,}", f"{t.quarantined:,}",
                      "yes" if t.reconciles else "[red]NO[/]")
    console.print(table)
    for t in report.tables:
        if t.reasons:
            top = sorted(t.reasons.items(), key=lambda kv: -kv[1])[:4]
            console.print(f"  {t.table}: " + ", ".join(f"{rule} {n:,}" for rule, n in top))
    console.print(f"quarantined rows and their reasons: {paths.quarantine}")
    console.print(f"ingested on {'Spark' if engine == 'spark' else 'DuckDB'} in "
                  f"{time.perf_counter() - started:.1f} s")


@app.command()
def features(as_of: Optional[str] = typer.Option(
        None, help="ISO date; default: the day after the latest accepted transaction"),
        engine: Optional[str] = typer.Option(
            None, help="duckdb (one machine) or spark (nationwide; the master from Spark's usual "
            "settings: SPARK_MASTER, spark-defaults.conf, else local[*]); default COOPSCORE_ENGINE "
            "or duckdb"),
        spark_master: Optional[str] = typer.Option(
            None, help="with --engine spark: the master URL, e.g. spark://host:7077")) -> None:
    """Build the feature snapshot the service reads (every member and cooperative, as of a date)."""
    from features.snapshot import build_snapshot

    paths = get_paths()
    day = _parse_date(as_of) if as_of else None
    name = _engine_name(engine, spark_master)
    started = time.perf_counter()
    try:
        with console.status(f"computing features on {'Spark' if name == 'spark' else 'DuckDB'}"):
            path = build_snapshot(paths.clean, paths.features, day, engine_name=name,
                                      spark_master=spark_master)
    except FileNotFoundError as exc:
        fail(str(exc))
    console.print(f"features written to {path} in {time.perf_counter() - started:.1f} s")


GATE_OPTIONS = dict(
    max_feature_psi=typer.Option(0.25, help="Gate: largest PSI of any feature, training -> out of time"),
    max_ece=typer.Option(0.03, help="Gate: largest expected calibration error"),
    max_calibration_in_the_large=typer.Option(0.02, help="Gate: largest |mean PD - default rate|"),
    max_approval_rate_gap=typer.Option(0.15, help="Gate: largest approval-rate gap between groups"),
)


@app.command()
def train(subject: list[str] = typer.Option(["member", "cooperative"],
                                            help="member and/or cooperative"),
          table: Optional[Path] = typer.Option(None, help="A lender's own labelled loan book "
                                               "(CSV or Parquet): cross-validate on it instead"),
          target: Optional[str] = typer.Option(None, help="With --table: the outcome column"),
          bad_value: Optional[str] = typer.Option(None, "--bad-value", help="With --table: the target "
                                                  "value that means default (e.g. 2, Y, bad)"),
          id_columns: list[str] = typer.Option([], "--id", help="With --table: an id column (never a feature)"),
          date_column: Optional[str] = typer.Option(None, "--date", help="With --table: the loan's date "
                                                    "(orders the validation; never a feature)"),
          category_columns: list[str] = typer.Option([], "--category", help="With --table: read as a category"),
          numeric_columns: list[str] = typer.Option([], "--numeric", help="With --table: read as a number"),
          ignore_columns: list[str] = typer.Option([], "--ignore", help="With --table: leave this column out"),
          roles_file: Optional[Path] = typer.Option(None, "--roles", help="With --table: a CSV "
                                                    "(column,role) or JSON file of column roles"),
          allow_leak: list[str] = typer.Option([], "--allow-leak", help="With --table: keep a column that "
                                               "separates the classes almost perfectly"),
          cv: str = typer.Option("auto", help="With --table: auto (out of time when there is a date), "
                                 "time or random"),
          label_months: int = typer.Option(12, min=1, help="With --table: the outcome window in months "
                                           "(the gap between training and test)"),
          folds: Optional[int] = typer.Option(None, min=2, help="With --table: outer folds (default 4 "
                                              "out of time, 5 random)"),
          name: Optional[str] = typer.Option(None, help="With --table: the model's name (default: the "
                                             "file's name); registered as loan-book-NAME"),
          reasons: Optional[Path] = typer.Option(None, help="With --table: your reason texts, a CSV "
                                                 "column,text_vi,text_en"),
          max_feature_psi: float = GATE_OPTIONS["max_feature_psi"],
          max_ece: float = GATE_OPTIONS["max_ece"],
          max_calibration_in_the_large: float = GATE_OPTIONS["max_calibration_in_the_large"],
          max_approval_rate_gap: float = GATE_OPTIONS["max_approval_rate_gap"],
          reject_inference: str = typer.Option(
              "measured", help="With data that records declined applications: how to infer their "
              "outcomes. 'measured' (the default) takes the method the reject-inference benchmark "
              "measured best (training/reject_inference_choice.json), funded_only when nothing was "
              "declined; or name one: funded_only, parcelling, inverse_acceptance_weighting, "
              "random_acceptance_calibration (docs/reject-inference.md)")) -> None:
    """Train, calibrate, log to MLflow, register; the promotion gates decide who is champion.

    With --table FILE --target COLUMN: a lender's own loan book. Every column's role is shown
    first; the model is chosen by nested cross-validation (out of time when the table has a date),
    refitted on every row and registered as loan-book-NAME for `coopscore score --model NAME`."""
    if table is not None or target is not None:
        from loan_book.roles import RoleOverrides

        overrides = RoleOverrides(id=tuple(id_columns), date=(date_column,) if date_column else (),
                                  category=tuple(category_columns), numeric=tuple(numeric_columns),
                                  ignore=tuple(ignore_columns), allow_leak=tuple(allow_leak))
        _train_loan_book(table, target, bad_value, overrides, roles_file, cv, label_months, folds, name,
                         reasons)
        return
    from governance.promotion import Gates
    from training.reject_inference import MEASURED, METHODS

    if reject_inference not in (MEASURED, *METHODS):
        fail(f"--reject-inference must be one of {MEASURED}, {', '.join(sorted(METHODS))}, "
             f"not {reject_inference!r}")
    _train_subjects(subject, Gates(max_calibration_in_the_large, max_ece, max_feature_psi,
                                   max_approval_rate_gap), reject_inference)


def _train_subjects(subject: list[str], gates, reject_inference: str = "measured") -> None:
    from training.dataset import NotEnoughData
    from training.reject_inference import NoMeasuredMethod
    from governance.pipeline import train_and_promote

    paths = get_paths()
    results = []
    for s in subject:
        if s not in ("member", "cooperative"):
            fail(f"unknown subject '{s}': use member or cooperative")
        try:
            with console.status(f"training the {s} model") as status:
                results.append(train_and_promote(paths, s, gates=gates, reject_inference=reject_inference,
                                                 progress=lambda msg: status.update(f"{s}: {msg}")))
        except NotEnoughData as exc:
            console.print(f"[yellow]skipped the {s} model:[/] {exc}")
        except (FileNotFoundError, NoMeasuredMethod) as exc:
            fail(str(exc))
    out = Table("model", "version", "backtest AUC", "true-PD AUC", "champion before", "champion now?",
                "seconds", title="training")
    for r in results:
        out.add_row(r.subject, r.version, f"{r.oot_auc:.3f}",
                    "-" if r.true_pd_auc is None else f"{r.true_pd_auc:.3f}",
                    r.decision.champion_before or "-", "yes" if r.promoted else "[red]no[/]",
                    f"{r.seconds:.1f}")
    console.print(out)
    for r in results:
        if not r.promoted:
            _print_refusal(r.decision)
    console.print(f"MLflow store: {paths.tracking_uri}")


def _print_refusal(decision) -> None:
    console.print(f"[yellow]coopscore-{decision.subject} version {decision.version} was refused by the "
                  f"promotion gates[/] (alias 'challenger'):")
    for g in decision.failed():
        console.print(f"  {g.name}: {g.detail}")
    keeps = (f"the champion stays version {decision.champion_before}" if decision.champion_before
             else "there is no champion yet, so the service cannot score this subject")
    console.print(f"  {keeps}. Look at `coopscore evaluate` and the model card; a model owner who "
                  f"accepts the failures can run `coopscore promote --subject {decision.subject} "
                  f"--version {decision.version} --override \"why\"`.")


def _train_loan_book(table: Optional[Path], target: Optional[str], bad_value: Optional[str], overrides,
                     roles_file: Optional[Path], cv: str, label_months: int, folds: Optional[int],
                     name: Optional[str], reasons: Optional[Path]) -> None:
    from loan_book.errors import TableError
    from loan_book.labels import label_warnings
    from loan_book.roles import RoleOverrides
    from loan_book.train import train_loan_book

    if table is None or target is None:
        fail("--table and --target go together: the file and the name of its outcome column.")
    paths = get_paths()
    paths.mlflow.mkdir(parents=True, exist_ok=True)

    def show_roles(coding, roles) -> None:
        out = Table("column", "role", "reason", "read as missing", title=f"{table.name}: column roles "
                    "(override with --id/--date/--category/--numeric/--ignore or --roles FILE)")
        for row in roles.table().itertuples(index=False):
            out.add_row(str(row.column), row.role, row.reason, f"{row.missing:,}" if row.missing else "")
        console.print(out)
        console.print(f"Outcome: {coding.how}; {coding.defaults:,} defaults in {coding.rows:,} rows "
                      f"(default rate [bold]{coding.default_rate:.1%}[/]). If that looks the wrong way "
                      "round, name the default value with --bad-value.")
        for warning in [*label_warnings(coding), *roles.warnings]:
            console.print(f"[yellow]warning:[/] {warning}")

    try:
        if roles_file is not None:
            from_file = RoleOverrides.from_file(roles_file)
            overrides = RoleOverrides(**{k: tuple(getattr(from_file, k)) + tuple(getattr(overrides, k))
                                         for k in ("id", "date", "category", "numeric", "ignore", "allow_leak")})
        with console.status("training") as status:
            result = train_loan_book(table, target, paths.tracking_uri, bad_value=bad_value,
                                     overrides=overrides, cv=cv, label_months=label_months,
                                     folds=folds, name=name,
                                     reasons_file=reasons, progress=lambda m: status.update(m),
                                     on_roles=show_roles)
    except TableError as exc:
        fail(str(exc))
    sel = result.selection
    out = Table("candidate", "AUC", "95% interval", "", title=f"{sel.validation}; hyper-parameters "
                "chosen inside each fold (nested)")
    for cand, r in sel.candidates.items():
        out.add_row(cand, f"{r.auc:.3f}", f"[{r.auc_low:.3f}, {r.auc_high:.3f}]",
                    "chosen" if cand == sel.chosen else ("baseline" if cand == "logistic" else ""))
    console.print(out)
    for leak in result.allowed_leaks:
        console.print(f"[yellow]warning:[/] {leak} is kept although it separates the classes almost "
                      "perfectly (--allow-leak)")
    console.print(f"Registered [bold]{result.registered_name}[/] version {result.version} "
                  f"(MLflow run {result.run_id}, {result.seconds:.0f} s). Model card: {result.card}")
    console.print(f"Score a new file: coopscore score --model {result.name} --input FILE --output FILE")


def _score_loan_book(name: str, version: Optional[str], input: Path, output: Path,
                     for_lender: Optional[str]) -> None:
    from loan_book.errors import TableError
    from loan_book.scoring import score_file
    from loan_book.train import model_name

    if for_lender is not None:
        fail("--for-lender is for the platform's members; a loan-book model scores the lender's own "
             "file, which never leaves the lender: drop --for-lender.")
    paths = get_paths()
    try:
        with console.status(f"scoring {input.name} with loan-book-{model_name(input, name)}"):
            report = score_file(model_name(input, name), input, output, paths.tracking_uri, version)
    except TableError as exc:
        fail(str(exc))
    console.print(f"{report.rows:,} rows: {report.scored:,} scored, {report.rejected:,} rejected "
                  f"(each with its reason) -> {output} ({report.seconds:.1f} s)")


@app.command()
def score(input: Path = typer.Option(..., "--input", help="Applications: CSV or Parquet with subject_type, "
                                     "subject_id, amount_vnd, term_months, purpose [, as_of_date]"),
          output: Path = typer.Option(..., "--output", help="Where to write one result per input "
                                      "row: .parquet or .csv"),
          chunk_rows: int = typer.Option(200_000, min=1, help="Rows scored at a time"),
          for_lender: Optional[str] = typer.Option(None, "--for-lender", help="The lender the output "
                                                   "goes to: each row needs the subject's consent for it "
                                                   "and is audited, as through the API"),
          model: Optional[str] = typer.Option(None, "--model", help="A lender's own loan-book model "
                                              "(coopscore train --table): score a file of its loans"),
          version: Optional[str] = typer.Option(None, help="With --model: the version (default latest)"),
          engine: Optional[str] = typer.Option(
              None, help="duckdb (one machine, the snapshot) or spark (features and scores on the "
              "executors; the master from Spark's usual settings); default COOPSCORE_ENGINE or duckdb"),
          spark_master: Optional[str] = typer.Option(
              None, help="with --engine spark: the master URL, e.g. spark://host:7077")) -> None:
    """Score a file of applications offline with the champion models: PD, score, grade, top reasons.

    Every input row gets one output row (scored, insufficient_history, or rejected with the reason).
    Without --for-lender it is the platform's own run (ranking, monitoring) and nothing leaves the
    platform; with it, each row goes through the same consent check and audit log as the API.

    With --model NAME: the lender's own model scores the lender's own file (its columns as in
    training); every row is scored or rejected with the reason."""
    name = _engine_name(engine, spark_master)
    if model is not None:
        if name == "spark":
            fail("--model scores a lender's own loan book with its own model on one machine; "
                 "--engine spark scores the platform's members and cooperatives with the champions. "
                 "Drop --engine spark (and --spark-master) to score the loan book, or drop --model.")
        _score_loan_book(model, version, input, output, for_lender)
        return
    import getpass

    from serving.batch import ForLender, score_file
    from records import Records

    paths = get_paths()
    records = Records(paths) if for_lender else None
    spark = None
    try:
        if records is not None and for_lender not in {b["bank_id"] for b in records.list_banks()
                                                      if b["kind"] == "lender"}:
            fail(f"no lender '{for_lender}'; `coopscore banks list` shows the lenders.")
        lender = ForLender(for_lender, records, f"operator:{getpass.getuser()}") if records else None
        with progress_bar(f"scoring {input.name}" + (" on Spark" if name == "spark" else "")) as update:
            if name == "spark":
                from serving.spark_batch import score_file_spark

                update("starting Spark", 0.0)
                spark = _spark_engine(paths, spark_master)
                report = score_file_spark(paths, input, output, spark, progress=update,
                                          chunk_rows=chunk_rows, for_lender=lender)
            else:
                report = score_file(paths, input, output, progress=lambda f: update("rows", f),
                                    chunk_rows=chunk_rows, for_lender=lender)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        fail(str(exc))
    finally:
        if records is not None:
            records.close()
        if spark is not None:
            spark.stop()
    table = Table("rows", "scored", "insufficient history", "rejected", "seconds", "rows/s",
                  title=f"{output} (data as of {report.snapshot_date})")
    table.add_row(f"{report.rows:,}", f"{report.scored:,}", f"{report.insufficient_history:,}",
                  f"{report.rejected:,}", f"{report.seconds:.1f}", f"{report.rows_per_second:,.0f}")
    console.print(table)
    for error, n in sorted(report.rejected_by_error.items(), key=lambda kv: -kv[1]):
        if error:
            console.print(f"  rejected, {error}: {n:,} (the reason of each is in the output's message column)")


def _engine_name(engine: Optional[str], spark_master: Optional[str]) -> str:
    """The engine asked for (default the settings'), refused with the choices when unknown."""
    from features.engines import ENGINES

    name = engine or get_settings().engine
    if name not in ENGINES:
        fail(f"--engine must be one of {', '.join(ENGINES)}, not {name!r}")
    if spark_master and name != "spark":
        fail("--spark-master needs --engine spark")
    return name


def _spark_engine(paths: Paths, master: Optional[str]):
    from features.spark_engine import SparkEngine

    return SparkEngine.start(paths.clean, master)


def _check_champions_load(paths: Paths) -> None:
    """A champion whose artifacts are broken is a clear message here, not a server stack trace."""
    from scoring.scorer import Scorer

    try:
        with console.status("loading the champion models"):
            Scorer(paths)
    except RuntimeError as exc:
        fail(str(exc))


@app.command()
def rank(as_of: Optional[str] = typer.Option(None, help="ISO date; default: the snapshot date"),
         months: int = typer.Option(1, min=1, max=36, help="Also rank as of the first day of each "
                                    "of the previous months, for members' trend"),
         engine: Optional[str] = typer.Option(
             None, help="duckdb (one machine) or spark (history, scores, actions and percentiles on "
             "the executors; the master from Spark's usual settings); default COOPSCORE_ENGINE or duckdb"),
         spark_master: Optional[str] = typer.Option(
             None, help="with --engine spark: the master URL, e.g. spark://host:7077")) -> None:
    """Rank every member: score, tier, percentiles in cooperative/province/sector, top actions."""
    from features import snapshot
    from ranking.rank import get_scorer, month_starts, rank_members

    paths = get_paths()
    name = _engine_name(engine, spark_master)
    spark = None
    try:
        if name == "spark":
            from ranking.spark_rank import rank_members_spark

            if not (paths.features / snapshot.META_FILE).exists():
                fail(f"no feature snapshot in {paths.features}: run `coopscore features --engine spark` "
                     "first (rankings are as of its date or earlier)")
            snapshot_date = snapshot.snapshot_date(paths.features)
            with console.status("starting Spark"):
                spark = _spark_engine(paths, spark_master)
        else:
            with console.status("loading the champion model and the snapshot"):
                scorer = get_scorer(paths)
            snapshot_date = scorer.snapshot_date
        day = _parse_date(as_of) if as_of else snapshot_date
        days = [day] if months == 1 else sorted(set(month_starts(day, months)) | {day})
        table = Table("as of", "ranked", "not enough data", "seconds",
                      title="member ranking" + (" on Spark" if spark else ""))
        with progress_bar("ranking") as update:
            for i, d in enumerate(days):
                started = time.perf_counter()
                update(f"as of {d}", i / len(days))
                say = (lambda msg, d=d, i=i: update(f"as of {d}: {msg}", i / len(days)))
                run = (rank_members_spark(paths, spark, as_of=d, progress=say) if spark else
                       rank_members(paths, as_of=d, scorer=scorer, progress=say))
                table.add_row(str(run.as_of), f"{run.ranked:,}", f"{run.not_enough_data:,}",
                              f"{time.perf_counter() - started:.1f}")
    except (RuntimeError, ValueError, FileNotFoundError) as exc:
        fail(str(exc))
    finally:
        if spark is not None:
            spark.stop()
    console.print(table)
    console.print(f"rankings: {paths.home / 'ranking'}")


@app.command("member-link")
def member_link_cmd(member_id: str = typer.Argument(..., help="e.g. TV0000001"),
                    base_url: str = typer.Option("http://127.0.0.1:3000", help="Where the service is reached"),
                    days: Optional[int] = typer.Option(None, min=1, max=365, help="How long the link "
                                                       "works (default COOPSCORE_MEMBER_LINK_DAYS, 30)"),
                    revoke: bool = typer.Option(False, "--revoke", help="End every link of this member "
                                                "printed so far (a lost or shared phone)")) -> None:
    """Print the signed link of a member's own ranking page (only that member's page opens with it),
    or with --revoke end all of that member's earlier links at once."""
    from serving.web.links import member_link, revoke_links

    paths = get_paths()
    members = pd_read_ids(paths)
    if member_id not in members:
        fail(f"no member with id '{member_id}' in {paths.clean}; check the id.")
    if revoke:
        version = revoke_links(member_id, paths=paths)
        console.print(f"every earlier link of {member_id} stops working now (link version {version}); "
                      "print a new one with `coopscore member-link " + member_id + "`.")
        return
    console.print(member_link(member_id, base_url, paths=paths, days=days), soft_wrap=True)


def pd_read_ids(paths: Paths) -> set[str]:
    import pandas as pd

    return set(pd.read_parquet(paths.clean / "members.parquet", columns=["member_id"]).member_id)


@app.command()
def serve(port: int = typer.Option(3000, help="HTTP port"),
          host: str = typer.Option("0.0.0.0")) -> None:
    """Start the BentoML scoring service (loads the champion models from the MLflow registry)."""
    paths = get_paths()
    if not (paths.features / "snapshot.json").exists():
        fail("no feature snapshot yet: run `coopscore features` (or `make demo`) first.")
    if not _has_champion(paths):
        fail("no champion model in the MLflow registry yet: run `coopscore train` first.")
    _check_champions_load(paths)
    console.print(f"scoring API:  http://localhost:{port}/v1/scores")
    console.print(f"API docs:     http://localhost:{port}/v1/docs")
    console.print(f"MLflow UI:    `make mlflow-ui`, then http://localhost:5000 (store {paths.tracking_uri})")
    env = {**os.environ, "COOPSCORE_HOME": str(paths.home)}
    code = subprocess.call([sys.executable, "-m", "bentoml", "serve", "serving.service:CoopScore",
                            "--host", host, "--port", str(port)], env=env)
    raise typer.Exit(code)


@app.command()
def bento() -> None:
    """Build the Bento (code, locked dependencies, the champion versions as labels); print its tag."""
    from serving.bento_build import BentoBuildError, build

    try:
        tag = build(get_paths())
    except BentoBuildError as exc:
        fail(str(exc))
    typer.echo(tag)


@app.command()
def demo(members: int = typer.Option(20_000, help="Members in the demo data set"),
         cooperatives: int = typer.Option(
             1_000, help="Cooperatives in the demo data set: enough loan outcomes for a cooperative model"),
         rebuild: bool = typer.Option(False, help="Rebuild every step even if its output exists"),
         port: int = typer.Option(3000), no_serve: bool = typer.Option(False, "--no-serve")) -> None:
    """Run every step (reusing what exists unless --rebuild), then serve."""
    from data_contracts.ingest import delivered

    paths = get_paths()
    if rebuild or not delivered(paths.raw, "transactions"):
        generate(members=members, seed=42, cooperatives=cooperatives, dirty=True, past_policy_decline_share=0.0,
                 stream=False)  # called as a function: no Typer defaults
    else:
        console.print(f"reusing generated data in {paths.raw}")
    if rebuild or not (paths.clean / "transactions.parquet").exists():
        ingest(received_at=None, engine="duckdb", spark_master=None)  # no Typer defaults
    else:
        console.print(f"reusing accepted data in {paths.clean}")
    if rebuild or not (paths.features / "snapshot.json").exists():
        features(as_of=None, engine=None, spark_master=None)  # called as a function: no Typer defaults
    else:
        console.print(f"reusing the feature snapshot in {paths.features}")
    if rebuild or not _has_champion(paths):
        from governance.promotion import Gates

        _train_subjects(["member", "cooperative"], Gates())
        _demo_override_refused(paths)
    else:
        console.print("reusing the champion models in the MLflow registry")
    from ranking.rank import ranking_dates

    if rebuild or not ranking_dates(paths):
        rank(as_of=None, months=DEMO_RANK_MONTHS, engine=None, spark_master=None)  # six months, so members see a trend
    else:
        console.print(f"reusing the member rankings in {paths.home / 'ranking'}")
    _demo_bank(paths, port)
    _demo_member_link(paths, port)
    if not no_serve:
        serve(port=port, host="0.0.0.0")


DEMO_RANK_MONTHS = 6


def _demo_override_refused(paths: Paths) -> None:
    """A demo must serve something: a model the gates refused is promoted by a written override
    that names the failed gates, shown here and recorded on the version (`promotion.override_reason`),
    exactly as a model owner would have to do it. The refusal is the finding, not hidden."""
    from governance.promotion import promote
    from training import registry

    registry.use_store(paths)
    for subject in ("member", "cooperative"):
        if registry.champion_version(subject) is not None:
            continue
        try:
            decision = promote(paths, subject, None, override="demo data: promoted despite the failed "
                               "gates printed above so that the demo can serve; a bank would not")
        except LookupError as exc:
            console.print(f"[yellow]no {subject} model to serve:[/] {exc}")
            continue
        failed = ", ".join(f"{g.name} ({g.detail})" for g in decision.failed()) or "none"
        console.print(f"[yellow]{subject} version {decision.version} promoted by override for the demo; "
                      f"gates it failed: {failed}[/]", soft_wrap=True)


def _demo_member_link(paths: Paths, port: int) -> None:
    """One ranked member's own page, as the platform would send it to them (signed, 30 days)."""
    from ranking.rank import latest_ranking
    from serving.web.links import member_link

    for member_id in sorted(pd_read_ids(paths))[:200]:
        ranked = latest_ranking(paths, member_id)
        if ranked is not None and ranked["status"] == "ranked":
            url = member_link(member_id, f"http://localhost:{port}", paths=paths)
            console.print(f"member page of {member_id} ({ranked['tier_vi']} / {ranked['tier_en']}): "
                          f"{url}  (others: coopscore member-link ID)", soft_wrap=True)
            return


DEMO_BANK = "demo-bank"
DEMO_PLATFORM = "demo-platform"


def _write_private(path: Path, text: str) -> None:
    """Write a secret file readable by its owner only (0600 from the moment it exists)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)  # an older file keeps its mode on O_TRUNC


def _demo_platform(paths: Paths, records):
    """The e-cooperative platform's own principal: the only one that records consents. Its key is
    kept beside the bank's (0600) so that a second demo run acts as the same platform."""
    token_file = paths.home / "service" / f"{DEMO_PLATFORM}.token"
    if token_file.exists():
        try:
            return records.authenticate(token_file.read_text().strip())
        except Exception:  # lost or revoked: a new key below
            pass
    if DEMO_PLATFORM in {b["bank_id"] for b in records.list_banks()}:
        records.revoke_bank(DEMO_PLATFORM)
        issued = records.issue_key(DEMO_PLATFORM, ["consents:write", "audit:read"])
    else:
        issued = records.add_platform(DEMO_PLATFORM, "E-cooperative platform (demo)")
    _write_private(token_file, issued.token)
    return records.authenticate(issued.token)


def _demo_bank(paths: Paths, port: int) -> None:
    """A demo partner bank with the bank scopes only (scores, batch, console), and consents of a
    few subjects recorded by the platform as members gave them on their application forms, so that
    the API can be tried at once. Its key is kept in var/service (0600, git-ignored) to be shown
    again on the next run. The same key signs in to the fund console (/app/console)."""
    from datetime import timedelta

    import pandas as pd

    from records import LENDER_SCOPES, Records

    token_file = paths.home / "service" / f"{DEMO_BANK}.token"
    snap = pd.read_parquet(paths.features / "snapshot.parquet",
                           columns=["entity_type", "entity_id", "history_days", "transactions_365d"])
    scorable = snap[(snap.history_days >= 180) & (snap.transactions_365d >= 12)]
    with Records(paths) as records:
        platform = _demo_platform(paths, records)
        if not token_file.exists():
            if DEMO_BANK in {b["bank_id"] for b in records.list_banks()}:
                records.revoke_bank(DEMO_BANK)  # its key was lost: issue a new one
                token = records.issue_key(DEMO_BANK, list(LENDER_SCOPES)).token
            else:
                token = records.add_bank(DEMO_BANK, "Demo bank", list(LENDER_SCOPES)).token
            _write_private(token_file, token)
            until = datetime.now().astimezone() + timedelta(days=364)
            for kind, n in (("member", 20), ("cooperative", 5)):
                for subject_id in scorable[scorable.entity_type == kind].entity_id.head(n):
                    records.grant_consent(kind, subject_id, DEMO_BANK, purpose="credit_scoring",
                                          expires_at=until, source="application_form", actor=platform)
        shown = _demo_fund_consents(paths, records, platform)
    token = token_file.read_text().strip()
    member = scorable[scorable.entity_type == "member"].entity_id.iloc[0]  # consented above
    console.print(f"demo bank '{DEMO_BANK}': API key {token} (kept in {token_file})", soft_wrap=True)
    console.print(f"try: curl -s localhost:{port}/v1/scores -H 'Authorization: Bearer {token}' "
                  "-H 'content-type: application/json' -d '{\"subject_type\": \"member\", "
                  f"\"subject_id\": \"{member}\", \"application\": {{\"amount_vnd\": 80000000, "
                  "\"term_months\": 12, \"purpose\": \"working_capital\"}}'", soft_wrap=True)
    console.print(f"fund console: http://localhost:{port}/app/console (sign in with the same key; "
                  f"{shown['consented']} of {shown['members']} applicants consented to the fund, "
                  f"{shown['none']} did not, {shown['revoked']} withdrew)", soft_wrap=True)


def _demo_fund_consents(paths: Paths, records, platform) -> dict[str, int]:
    """The demo bank doubles as a cooperative development fund: most members in its console queue
    consented to it when they applied (recorded as by the platform, for a year), one in twenty did
    not and one in twenty withdrew, so the console shows both. Idempotent: only what is missing is
    recorded (about 0.2 s for the 200 applications)."""
    from datetime import timedelta

    from serving.web.applications import recent_member_applications

    members = list(dict.fromkeys(recent_member_applications(paths, lender_id=DEMO_BANK).entity_id))
    until = datetime.now().astimezone() + timedelta(days=364)
    counts = {"members": len(members), "consented": 0, "none": 0, "revoked": 0}
    for i, member in enumerate(members):
        plan = "none" if i % 20 == 7 else "revoked" if i % 20 == 17 else "consented"
        check = records.consent_for("member", member, DEMO_BANK)
        if (plan == "consented" and not check.active) or (plan == "revoked" and check.consent_id is None):
            granted = records.grant_consent("member", member, DEMO_BANK, purpose="credit_scoring",
                                            expires_at=until, source="application_form", actor=platform)
            if plan == "revoked":  # consented when applying, then withdrew it on the member page
                records.revoke_consent(granted["consent_id"], source="member_page", actor=platform)
            check = records.consent_for("member", member, DEMO_BANK)
        # counted as they are (a member of the curl example keeps its consent whatever the plan)
        counts["consented" if check.active else "none" if check.consent_id is None else "revoked"] += 1
    return counts


@app.command()
def evaluate(subject: str = typer.Option("member", help="member or cooperative"),
             bootstrap: int = typer.Option(300, min=50, help="Bootstrap resamples for the 95% CIs"),
             as_json: bool = typer.Option(False, "--json",
                                          help="Print one JSON object on stdout and nothing else")) -> None:
    """Evaluate the champion by its as-deployed backtest: metrics with CIs (and the true PD's and
    the scorecard's), calibration slope, PSI, fairness."""
    import json

    from evaluation.champion import OPERATING_PD, evaluate_champion, summary
    from training import registry
    from training.dataset import NotEnoughData

    paths = get_paths()
    if as_json:  # stdout carries the JSON object only; errors go to stderr
        try:
            result = evaluate_champion(paths, subject, n_boot=bootstrap)
        except (LookupError, FileNotFoundError, NotEnoughData) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=1)
        tags = registry.champion_version(subject).tags
        gates = {k.removeprefix("gate."): v for k, v in tags.items()
                 if k.startswith("gate.") and k.count(".") == 1}
        if "promotion" in tags:
            gates["promotion"] = tags["promotion"]
        typer.echo(json.dumps(summary(result, gates or None)))
        return
    try:
        with console.status(f"evaluating the {subject} champion"):
            result = evaluate_champion(paths, subject, n_boot=bootstrap)
    except (LookupError, FileNotFoundError, NotEnoughData) as exc:
        fail(str(exc))
    table = Table("metric", "model [95% CI]", "scorecard [95% CI]", "true PD [95% CI]",
                  title=f"{subject} champion v{result.model_version}, {result.oot_rows:,} applications "
                        f"of the as-deployed backtest ({', '.join(result.backtest_dates or [])})")
    for name, est in result.model.items():
        true = result.true_pd[name] if result.true_pd else None
        card = result.scorecard[name] if result.scorecard else None
        table.add_row(name, *(("-" if e is None else f"{e.value:.3f} [{e.low:.3f}, {e.high:.3f}]")
                              for e in (est, card, true)))
    console.print(table)
    console.print(f"calibration: {result.calibration_reason}")
    psi = Table("column", "PSI", "band", title="stability, labels known at the last T -> after it (top 8)")
    for row in result.psi.head(8).itertuples():
        psi.add_row(row.column, f"{row.psi:.3f}", row.band)
    console.print(psi)
    gap = result.largest_fairness_gap()
    if gap:
        console.print(f"largest fairness gap at PD <= {OPERATING_PD:.0%}: {gap[1]} differs by "
                      f"{gap[2]:.3f} across {gap[0]}")
    console.print(f"evaluated in {result.seconds:.1f} s")


@app.command("promote")
def promote_cmd(subject: str = typer.Option("member", help="member or cooperative"),
                version: Optional[str] = typer.Option(None, help="Default: the newest version"),
                max_feature_psi: float = GATE_OPTIONS["max_feature_psi"],
                max_ece: float = GATE_OPTIONS["max_ece"],
                max_calibration_in_the_large: float = GATE_OPTIONS["max_calibration_in_the_large"],
                max_approval_rate_gap: float = GATE_OPTIONS["max_approval_rate_gap"],
                override: Optional[str] = typer.Option(
                    None, help="Promote despite failed gates; the reason is recorded on the version")) -> None:
    """Promote a registered version to champion if it passes the gates; record why either way."""
    from governance.promotion import Gates, promote

    gates = Gates(max_calibration_in_the_large, max_ece, max_feature_psi, max_approval_rate_gap)
    try:
        version = version or _newest_version(get_paths(), subject)
        shadow = _shadow_report(get_paths(), subject, version)  # the gates read the live evidence too
        with console.status("evaluating the challenger and the champion out of time"):
            decision = promote(get_paths(), subject, version, gates, override=override, shadow=shadow)
    except LookupError as exc:
        fail(str(exc))
    table = Table("gate", "result", "detail", title=f"coopscore-{subject} version {decision.version}")
    for g in decision.gates:
        table.add_row(g.name, "pass" if g.passed else "[red]FAIL[/]", g.detail)
    console.print(table)
    if decision.overridden:
        console.print(f"promoted to champion by override (reason recorded): {override}")
    elif decision.promoted:
        console.print("promoted to champion")
    else:
        _print_refusal(decision)


def _newest_version(paths: Paths, subject: str) -> str:
    from mlflow import MlflowClient
    from training import registry

    registry.use_store(paths)
    versions = MlflowClient().search_model_versions(f"name='{registry.model_name(subject)}'")
    if not versions:
        raise LookupError(f"no registered {subject} model: run `coopscore train` first.")
    return str(max(int(v.version) for v in versions))


def _shadow_report(paths: Paths, subject: str, version: str, since: date | None = None):
    """The version's shadow report from the service's records, or None when it has no shadow rows."""
    import pandas as pd
    from evaluation.shadow import shadow_report
    from records import Records

    with Records(paths) as records:
        rows = records.shadow_rows(subject, version, since)
    return shadow_report(pd.DataFrame(rows), subject) if rows else None


@app.command("shadow-report")
def shadow_report_cmd(subject: str = typer.Option("member", help="member or cooperative"),
                      version: Optional[str] = typer.Option(
                          None, help="The challenger version (default: the one aliased `challenger`)"),
                      since: Optional[str] = typer.Option(None, help="Only answers from this date (YYYY-MM-DD)"),
                      as_json: bool = typer.Option(False, "--json", help="Print the report as JSON")) -> None:
    """How the challenger, scored in the shadow on live traffic, compares with the champion."""
    import json

    from governance.promotion import Gates, shadow_gate
    from scoring.shadow import challenger_version
    from training import registry

    paths = get_paths()
    start = None
    if since:
        try:
            start = date.fromisoformat(since)
        except ValueError:
            fail(f"--since must be a date as YYYY-MM-DD, not {since!r}")
    if version is None:
        registry.use_store(paths)
        found = challenger_version(subject)
        if found is None:
            fail(f"no {subject} version is aliased `challenger` in the registry: pass --version, or "
                 "train one (`coopscore train`), which the gates alias `challenger` when they refuse it")
        version = found[0]
    report = _shadow_report(paths, subject, version, start)
    if report is None:
        fail(f"no shadow answers recorded for coopscore-{subject} version {version}"
             + (f" since {since}" if since else "") + ": the service scores the `challenger` beside the "
             "champion once it is aliased (COOPSCORE_SHADOW=1, the default); check GET /v1/status.")
    if as_json:
        print(json.dumps(report.as_dict(), indent=2))
        return

    def ci(e, pct: bool = False) -> str:
        f = (lambda x: f"{x:+.1%}") if pct else (lambda x: f"{x:.3f}")
        return f"{f(e.value)} [{f(e.low)}, {f(e.high)}]"

    table = Table("measure", "value [95% interval]",
                  title=f"coopscore-{subject} version {version} in the shadow of "
                        f"{', '.join(report.champion_versions)} ({report.n} answers, {report.first_at} to {report.last_at})")
    table.add_row("same grade", f"{report.grade_agreement.value:.1%} [{report.grade_agreement.low:.1%}, "
                                f"{report.grade_agreement.high:.1%}]")
    table.add_row("rank correlation (Spearman)", ci(report.rank_correlation))
    table.add_row(f"approved at PD <= {report.cutoff_pd:.0%}",
                  f"champion {report.approval_champion:.1%}, challenger {report.approval_challenger:.1%}")
    table.add_row("approval-rate change", ci(report.approval_change, pct=True))
    table.add_row("mean PD change", ci(report.mean_pd_change))
    console.print(table)
    migration = Table("champion \\ challenger", *report.migration.columns.astype(str),
                      title="grade migration (answers)")
    for grade, row in report.migration.iterrows():
        migration.add_row(str(grade), *(str(int(v)) for v in row))
    console.print(migration)
    gate = shadow_gate(report, Gates())
    console.print(f"shadow gate: {'pass' if gate.passed else '[red]FAIL[/]'}: {gate.detail}")


@app.command("rollback")
def rollback_cmd(subject: str = typer.Option("member", help="member or cooperative")) -> None:
    """Restore the previous champion."""
    from governance.promotion import rollback

    try:
        before, after = rollback(get_paths(), subject)
    except LookupError as exc:
        fail(str(exc))
    console.print(f"champion of coopscore-{subject}: version {before} -> version {after}")


@app.command("monitor")
def monitor_cmd(month: Optional[str] = typer.Option(None, help="Only this month of applications (YYYY-MM); "
                                                    "default: every month after the training population"),
                subject: str = typer.Option("member", help="member or cooperative"),
                today: Optional[str] = typer.Option(None, help="What is known by this date (YYYY-MM-DD); "
                                                    "default: the data's end")) -> None:
    """Monitor the champion month by month: PSI, early delinquency, estimated and realised AUC, alerts."""
    from scoring.monitor_run import monitor

    if month is not None:
        try:
            datetime.strptime(month, "%Y-%m")
        except ValueError:
            fail(f"--month must be YYYY-MM, not {month!r}")
    try:
        with console.status(f"monitoring the {subject} champion (scoring every application as of its date)"):
            result = monitor(get_paths(), subject, month, _parse_date(today) if today else None)
    except (LookupError, FileNotFoundError) as exc:
        fail(str(exc))
    table = Table("month", "scored", "PSI score", "largest feature PSI", "expected AUC [95%]",
                  "realised AUC [95%]", "30+ DPD by 3 MOB", "alerts",
                  title=f"coopscore-{subject} version {result.version}, trained on "
                        f"{result.training_window[0]} to {result.training_window[1]}; known by {result.today}")
    alerts = result.report.alerts
    for r in result.report.monthly.itertuples():
        levels = alerts[alerts["month"] == r.month]["level"].value_counts()
        realised = ("not yet" if r.realised_auc != r.realised_auc
                    else f"{r.realised_auc:.3f} [{r.realised_auc_low:.3f}, {r.realised_auc_high:.3f}]")
        table.add_row(r.month, str(r.n_scored), f"{r.psi_score:.3f}",
                      f"{r.psi_max_feature:.3f} {r.psi_max_feature_name}",
                      f"{r.expected_auc:.3f} [{r.expected_auc_low:.3f}, {r.expected_auc_high:.3f}]",
                      realised, "-" if r.dpd30_mob3 != r.dpd30_mob3 else f"{r.dpd30_mob3:.1%}",
                      ", ".join(f"{n} {lvl}" for lvl, n in levels.items()) or "-")
    console.print(table)
    for a in alerts[alerts["level"] == "act"].itertuples():
        console.print(f"[red]act[/] {a.month}: {a.message}")
    console.print(f"stored: {', '.join(str(p) for p in result.tables.values())}; MLflow runs: "
                  f"{len(result.run_ids)} in experiment coopscore-monitoring-{subject} ({result.seconds:.0f} s)")


@app.command()
def report(run_id: str = typer.Argument(..., help="The MLflow run id of a training run"),
           bootstrap: int = typer.Option(200, min=20)) -> None:
    """Write the model card (HTML) of a training run and log it to the run in MLflow."""
    from evaluation.model_card import build_model_card

    try:
        with console.status("building the model card"):
            path = build_model_card(get_paths(), run_id, n_boot=bootstrap)
    except LookupError as exc:
        fail(str(exc))
    console.print(f"model card: {path} (also logged to the run as model_card/model_card.html)")


@app.command()
def docs() -> None:
    """Regenerate docs/features.md and docs/data_contracts.md from the declarations."""
    from pathlib import Path

    from coopscore.reference_docs import write

    for path in write(Path(__file__).resolve().parents[1] / "docs"):
        console.print(f"wrote {path}")


def _has_champion(paths: Paths) -> bool:
    from training import registry

    if get_settings().tracking_uri is None and not (paths.mlflow / "mlflow.db").exists():
        return False
    registry.use_store(paths)
    return registry.champion_version("member") is not None


def _parse_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        fail(f"'{text}' is not an ISO date (YYYY-MM-DD)")
        raise


if __name__ == "__main__":
    app()
