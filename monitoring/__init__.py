"""Operational alerts (seed Annex A): stream and gold freshness, null rates, orphan files,
failed runs and failed blocking checks, delivered like every other alert of the project.

Plain Python (no Dagster import); dagster_project/monitoring.py wires it into sensors and
checks."""
