"""`coopscore banks`, `platform`, `consents`, `audit` and `records`: the service's records by hand.

    coopscore banks add agribank --name "Agribank" [--scope scores:read --scope scores:batch] [--expires 2027-12-31]
    coopscore banks list | banks revoke BANK_ID | banks revoke-key KEY_ID
    coopscore platform add-key PLATFORM_ID [--name "E-cooperative platform"]
    coopscore consents grant --member TV0000001 --bank agribank --expires 2027-06-30 [--source operator]
    coopscore consents revoke CONSENT_ID | consents list --member TV0000001
    coopscore audit show --member TV0000001 | audit verify
    coopscore records grant ROLE            (PostgreSQL, as the owner: the service role's rights)

Consents written here are recorded as the operator at the keyboard (their login name), and every
read of a subject's consents or access log here is itself audited.
"""
from __future__ import annotations

import getpass
import uuid
from datetime import date, datetime, timezone
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from settings.paths import get_paths

banks_app = typer.Typer(add_completion=False, no_args_is_help=True,
                        help="Banks that may call the scoring API, and their API keys.")
consents_app = typer.Typer(add_completion=False, no_args_is_help=True,
                           help="Members' and cooperatives' consents to be scored for a bank.")
platform_app = typer.Typer(add_completion=False, no_args_is_help=True,
                           help="The platform's own keys: the only ones that may write consents.")
audit_app = typer.Typer(add_completion=False, no_args_is_help=True,
                        help="The audit log: who looked at a subject, and whether the log is intact.")
records_app = typer.Typer(add_completion=False, no_args_is_help=True,
                          help="The records database itself (PostgreSQL roles).")


# a callback makes these groups even with one command, so `platform add-key` keeps its name
@platform_app.callback()
def _platform() -> None:
    """The platform's own keys: the only ones that may write consents."""


@records_app.callback()
def _records_group() -> None:
    """The records database itself (PostgreSQL roles)."""
console = Console()


def fail(message: str) -> None:
    """Errors read like advice, not stack traces."""
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code=1)


def _records():
    from records import Records, RecordsError

    try:
        return Records(get_paths())
    except RecordsError as exc:
        fail(str(exc))


def _operator():
    from records import Operator

    return Operator(getpass.getuser())


def _audit_read(records, endpoint: str, subject_type: str, subject_id: str, rows: int) -> None:
    """An operator's read of a subject's records is itself an audit event (written before it is shown)."""
    from records import AuditEntry

    who = _operator()
    records.append_audit([AuditEntry(request_id=uuid.uuid4().hex, at=datetime.now(timezone.utc),
                                     bank_id="operator", key_id=f"operator:{who.name}",
                                     subject_type=subject_type, subject_id=subject_id, endpoint=endpoint,
                                     http_status=200, outcome="listed", answer={"rows": rows})])


def _day(text: str, option: str) -> date | datetime:
    """A date (valid through that day, UTC) or a full ISO timestamp."""
    try:
        return date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
    except ValueError:
        fail(f"{option} {text!r} is not a date: use YYYY-MM-DD, e.g. {option} 2027-12-31.")


def _show(value: datetime | None) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M") if value else "-"


def _subject(member: Optional[str], cooperative: Optional[str]) -> tuple[str, str]:
    if bool(member) == bool(cooperative):
        fail("name exactly one subject: --member TV0000001 or --cooperative HTX000001.")
    return ("member", member) if member else ("cooperative", cooperative)


@banks_app.command("add")
def banks_add(bank_id: str = typer.Argument(..., help="Short id, e.g. agribank"),
              name: str = typer.Option(..., "--name", help="The bank's name"),
              scope: list[str] = typer.Option(["scores:read"], "--scope",
                                              help="Repeat for several: scores:read, scores:batch, "
                                                   "console (a fund's loan officers signing in to "
                                                   "/app/console). A bank never gets consents:write or "
                                                   "audit:read: those are the platform's "
                                                   "(`coopscore platform add-key`)"),
              expires: Optional[str] = typer.Option(None, help="Last valid day of the key, YYYY-MM-DD")) -> None:
    """Register a lender (bank or development fund) and print its first API key (shown once)."""
    expires_at = _day(expires, "--expires") if expires else None
    with _records() as records:
        try:
            key = records.add_bank(bank_id, name, scope, expires_at)
        except (ValueError, LookupError) as exc:
            fail(str(exc))
    console.print(f"bank [bold]{key.bank_id}[/] registered; key {key.key_id} "
                  f"({', '.join(key.scopes)}, expires {_show(key.expires_at)})")
    _print_token(key)


