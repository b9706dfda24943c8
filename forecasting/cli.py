"""`lakehouse rop` (the seed's worked example) and `lakehouse supply simulate`. The nightly assets
run with `lakehouse materialize group:supply_chain` (no command of their own)."""

from __future__ import annotations

from typing import Annotated

import typer

supply_app = typer.Typer(no_args_is_help=True, help="Predictive supply chain (forecasting/).")


def rop(
    mu_d: Annotated[float, typer.Option("--mu-d", min=0, help="mean daily demand μ_d")],
    sigma_d: Annotated[float, typer.Option("--sigma-d", min=0, help="daily demand sd σ_d")],
    mu_l: Annotated[float, typer.Option("--mu-l", min=0, help="mean lead time μ_L (days)")],
    sigma_l: Annotated[float, typer.Option("--sigma-l", min=0, help="lead time sd σ_L (days)")],
    z: Annotated[float | None, typer.Option(help="safety factor z (e.g. 1.65)")] = None,
    service_level: Annotated[
        float | None, typer.Option(help="cycle service level in (0, 1), e.g. 0.95 → z = 1.645")
    ] = None,
) -> None:
    """Safety stock and reorder point: μ = μ_d·μ_L, σ = sqrt(μ_L·σ_d² + μ_d²·σ_L²),
    SS = z·σ rounded up, ROP = ⌈μ⌉ + SS."""
    from forecasting.inventory import describe_rop, reorder_point, z_from_service_level
    from lakehouse.errors import ConfigError

    if (z is None) == (service_level is None):
        raise ConfigError("give exactly one of --z or --service-level")
    z_value = z if z is not None else z_from_service_level(service_level or 0.0)
    print(describe_rop(reorder_point(mu_d, sigma_d, mu_l, sigma_l, z_value), z_value))


@supply_app.command("simulate")
def simulate_cmd(
    weeks: Annotated[int, typer.Option(min=2, help="replayed weeks")] = 8,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of", help="last replayed day, YYYY-MM-DD (default: the lake's last day)"
        ),
    ] = None,
    max_series: Annotated[
        int, typer.Option(min=0, help="replay the first N series only (0 = all)")
    ] = 0,
) -> None:
    """Replay the lake's last N weeks of demand up to --as-of through the nightly job's code
    path (champions, intervals, ROP, proposals) against a naive fixed reorder policy."""
    from datetime import date

    from forecasting.pipeline import ForecastOptions
    from forecasting.replay import replay_report
    from lakehouse.config import Settings
    from lakehouse.errors import ConfigError

    try:
        day = date.fromisoformat(as_of) if as_of else None
    except ValueError:
        raise ConfigError(f"--as-of {as_of!r} is not a date: use YYYY-MM-DD") from None
    options = ForecastOptions(max_series=max_series or None)
    print(replay_report(Settings.from_env(), weeks=weeks, as_of=day, options=options))
