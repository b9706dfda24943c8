"""Errors a user can act on. Their message is a single line that names the fix."""


class LakehouseError(Exception):
    """Base class: the CLI prints `str(error)` on one line and exits with status 2."""


class ConfigError(LakehouseError):
    """A `LAKEHOUSE_*` variable (or a CLI argument) has a value that cannot work."""


class BrokerError(LakehouseError):
    """The embedded broker cannot be started, reached or stopped."""


class BrokerBehindLakeError(LakehouseError):
    """The broker's log is behind the offsets the lake already holds (data was lost upstream)."""


class PromotionRefused(LakehouseError):
    """A model cannot be registered or promoted: its validation metric (or the champion's on
    the same window) is missing or NaN, so the two cannot be compared."""


class ConcurrentIngestError(LakehouseError):
    """Another run committed the same offsets first: this run wrote nothing."""
