"""`coopscore banks`, `coopscore consents` and `coopscore audit`: the service's records by hand.

    coopscore banks add agribank --name "Agribank" [--scope scores:read --scope scores:batch] [--expires 2027-12-31]
    coopscore banks list | banks revoke BANK_ID | banks revoke-key KEY_ID
    coopscore consents grant --member TV0000001 --bank agribank --expires 2027-06-30 [--purpose credit_scoring]
    coopscore consents revoke CONSENT_ID | consents list --member TV0000001
    coopscore audit --member TV0000001
"""
from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from coopscore.paths import get_paths

banks_app = typer.Typer(add_completion=False, no_args_is_help=True,
                        help="Banks that may call the scoring API, and their API keys.")
consents_app = typer.Typer(add_completion=False, no_args_is_help=True,
                           help="Members' and cooperatives' consents to be scored for a bank.")
console = Console()


def fail(message: str) -> None:
    """Errors read like advice, not stack traces."""
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code=1)


def _records():
    from serving.records import Records, RecordsError

    try:
        return Records(get_paths())
    except RecordsError as exc:
        fail(str(exc))


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
                                                   "consents:write, audit:read, console (a fund's "
                                                   "loan officers signing in to /app/console)"),
              expires: Optional[str] = typer.Option(None, help="Last valid day of the key, YYYY-MM-DD")) -> None:
    """Register a bank and print its first API key (shown once)."""
    expires_at = _day(expires, "--expires") if expires else None
    with _records() as records:
        try:
            key = records.add_bank(bank_id, name, scope, expires_at)
        except (ValueError, LookupError) as exc:
            fail(str(exc))
    console.print(f"bank [bold]{key.bank_id}[/] registered; key {key.key_id} "
                  f"({', '.join(key.scopes)}, expires {_show(key.expires_at)})")
    console.print("[bold yellow]API key, shown only this once (only its hash is stored; if it is "
                  "lost, issue a new one and revoke this):[/]")
    print(key.token)  # plain print: no wrapping or markup in what gets copied


@banks_app.command("list")
def banks_list() -> None:
    """Every bank and its keys (ids, scopes, dates; never the secrets)."""
    with _records() as records:
        rows = records.list_banks()
    if not rows:
        console.print("no banks yet: `coopscore banks add BANK_ID --name NAME` registers one.")
        return
    table = Table(title="banks and API keys")
    for column in ("bank", "name", "key", "scopes", "created", "expires", "revoked"):
        table.add_column(column, no_wrap=column in ("bank", "key"))
    for bank in rows:
        for i, key in enumerate(bank["keys"] or [None]):
            table.add_row(bank["bank_id"] if i == 0 else "", bank["name"] if i == 0 else "",
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


@consents_app.command("grant")
def consents_grant(member: Optional[str] = typer.Option(None, help="Member id, e.g. TV0000001"),
                   cooperative: Optional[str] = typer.Option(None, help="Cooperative id, e.g. HTX000001"),
                   bank: str = typer.Option(..., help="The bank the subject consents to"),
                   expires: str = typer.Option(..., help="Last day of the consent, YYYY-MM-DD"),
                   purpose: str = typer.Option("credit_scoring", help="What the data may be used for")) -> None:
    """Record a subject's explicit consent for one bank and purpose, until a date."""
    subject_type, subject_id = _subject(member, cooperative)
    expires_at = _day(expires, "--expires")
    with _records() as records:
        try:
            row = records.grant_consent(subject_type, subject_id, bank, purpose,
                                        expires_at=expires_at, source="cli")
        except (ValueError, LookupError) as exc:
            fail(str(exc))
    console.print(f"consent {row['consent_id']}: {subject_type} {subject_id} -> bank {bank}, "
                  f"{purpose}, until {_show(row['expires_at'])} UTC")


@consents_app.command("revoke")
def consents_revoke(consent_id: str = typer.Argument(..., help="The id shown by `consents list`")) -> None:
    """Withdraw a consent from now on (the audit log keeps what happened before)."""
    with _records() as records:
        try:
            row = records.revoke_consent(consent_id)
        except LookupError as exc:
            fail(str(exc))
    console.print(f"consent {consent_id} revoked on {_show(row['revoked_at'])} UTC")


@consents_app.command("list")
def consents_list(member: Optional[str] = typer.Option(None, help="Member id"),
                  cooperative: Optional[str] = typer.Option(None, help="Cooperative id")) -> None:
    """A subject's consents, newest first, with their state today."""
    subject_type, subject_id = _subject(member, cooperative)
    now = datetime.now(timezone.utc)
    with _records() as records:
        rows = records.list_consents(subject_type, subject_id)
    if not rows:
        console.print(f"no consent recorded for {subject_type} {subject_id}: no bank may score them.")
        return
    table = Table(title=f"consents of {subject_type} {subject_id}")
    for column in ("consent", "bank", "purpose", "granted", "expires", "state", "source"):
        table.add_column(column, no_wrap=column in ("consent", "bank"))
    for r in rows:
        state = ("[red]revoked[/]" if r["revoked_at"] and r["revoked_at"] <= now else
                 "[yellow]expired[/]" if r["expires_at"] <= now else "[green]active[/]")
        table.add_row(r["consent_id"], r["bank_id"], r["purpose"], _show(r["granted_at"]),
                      _show(r["expires_at"]), state, r["source"])
    console.print(table)


def audit_cmd(member: Optional[str] = typer.Option(None, help="Member id"),
              cooperative: Optional[str] = typer.Option(None, help="Cooperative id"),
              limit: int = typer.Option(100, min=1, help="Newest entries to show")) -> None:
    """Who looked at this subject's data: bank, when, endpoint, outcome, model version."""
    subject_type, subject_id = _subject(member, cooperative)
    with _records() as records:
        rows = records.access_log(subject_type, subject_id, limit=limit)
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
