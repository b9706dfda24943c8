"""Superset settings of deploy/compose.yaml: secrets from the environment, nothing phones home."""

import os

SECRET_KEY = os.environ["SUPERSET_SECRET_KEY"]
SQLALCHEMY_DATABASE_URI = os.environ["SUPERSET_DATABASE_URI"]
FEATURE_FLAGS = {"ALERT_REPORTS": False}
SUPERSET_LOAD_EXAMPLES = False
# the gold file is opened read-only: duckdb:////gold/gold.duckdb?access_mode=read_only
PREVENT_UNSAFE_DB_CONNECTIONS = False