def _print_token(key) -> None:
    console.print("[bold yellow]API key, shown only this once (only its hash is stored; if it is "
                  "lost, issue a new one and revoke this):[/]")
    print(key.token)  # plain print: no wrapping or markup in what gets copied


@platform_app.command("add-key")
def platform_add_key(platform_id: str = typer.Argument(..., help="The platform's id, e.g. ecoop"),
                     name: Optional[str] = typer.Option(None, "--name",
                                                        help="The platform's name (needed the first time)"),
                     expires: Optional[str] = typer.Option(None, help="Last valid day of the key, YYYY-MM-DD")) -> None:
    """Register the platform (first time) or issue it another key; prints the key once.
    The key may write consents and read access logs; it cannot score."""
    from records import PLATFORM_SCOPES

    expires_at = _day(expires, "--expires") if expires else None
    with _records() as records:
        known = {b["bank_id"]: b["kind"] for b in records.list_banks()}
        try:
            if platform_id not in known:
                if not name:
                    fail(f"{platform_id} is new: give its name too, e.g. --name 'E-cooperative platform'.")
                key = records.add_platform(platform_id, name, expires_at=expires_at)
            elif known[platform_id] != "platform":
                fail(f"{platform_id} is a lender, not the platform: a lender's key can never write consents. "
                     "Pick another id for the platform.")
            else:
                key = records.issue_key(platform_id, list(PLATFORM_SCOPES), expires_at)
        except (ValueError, LookupError) as exc:
            fail(str(exc))
    console.print(f"platform [bold]{key.bank_id}[/]: key {key.key_id} "
                  f"({', '.join(key.scopes)}, expires {_show(key.expires_at)})")
    _print_token(key)


@banks_app.command("list")
def banks_list() -> None:
    """Every bank and its keys (ids, scopes, dates; never the secrets)."""
    with _records() as records:
        rows = records.list_banks()
    if not rows:
        console.print("no banks yet: `coopscore banks add BANK_ID --name NAME` registers one.")
        return
    table = Table(title="banks and API keys")
    for column in ("bank", "kind", "name", "key", "scopes", "created", "expires", "revoked"):
        table.add_column(column, no_wrap=column in ("bank", "key"))
    for bank in rows:
        for i, key in enumerate(bank["keys"] or [None]):
            table.add_row(bank["bank_id"] if i == 0 else "", bank["kind"] if i == 0 else "",
                          bank["name"] if i == 0 else "",
                          key["key_id"] if key else "-", " ".join(key["scopes"]) if key else "",
                          _show(key["created_at"]) if key else "", _show(key["expires_at"]) if key else "",
                          f"[red]{_show(key['revoked_at'])}[/]" if key and key["revoked_at"] else "-")
    console.print(table)


@banks_app.command("revoke")
def banks_revoke(bank_id: str = typer.Argument(..., help="The bank whose keys all stop working")) -> None:
    """Revoke every key of a bank."""
    with _records() as records:
        try:
            revoked = records.revoke_bank(bank_id)
        except LookupError as exc:
            fail(str(exc))
    console.print(f"bank {bank_id}: {len(revoked)} key(s) revoked" +
                  (f" ({', '.join(revoked)})" if revoked else " (none was active)"))


@banks_app.command("revoke-key")
def banks_revoke_key(key_id: str = typer.Argument(..., help="The key id shown by `banks list`")) -> None:
    """Revoke one API key (e.g. after rotating to a new one)."""
    with _records() as records:
        try:
            when = records.revoke_key(key_id)
        except LookupError as exc:
            fail(str(exc))
    console.print(f"key {key_id} revoked on {_show(when)} UTC")


_SOURCE_HELP = "Where the subject gave it: application_form, member_page or operator"


@consents_app.command("grant")
def consents_grant(member: Optional[str] = typer.Option(None, help="Member id, e.g. TV0000001"),
                   cooperative: Optional[str] = typer.Option(None, help="Cooperative id, e.g. HTX000001"),
                   bank: str = typer.Option(..., help="The lender the subject consents to"),
                   expires: str = typer.Option(..., help="Last day of the consent, YYYY-MM-DD (at most a year)"),
                   purpose: str = typer.Option("credit_scoring", help="What the data may be used for"),
                   source: str = typer.Option("operator", help=_SOURCE_HELP)) -> None:
    """Record a subject's explicit consent for one lender and purpose, until a date (as this operator)."""
    subject_type, subject_id = _subject(member, cooperative)
    expires_at = _day(expires, "--expires")
    with _records() as records:
        try:
            row = records.grant_consent(subject_type, subject_id, bank, purpose=purpose,
                                        expires_at=expires_at, source=source, actor=_operator())
        except (ValueError, LookupError) as exc:
            fail(str(exc))
    console.print(f"consent {row['consent_id']}: {subject_type} {subject_id} -> bank {bank}, "
                  f"{purpose}, until {_show(row['expires_at'])} UTC (recorded by {row['granted_by']})")


