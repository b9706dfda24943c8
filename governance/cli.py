"""`lakehouse privacy …`, `lakehouse query --role`, `lakehouse audit`, `lakehouse token`."""

from __future__ import annotations

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


def register(app: typer.Typer) -> None:
    app.add_typer(privacy_app, name="privacy")
