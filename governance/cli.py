"""`lakehouse privacy …`, `lakehouse query --role`, `lakehouse audit`, `lakehouse token`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lakehouse.config import Settings

privacy_app = typer.Typer(
    no_args_is_help=True, help="Personal data: classification, scan, erasure."
)


@privacy_app.command("forget")
def forget_command(
    subject: Annotated[
        str, typer.Option(help="<subject>=<value>: customer_id=c_77, account_id=…, card=…")
    ],
) -> None:
    """Erase one data subject: silver/gold rows deleted and vacuumed, raw key destroyed,
    online fraud store entries removed, the request logged."""
    from governance.erasure import forget

    result = forget(Settings.from_env(), subject)
    print(result.summary())


@privacy_app.command("classification")
def classification_command() -> None:
    """The personal fields of every contract and what silver does with them (Markdown)."""
    from governance.pii import classification_markdown

    print(classification_markdown())


@privacy_app.command("docs")
def docs_command(
    readme: Annotated[
        Path, typer.Option(help="the Markdown file whose generated blocks to rewrite")
    ] = Path("README.md"),
    check: Annotated[bool, typer.Option(help="exit 1 if the file is out of date")] = False,
) -> None:
    """Regenerate the README's classification and access-policy tables from the contracts and
    governance/policy.yaml (`<!-- classification:begin -->` … and `<!-- policy:begin -->` …)."""
    from governance.policy import render_doc_blocks

    settings = Settings.from_env()
    text = readme.read_text("utf-8")
    fresh = render_doc_blocks(text, settings.policy_path)
    if check:
        if fresh != text:
            print(f"{readme} is out of date: run `lakehouse privacy docs`")
            raise typer.Exit(1)
        print(f"{readme}: up to date")
        return
    readme.write_text(fresh, "utf-8")
    print(f"{readme}: {'updated' if fresh != text else 'already up to date'}")


@privacy_app.command("scan")
def scan_command() -> None:
    """Look for raw personal values in every silver and gold table (exit 1 on a hit)."""
    from governance.scan import scan

    result = scan(Settings.from_env())
    print(result.summary())
    for hit in result.hits:
        print(f"  {hit}")
    if result.hits:
        raise typer.Exit(1)


@privacy_app.command("publish")
def publish_command(
    role: Annotated[list[str] | None, typer.Option(help="role(s); default: every role")] = None,
) -> None:
    """Write each role's gold DuckDB file for BI (masked, filtered, only its tables)."""
    from governance.policy import load_policy, publish_role_gold

    settings = Settings.from_env()
    for name in role or sorted(load_policy(settings.policy_path)):
        path, counts = publish_role_gold(settings, name)
        print(f"{name}: {len(counts)} tables, {sum(counts.values()):,} rows -> {path}")


def query_command(
    sql: Annotated[str, typer.Argument(help="one SELECT over gold.<table> / silver.<table>")],
    role: Annotated[str, typer.Option(help="the policy role to read as")],
    limit: Annotated[int, typer.Option(help="rows printed")] = 40,
) -> None:
    """Run SQL over gold and silver through the access policy (masks, row filters), audited."""
    import duckdb

    from governance.policy import AccessDenied, run_query

    try:
        result = run_query(Settings.from_env(), role, sql)
    except AccessDenied as exc:
        print(f"denied: {exc}")
        raise typer.Exit(1) from None
    rows = result.table
    print(duckdb.sql("SELECT * FROM rows").limit(limit))
    print(f"{rows.num_rows:,} rows as role {role} from {', '.join(result.tables) or 'no table'}")


def audit_command(
    role: Annotated[str | None, typer.Option(help="only this role")] = None,
    who: Annotated[str | None, typer.Option(help="only this user or token subject")] = None,
    action: Annotated[str | None, typer.Option(help="query, publish, erasure or request")] = None,
    denied: Annotated[bool, typer.Option("--denied", help="only denials")] = False,
    since_hours: Annotated[float | None, typer.Option(help="only the last N hours")] = None,
    limit: Annotated[int, typer.Option(help="rows shown")] = 50,
) -> None:
    """Who read what: the append-only _audit table, newest first."""
    from datetime import UTC, datetime, timedelta

    import duckdb

    from governance.audit import read_audit

    since = datetime.now(UTC) - timedelta(hours=since_hours) if since_hours else None
    settings = Settings.from_env()
    rows = read_audit(
        settings,
        role=role,
        who=who,
        action=action,
        allowed=False if denied else None,
        since=since,
        limit=limit,
    )
    view = duckdb.sql(
        'SELECT "at", who, role, action, allowed, rows_returned AS rows, tables, reason FROM rows'
    )
    print(view.limit(limit))
    print(f"{rows.num_rows} audit rows ({settings.table_uri('_audit', '')})")


token_app = typer.Typer(no_args_is_help=True, help="API tokens for the services.")


@token_app.command("create")
def token_create(
    subject: Annotated[str, typer.Option(help="who holds the token (audit: who)")],
    role: Annotated[str, typer.Option(help="a role of governance/policy.yaml")],
) -> None:
    """Print a new token (shown once) and the LAKEHOUSE_API_TOKENS entry that accepts it."""
    from governance.policy import role_of
    from governance.tokens import new_token

    role_of(Settings.from_env(), role)  # an unknown role is refused here, not at request time
    token, entry = new_token(subject, role)
    print(f"token (give it to {subject}; it is not stored): {token}")
    print(f"add to LAKEHOUSE_API_TOKENS (comma-separated): {entry}")


def register(app: typer.Typer) -> None:
    app.add_typer(token_app, name="token")
    app.add_typer(privacy_app, name="privacy")
    app.command("query")(query_command)
    app.command("audit")(audit_command)