@consents_app.command("revoke")
def consents_revoke(consent_id: str = typer.Argument(..., help="The id shown by `consents list`"),
                    source: str = typer.Option("operator", help="Where the subject withdrew it: "
                                               "application_form, member_page or operator")) -> None:
    """Withdraw a consent from now on (the audit log keeps what happened before)."""
    with _records() as records:
        try:
            row = records.revoke_consent(consent_id, source=source, actor=_operator())
        except (ValueError, LookupError) as exc:
            fail(str(exc))
    console.print(f"consent {consent_id} revoked on {_show(row['revoked_at'])} UTC by {row['revoked_by']}")


@consents_app.command("list")
def consents_list(member: Optional[str] = typer.Option(None, help="Member id"),
                  cooperative: Optional[str] = typer.Option(None, help="Cooperative id")) -> None:
    """A subject's consents, newest first, with their state today."""
    subject_type, subject_id = _subject(member, cooperative)
    now = datetime.now(timezone.utc)
    with _records() as records:
        rows = records.list_consents(subject_type, subject_id)
        _audit_read(records, "cli.consents.list", subject_type, subject_id, len(rows))
    if not rows:
        console.print(f"no consent recorded for {subject_type} {subject_id}: no bank may score them.")
        return
    table = Table(title=f"consents of {subject_type} {subject_id}")
    for column in ("consent", "bank", "purpose", "granted", "expires", "state", "source", "by"):
        table.add_column(column, no_wrap=column in ("consent", "bank"))
    for r in rows:
        state = ("[red]revoked[/]" if r["revoked_at"] and r["revoked_at"] <= now else
                 "[yellow]expired[/]" if r["expires_at"] <= now else "[green]active[/]")
        table.add_row(r["consent_id"], r["bank_id"], r["purpose"], _show(r["granted_at"]),
                      _show(r["expires_at"]), state, r["source"],
                      r["granted_by"] + (f", withdrawn by {r['revoked_by']}" if r["revoked_by"] else ""))
    console.print(table)


@audit_app.command("show")
def audit_cmd(member: Optional[str] = typer.Option(None, help="Member id"),
              cooperative: Optional[str] = typer.Option(None, help="Cooperative id"),
              limit: int = typer.Option(100, min=1, help="Newest entries to show")) -> None:
    """Who looked at this subject's data: bank, when, endpoint, outcome, model version."""
    subject_type, subject_id = _subject(member, cooperative)
    with _records() as records:
        rows = records.access_log(subject_type, subject_id, limit=limit)
        _audit_read(records, "cli.audit", subject_type, subject_id, len(rows))
    if not rows:
        console.print(f"nobody has asked about {subject_type} {subject_id}.")
        return
    table = Table("when (UTC)", "bank", "key", "endpoint", "status", "outcome", "model",
                  title=f"access log of {subject_type} {subject_id}, newest first")
    for r in rows:
        model = f"{r['model_name']} v{r['model_version']}" if r["model_name"] else "-"
        table.add_row(_show(r["at"]), r["bank_id"], r["key_id"], r["endpoint"], str(r["http_status"]),
                      r["outcome"], model)
    console.print(table)


@audit_app.command("verify")
def audit_verify() -> None:
    """Walk the audit log's hash chain; exit 1 naming the first row changed, deleted or reordered."""
    with _records() as records:
        report = records.verify_audit_chain()
    if not report.intact:
        fail(f"the audit log is NOT intact: row {report.first_bad_id} {report.problem} ({report.detail}); "
             f"{report.rows_checked} row(s) before it are intact. Keep this database as it is and compare "
             "it with a backup.")
    console.print(f"audit log intact: {report.rows_checked} row(s) checked; last hash {report.last_hash} "
                  "(note it down: a later verify must reach the same hash or go past it)")


@records_app.command("grant")
def records_grant(role: str = typer.Argument(..., help="The PostgreSQL login role the service connects as")) -> None:
    """Give the service's role its rights, run as the owner (COOPSCORE_DATABASE_URL = the owner's URL):
    read and append the audit log, never update, delete or alter it."""
    from records.roles import grant_service_role

    with _records() as records:
        try:
            statements = grant_service_role(records.engine, role)
        except (ValueError, LookupError) as exc:
            fail(str(exc))
    for statement in statements:
        console.print(statement)
    console.print(f"role {role} may now run the service; connect it with its own URL in COOPSCORE_DATABASE_URL.")
