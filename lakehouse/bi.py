"""The BI layer: Apache Superset over the gold DuckDB file, dashboards as code in `bi/`.

Superset's pins conflict with the project's (numpy, pandas, pyarrow, SQLAlchemy 1.4), so it
lives in its own virtual environment, `.venv-bi`, built from the lock file
`bi/superset-lock.txt`; a stamp named after the lock's hash says it is up to date. Everything
Superset writes stays under `<LAKEHOUSE_HOME>/bi/`: its metadata database (SQLite), the
generated `superset_config.py`, a secret key and, when LAKEHOUSE_BI_ADMIN_PASSWORD is unset, a
generated admin password (both created once, mode 0600), its log and the pid file of the
server `up` started.

`up` builds the environment when missing, migrates the metadata database and creates the
admin on first use, imports the bundle in `bi/` (database, datasets, charts, dashboards;
fixed UUIDs, so importing again updates the same objects) when it changed, then starts
gunicorn on 127.0.0.1:LAKEHOUSE_BI_PORT and waits for /health. Bound beyond loopback
(`--host`, LAKEHOUSE_BI_HOST), Superset moves to a private loopback port and the token
gateway (governance/gateway.py, service `bi`) listens on host:LAKEHOUSE_BI_PORT in front of
it; with `--role R` the database connection is R's published gold file
(governance.policy.publish_role_gold) and only R's tokens pass the gateway. Each import emits
OpenLineage events: the gold tables the dashboards read in, the dashboards out. The gold file is connected
read-only with a new connection per query (Superset's default NullPool): the publisher's
atomic swap (lake/gold.py) is seen by the next query, and no reader holds the writer's lock.
`export` writes the dashboards as they are in Superset back into `bi/`, normalised
(placeholders for the gold path, ids numbered by file order), so a UI edit is a reviewable
diff. Entry-point module: the CLI and the demo import it, nothing below does.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lakehouse.config import Settings, create_secret_file
from lakehouse.errors import LakehouseError
from lakehouse.net import http_url

REPO = Path(__file__).resolve().parent.parent
BUNDLE_DIR = REPO / "bi"
LOCK_FILE = BUNDLE_DIR / "superset-lock.txt"
VENV_BI = REPO / ".venv-bi"
# In the bundle, the database URI names the gold file by this placeholder (a path is per home).
GOLD_PLACEHOLDER = "__GOLD_DB__"
BUNDLE_FOLDERS = ("databases", "datasets", "charts", "dashboards")
METADATA = {"version": "1.0.0", "type": "Dashboard", "timestamp": "2026-01-01T00:00:00+00:00"}
# dashboard slug -> title; the URLs are /superset/dashboard/<slug>/
DASHBOARDS = {
    "sales": "Sales Overview",
    "operations": "Operations",
    "social": "Social",
    "fraud": "Fraud",
    "platform": "Platform",
}
HEALTH_TIMEOUT_S = 120.0

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@dataclass(frozen=True)
class BiPaths:
    home: Path

    @property
    def config(self) -> Path:
        return self.home / "superset_config.py"

    @property
    def metadata_db(self) -> Path:
        return self.home / "superset.db"

    @property
    def secret_key(self) -> Path:
        return self.home / "secret_key"

    @property
    def password_file(self) -> Path:
        return self.home / "admin_password"

    @property
    def pid_file(self) -> Path:
        return self.home / "superset.pid"

    @property
    def log(self) -> Path:
        return self.home / "superset.log"

    @property
    def state(self) -> Path:
        return self.home / "provisioned.json"

    @property
    def gateway_log(self) -> Path:
        return self.home / "gateway.log"

    @property
    def gateway_proof(self) -> Path:
        return self.home / "gateway_proof"


def bi_paths(settings: Settings) -> BiPaths:
    return BiPaths(settings.home / "bi")


def lock_hash() -> str:
    return hashlib.sha1(LOCK_FILE.read_bytes()).hexdigest()[:16]


def _stamp() -> Path:
    return VENV_BI / f".installed-{lock_hash()}"


def _bin(name: str) -> Path:
    return VENV_BI / "bin" / name


# ---- environment ---------------------------------------------------------------------------


def ensure_environment(progress: Progress = _quiet) -> float:
    """Build `.venv-bi` from the lock file when it is missing or the lock changed; returns
    the seconds spent installing (0 when it was up to date)."""
    if _stamp().exists() and _bin("superset").exists():
        return 0.0
    progress(f"installing Superset into {VENV_BI} from {LOCK_FILE.name} (about 2 minutes)")
    seconds = install_environment(VENV_BI)
    for old in VENV_BI.glob(".installed-*"):
        old.unlink()
    _stamp().touch()
    return seconds


def install_environment(target: Path) -> float:
    """A virtual environment at `target` with exactly the lock file's packages (what
    `make venv-bi` does); returns the seconds it took."""
    started = time.monotonic()
    base = getattr(sys, "_base_executable", sys.executable)
    python = str(target / "bin" / "python")
    steps = [
        [base, "-m", "venv", str(target)],
        [python, "-m", "pip", "install", "--quiet", "--no-deps", "-r", str(LOCK_FILE)],
        [python, "-m", "pip", "check"],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).strip().splitlines()
            errors = [line for line in detail if "error" in line.lower()] or detail[-1:]
            raise LakehouseError(
                f"installing Superset failed ({' '.join(step[-3:])}: "
                f"{errors[0] if errors else 'no output'}): check that the package index is "
                f"reachable, then `rm -rf {target}` and run `make bi` again"
            )
    return time.monotonic() - started


# ---- secrets and configuration ---------------------------------------------------------------


def _secret(path: Path, make: Callable[[], str]) -> str:
    """The secret kept in `path` (created once with `make`, mode 0600)."""
    create_secret_file(path, lambda: make() + "\n")
    return path.read_text("utf-8").strip()


def admin_password(settings: Settings) -> tuple[str, bool]:
    """(password, generated): LAKEHOUSE_BI_ADMIN_PASSWORD, else the one generated once."""
    if settings.bi_admin_password:
        return settings.bi_admin_password, False
    paths = bi_paths(settings)
    return _secret(paths.password_file, lambda: secrets.token_urlsafe(18)), True


CONFIG_TEMPLATE = '''"""Superset configuration written by `lakehouse bi up` (lakehouse/bi.py): edit that, not this."""

SECRET_KEY = open({secret_key!r}, encoding="utf-8").read().strip()
SQLALCHEMY_DATABASE_URI = "sqlite:///{metadata_db}"
# Offline: no example data, no analytics pixel (the CSP below lists no outside host), no
# thumbnails or reports worker, nothing fetched from a CDN.
SUPERSET_LOAD_EXAMPLES = False
FEATURE_FLAGS = {{"THUMBNAILS": False, "ALERT_REPORTS": False, "DASHBOARD_RBAC": False}}
TALISMAN_ENABLED = True
TALISMAN_CONFIG = {{
    "content_security_policy": {{
        "base-uri": ["'self'"],
        "default-src": ["'self'"],
        "img-src": ["'self'", "blob:", "data:"],
        "worker-src": ["'self'", "blob:"],
        "connect-src": ["'self'"],
        "object-src": "'none'",
        "style-src": ["'self'", "'unsafe-inline'"],
        "script-src": ["'self'", "'strict-dynamic'"],
    }},
    "content_security_policy_nonce_in": ["script-src"],
    "force_https": False,
    "session_cookie_secure": False,
}}
# Every query reads the gold file as it is now (it is swapped atomically by each dbt build).
CACHE_CONFIG = {{"CACHE_TYPE": "NullCache"}}
DATA_CACHE_CONFIG = {{"CACHE_TYPE": "NullCache"}}
RATELIMIT_ENABLED = False
# Behind the token gateway: redirects and absolute URLs name the address the browser used.
ENABLE_PROXY_FIX = True
PROXY_FIX_CONFIG = {{"x_for": 1, "x_proto": 1, "x_host": 1, "x_port": 0, "x_prefix": 0}}
SUPERSET_WEBSERVER_TIMEOUT = 120
ROW_LIMIT = 50000
'''

# Appended when Superset is served behind the token gateway (`bi up --host`).
GATEWAY_CONFIG_TEMPLATE = '''
# Behind the token gateway: the gateway checked the caller's token and names its subject in
# X-Forwarded-User, with a proof only it and this server know. The caller is signed in as the
# Superset user of that name (created on first visit) with the role VIEWER_ROLE: dashboards,
# charts and explore on this server's database, no SQL Lab, no admin. A request without the
# proof gets no user. Password sign-in is off (the API one is answered with a line saying why);
# the admin works on this machine: `lakehouse bi` commands, or Superset on loopback.
import hmac

from flask_appbuilder.security.manager import AUTH_REMOTE_USER
from superset.security import SupersetSecurityManager


class GatewaySecurityManager(SupersetSecurityManager):
    # FAB's REMOTE_USER login view instead of Superset's password form
    register_superset_auth_view = False

    def auth_user_remote_user(self, username):
        # every user the gateway signs in has exactly the viewer role, whatever it had before
        user = super().auth_user_remote_user(username)
        viewer = self.find_role(AUTH_USER_REGISTRATION_ROLE)
        if user is not None and viewer is not None and list(user.roles) != [viewer]:
            user.roles = [viewer]
            self.update_user(user)
        return user


CUSTOM_SECURITY_MANAGER = GatewaySecurityManager
AUTH_TYPE = AUTH_REMOTE_USER
AUTH_USER_REGISTRATION = True
AUTH_USER_REGISTRATION_ROLE = {viewer_role!r}
RECAPTCHA_PUBLIC_KEY = ""  # Superset reads it whenever registration is on; no form uses it
_GATEWAY_PROOF = open({proof_file!r}, encoding="utf-8").read().strip().encode()
_ADMIN_USER = {admin_user!r}


class GatewayIdentity:
    """WSGI middleware: REMOTE_USER from the gateway's X-Forwarded-User, only with its proof."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        environ.pop("REMOTE_USER", None)
        proof = environ.pop("HTTP_X_LAKEHOUSE_GATEWAY_PROOF", "").encode()
        user = environ.get("HTTP_X_FORWARDED_USER", "")
        if hmac.compare_digest(proof, _GATEWAY_PROOF):
            if environ.get("PATH_INFO", "").startswith("/api/v1/security/login"):
                start_response("403 FORBIDDEN", [("Content-Type", "application/json")])
                return [b'{{"message": "through the gateway your lakehouse token signs you in"}}']
            if user and user != _ADMIN_USER:
                environ["REMOTE_USER"] = user
        return self.app(environ, start_response)


ADDITIONAL_MIDDLEWARE = [GatewayIdentity]
'''
# The Superset role of the users the gateway signs in (provisioned by every bundle import).
VIEWER_ROLE = "Lakehouse Viewer"


def write_config(settings: Settings | BiPaths, behind_gateway: bool = False) -> BiPaths:
    """Superset's configuration for this home; `behind_gateway`: users are signed in by the
    token gateway (gateway_proof, a secret created once, proves a request came through it)."""
    paths = settings if isinstance(settings, BiPaths) else bi_paths(settings)
    paths.home.mkdir(parents=True, exist_ok=True)
    _secret(paths.secret_key, lambda: secrets.token_urlsafe(48))
    text = CONFIG_TEMPLATE.format(secret_key=str(paths.secret_key), metadata_db=paths.metadata_db)
    if behind_gateway:
        assert isinstance(settings, Settings)
        _secret(paths.gateway_proof, lambda: secrets.token_urlsafe(32))
        text += GATEWAY_CONFIG_TEMPLATE.format(
            viewer_role=VIEWER_ROLE,
            proof_file=str(paths.gateway_proof),
            admin_user=settings.bi_admin_user,
        )
    paths.config.write_text(text, "utf-8")
    return paths


def superset_env(settings: Settings | BiPaths) -> dict[str, str]:
    paths = settings if isinstance(settings, BiPaths) else bi_paths(settings)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env |= {
        "SUPERSET_CONFIG_PATH": str(paths.config),
        "SUPERSET_HOME": str(paths.home),
        "FLASK_APP": "superset.app:create_app()",
        "PATH": f"{VENV_BI / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}",
        "SCARF_ANALYTICS": "false",
        "DO_NOT_TRACK": "true",
    }
    return env


def _superset(settings: Settings | BiPaths, *args: str, fix: str) -> str:
    done = subprocess.run(
        [str(_bin("superset")), *args],
        env=superset_env(settings),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        errors = [line for line in lines if "Error" in line or "error" in line]
        detail = (errors or lines or ["no output"])[-1].strip()[:300]
        raise LakehouseError(f"superset {args[0]} failed ({detail}): {fix}")
    return done.stdout


# ---- the bundle --------------------------------------------------------------------------------


def bundle_files(folder: Path = BUNDLE_DIR) -> dict[str, str]:
    """Relative path -> text of every YAML file of the bundle in `folder`."""
    out: dict[str, str] = {}
    for sub in BUNDLE_FOLDERS:
        for path in sorted((folder / sub).glob("*.yaml")):
            out[f"{sub}/{path.name}"] = path.read_text("utf-8")
    if (folder / "metadata.yaml").exists():
        out["metadata.yaml"] = (folder / "metadata.yaml").read_text("utf-8")
    return out


def bundle_hash(folder: Path = BUNDLE_DIR) -> str:
    digest = hashlib.sha1()
    for name, text in bundle_files(folder).items():
        digest.update(name.encode() + b"\0" + text.encode() + b"\0")
    return digest.hexdigest()[:16]


def bundle_zip(settings: Settings, folder: Path = BUNDLE_DIR, gold: Path | None = None) -> bytes:
    """The import zip: the bundle with the gold placeholder replaced by `gold` (default: this
    home's gold file)."""
    from lake.gold import gold_db_path

    gold_path = str(gold or gold_db_path(settings))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in bundle_files(folder).items():
            if name == "metadata.yaml":  # the assets importer's type (export writes Dashboard)
                text = yaml.safe_dump({**yaml.safe_load(text), "type": "assets"}, sort_keys=True)
            archive.writestr(f"bundle/{name}", text.replace(GOLD_PLACEHOLDER, gold_path))
    return buffer.getvalue()


# `superset import-dashboards` leaves existing charts, datasets and the database as they are
# (it overwrites dashboards only), so an edited chart would never reach Superset: the bundle
# goes through Superset's assets importer instead, which overwrites every object by UUID.
_IMPORT_SCRIPT = """
import sys, zipfile
from superset.app import create_app

app = create_app()
with app.app_context():
    from superset import security_manager
    from superset.commands.importers.v1.assets import ImportAssetsCommand
    from superset.commands.importers.v1.utils import get_contents_from_bundle
    from superset.utils.core import override_user

    with zipfile.ZipFile(sys.argv[1]) as bundle:
        contents = get_contents_from_bundle(bundle)
    with override_user(security_manager.find_user(username=sys.argv[2])):
        ImportAssetsCommand(contents).run()

    # the role of the users the token gateway signs in: Gamma's permissions (dashboards,
    # charts, explore) and access to the databases of the bundle, nothing more
    from superset.extensions import db
    from superset.models.core import Database

    viewer = security_manager.add_role(sys.argv[3])
    granted = list(security_manager.find_role("Gamma").permissions)
    for database in db.session.query(Database).all():
        granted.append(security_manager.add_permission_view_menu("database_access", database.perm))
    viewer.permissions = granted
    db.session.commit()
"""


def import_bundle(settings: Settings, folder: Path = BUNDLE_DIR, gold: Path | None = None) -> None:
    """Import (create or overwrite, matched by UUID) every object of the bundle in `folder`,
    its database connected to `gold` (default: this home's gold file)."""
    if not any(name.startswith("dashboards/") for name in bundle_files(folder)):
        raise LakehouseError(
            f"{folder} holds no dashboard YAML: restore bi/ from git (`git checkout -- bi`)"
        )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bundle.zip"
        path.write_bytes(bundle_zip(settings, folder, gold))
        done = subprocess.run(
            [
                str(_bin("python")),
                "-c",
                _IMPORT_SCRIPT,
                str(path),
                settings.bi_admin_user,
                VIEWER_ROLE,
            ],
            env=superset_env(settings),
            capture_output=True,
            text=True,
            check=False,
        )
    if done.returncode != 0:
        lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        errors = [line for line in lines if "Error" in line or "error" in line]
        detail = (errors or lines or ["no output"])[-1].strip()[:300]
        raise LakehouseError(
            f"importing the dashboards failed ({detail}): fix the YAML under {folder} "
            "(`git diff bi/`; `lakehouse bi export` writes valid YAML) and run `make bi`"
        )


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def dashboard_tables(folder: Path = BUNDLE_DIR) -> dict[str, dict[str, list[tuple[str, str]]]]:
    """Dashboard slug -> {gold table its charts read: [(column, type), ...]}, from the bundle."""
    docs = {name: yaml.safe_load(text) for name, text in bundle_files(folder).items()}
    datasets = {d["uuid"]: d for n, d in docs.items() if n.startswith("datasets/")}
    charts = {d["uuid"]: d for n, d in docs.items() if n.startswith("charts/")}
    out: dict[str, dict[str, list[tuple[str, str]]]] = {}
    for name, doc in sorted(docs.items()):
        if not name.startswith("dashboards/"):
            continue
        tables: dict[str, list[tuple[str, str]]] = {}
        for node in (doc.get("position") or {}).values():
            if not (isinstance(node, dict) and node.get("type") == "CHART"):
                continue
            dataset = datasets[charts[node["meta"]["uuid"]]["dataset_uuid"]]
            tables[dataset["table_name"]] = [
                (c["column_name"], str(c.get("type") or "").lower()) for c in dataset["columns"]
            ]
        out[doc["slug"]] = dict(sorted(tables.items()))
    return out


@contextlib.contextmanager
def publish_lineage(
    settings: Settings, gold: Path, instance: str, folder: Path = BUNDLE_DIR
) -> Iterator[None]:
    """The OpenLineage runs of one import: START now, COMPLETE or FAIL when the block ends.
    Job `superset.publish` is the import; each dashboard is a job of its own under it,
    `superset.publish.<slug>` (as each dbt model is), whose inputs are the tables of `gold` its
    charts read (named as the dbt gold models' outputs; a role's file holds only the tables
    the role may read) and whose output is the dashboard: namespace `superset://<instance>`,
    name its slug, the columns it reads (`<table>.<column>`) as schema facet."""
    import duckdb
    from openlineage.client.event_v2 import Dataset

    from lakehouse.lineage import LineageEmitter, duckdb_dataset, typed_schema_facet

    with duckdb.connect(str(gold), read_only=True) as con:
        present = {row[0] for row in con.execute("SHOW TABLES").fetchall()}
    emitter = LineageEmitter(settings)
    try:
        with contextlib.ExitStack() as runs:
            parent = runs.enter_context(emitter.run("superset.publish", [], []))
            for slug, used in dashboard_tables(folder).items():
                tables = {t: cols for t, cols in used.items() if t in present}
                fields = sorted({(f"{t}.{c}", k) for t, cols in tables.items() for c, k in cols})
                dashboard = Dataset(
                    namespace=f"superset://{instance}",
                    name=slug,
                    facets={"schema": typed_schema_facet(fields)},
                )
                inputs = [
                    duckdb_dataset(settings, t, path=gold, columns=c) for t, c in tables.items()
                ]
                runs.enter_context(
                    emitter.run(f"superset.publish.{slug}", inputs, [dashboard], parent=parent)
                )
            yield
    finally:
        emitter.close()


def normalise_export(files: dict[str, str], gold: str) -> dict[str, str]:
    """Superset's export (file name -> YAML) as the bundle is kept in the repo: the folder
    prefix dropped, file names without database ids, the gold path as the placeholder,
    dataset and chart ids (params, query contexts, dashboard positions) renumbered by the
    files' sorted order, and the label colours viewing a dashboard saves dropped, so an export
    does not depend on one metadata database or on who looked at what."""
    docs: dict[str, Any] = {}
    for name, text in files.items():
        parts = name.split("/")
        relative = (
            "/".join(parts[1:]) if parts[0] not in (*BUNDLE_FOLDERS, "metadata.yaml") else name
        )
        if relative == "metadata.yaml":
            continue
        folder, _, file_name = relative.partition("/")
        if folder not in BUNDLE_FOLDERS:
            continue
        doc = yaml.safe_load(text.replace(gold, GOLD_PLACEHOLDER))
        title = doc.get("slice_name") or doc.get("dashboard_title") or doc.get("table_name")
        title = title or doc.get("database_name") or file_name.removesuffix(".yaml")
        docs[f"{folder}/{_slug(str(title))}.yaml"] = doc
    # numbered within their own folder: adding a chart renumbers no dataset
    dataset_ids = {
        doc["uuid"]: i
        for i, (_, doc) in enumerate(
            sorted((n, d) for n, d in docs.items() if n.startswith("datasets/")), start=1
        )
    }
    chart_ids = {
        doc["uuid"]: i
        for i, (_, doc) in enumerate(
            sorted((n, d) for n, d in docs.items() if n.startswith("charts/")), start=1
        )
    }
    for name, doc in docs.items():
        if name.startswith("charts/"):
            _renumber_chart(
                doc, dataset_ids.get(doc.get("dataset_uuid"), 0), chart_ids[doc["uuid"]]
            )
        elif name.startswith("dashboards/"):
            # Superset's front end saves the colours it gave each series when a dashboard is
            # viewed: state of one metadata database, not part of the dashboard's definition
            metadata = doc.get("metadata") or {}
            metadata.pop("map_label_colors", None)
            metadata.update(shared_label_colors=[], color_scheme_domain=[])
            for node in (doc.get("position") or {}).values():
                if isinstance(node, dict) and node.get("type") == "CHART":
                    node["meta"]["chartId"] = chart_ids.get(node["meta"].get("uuid"), 0)
    out = {
        name: yaml.safe_dump(doc, sort_keys=True, allow_unicode=True, width=100)
        for name, doc in sorted(docs.items())
    }
    out["metadata.yaml"] = yaml.safe_dump(METADATA, sort_keys=True)
    return out


def _renumber_chart(doc: dict[str, Any], dataset_id: int, chart_id: int) -> None:
    uid = f"{dataset_id}__table"
    params = doc.get("params") or {}
    params["datasource"] = uid
    for key in ("slice_id", "dashboards"):  # ids of one metadata database; set on import
        params.pop(key, None)
    doc["params"] = params
    context = doc.get("query_context")
    if context:
        query = json.loads(context)
        query["datasource"] = {"id": dataset_id, "type": "table"}
        form = query.get("form_data") or {}
        if form:
            form["datasource"] = uid
            for key in ("slice_id", "dashboards"):
                form.pop(key, None)
        for q in query.get("queries", []):
            if "datasource" in q:
                q["datasource"] = query["datasource"]
        doc["query_context"] = json.dumps(query, sort_keys=True)


def export_bundle(settings: Settings, folder: Path = BUNDLE_DIR) -> list[str]:
    """Write the dashboards (with their charts, datasets and database) as they are in
    Superset into `folder`, normalised; returns the files written. Files of objects no longer
    in Superset are removed, so a deleted chart is a deleted file in the diff."""
    from lake.gold import gold_db_path

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "export.zip"
        _superset(
            settings,
            "export-dashboards",
            "-f",
            str(path),
            fix="start Superset with `lakehouse bi up` first (see its log)",
        )
        with zipfile.ZipFile(path) as archive:
            files = {
                name: archive.read(name).decode("utf-8")
                for name in archive.namelist()
                if name.endswith(".yaml")
            }
    bundle = normalise_export(files, str(gold_db_path(settings)))
    for sub in BUNDLE_FOLDERS:
        for old in (folder / sub).glob("*.yaml"):
            if f"{sub}/{old.name}" not in bundle:
                old.unlink()
    for name, text in bundle.items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, "utf-8")
    return sorted(bundle)


# ---- the server ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BiStatus:
    running: bool
    pid: int | None
    url: str
    healthy: bool
    gateway: str | None = None  # "the token gateway (roles ...)" when served through it

    def describe(self) -> str:
        if not self.running:
            return (
                f"Superset is not running (start it with `make bi`; it would listen on {self.url})"
            )
        state = "healthy" if self.healthy else "starting or unhealthy"
        through = f" through {self.gateway}" if self.gateway else ""
        return f"Superset runs on {self.url}{through} (pid {self.pid}, {state})"


def _record(settings: Settings) -> dict[str, Any]:
    """The pid file of the server `up` started: pid and port of Superset, and when it is
    served through the gateway, the gateway's pid, host, port and roles."""
    try:
        return dict(json.loads(bi_paths(settings).pid_file.read_text("utf-8")))
    except (OSError, ValueError, TypeError):
        return {}


def public_url(settings: Settings, host: str) -> str:
    """The URL users open for a server bound on `host`:LAKEHOUSE_BI_PORT: LAKEHOUSE_BI_PUBLIC_URL
    when set (a proxy in front), else that address (this machine's name for 0.0.0.0)."""
    return settings.bi_public_url or http_url(host, settings.bi_port)


def _instance(url: str) -> str:
    """The lineage namespace's authority of a public URL: host[:port]."""
    return url.partition("://")[2].split("/", 1)[0]


def _url(settings: Settings) -> str:
    """Where users reach Superset: the running server's address, else the configured one."""
    record = _record(settings)
    return str(record.get("url") or public_url(settings, settings.bi_host))


def local_url(settings: Settings) -> str:
    """Where Superset itself answers on this machine (loopback; behind the gateway, its
    private port)."""
    return f"http://127.0.0.1:{_record(settings).get('port', settings.bi_port)}"


def dashboard_urls(settings: Settings) -> dict[str, str]:
    return {slug: f"{_url(settings)}/superset/dashboard/{slug}/" for slug in DASHBOARDS}


def _ours(pid: int, settings: Settings) -> bool:
    """Whether `pid` is a process `up` started for this home (its environment names this
    home's config), not some other process that reused the pid."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False
    return f"SUPERSET_CONFIG_PATH={bi_paths(settings).config}".encode() in environ


def _running_pid(settings: Settings) -> int | None:
    try:
        pid = int(_record(settings)["pid"])
    except (KeyError, ValueError, TypeError):
        return None
    return pid if _ours(pid, settings) else None


def _healthy(settings: Settings, timeout: float = 2.0) -> bool:
    import httpx

    try:
        return httpx.get(f"{local_url(settings)}/health", timeout=timeout).text.strip() == "OK"
    except httpx.HTTPError:
        return False


def status(settings: Settings) -> BiStatus:
    pid = _running_pid(settings)
    record = _record(settings) if pid is not None else {}
    gateway = None
    if record.get("gateway_pid"):
        alive = _ours(int(record["gateway_pid"]), settings)
        gateway = f"the token gateway (roles {', '.join(record.get('roles', []))}" + (
            ")" if alive else "; NOT running: `lakehouse bi down`, then `lakehouse bi up`)"
        )
    healthy = pid is not None and _healthy(settings)
    return BiStatus(pid is not None, pid, _url(settings), healthy, gateway)


def _port_taken(port: int, host: str = "127.0.0.1") -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def gateway_roles(settings: Settings, role: str | None) -> list[str]:
    """The roles whose tokens the gateway lets through to this Superset. With `role`, the
    database connection is that role's published gold file: that role only. Without, the
    connection is the whole gold file: only the roles of policy `services.bi` that may read
    every gold table the dashboards read, so no token reaches more than its role may see."""
    from governance.policy import load_policy, role_of
    from governance.tokens import service_roles

    allowed = service_roles("bi", settings.policy_path)
    if role is not None:
        role_of(settings, role)  # an unknown role: one line naming the known ones
        if role not in allowed:
            raise LakehouseError(
                f"role {role} may not use the BI server (policy services.bi: "
                f"{', '.join(sorted(allowed))}): pick one of those or add it there"
            )
        return [role]
    policy = load_policy(settings.policy_path)
    tables = {f"gold.{t}" for used in dashboard_tables().values() for t in used}
    roles = sorted(r for r in allowed if r in policy and all(policy[r].may_read(t) for t in tables))
    if not roles:
        raise LakehouseError(
            "no role of policy services.bi may read every gold table of the dashboards: "
            "start with `lakehouse bi up --role ROLE` to serve one role's published gold"
        )
    return roles


@dataclass
class UpReport:
    url: str
    user: str
    password: str | None  # shown when generated (None when it came from the environment)
    install_s: float = 0.0  # .venv-bi and the metadata template (once per install)
    provision_s: float = 0.0
    start_s: float = 0.0
    imported: bool = False
    already_running: bool = False
    gateway_roles: list[str] | None = None  # served through the token gateway for these roles

    def lines(self) -> list[str]:
        if self.gateway_roles:
            out = [
                f"Superset on {self.url} through the token gateway: send a token of role "
                + " or ".join(self.gateway_roles)
                + " (LAKEHOUSE_API_TOKENS) as the HTTP Basic password; it signs you in as "
                f"the token's subject, Superset role {VIEWER_ROLE}"
            ]
        else:
            out = [
                f"Superset on {self.url} (user {self.user}"
                + (
                    f", password {self.password}"
                    if self.password
                    else ", password from LAKEHOUSE_BI_ADMIN_PASSWORD"
                )
                + ")"
            ]
        if self.already_running:
            out[0] = "already running: " + out[0]
        out += [
            f"  {title}: {self.url}/superset/dashboard/{slug}/"
            for slug, title in DASHBOARDS.items()
        ]
        return out


def _state(paths: BiPaths) -> dict[str, str]:
    try:
        return json.loads(paths.state.read_text("utf-8"))
    except (OSError, ValueError):
        return {}


def _template_db() -> Path:
    """A metadata database migrated and initialised (roles, permissions) by this install of
    Superset, with no user and no object: `db upgrade` + `init` take about a minute, so a new
    home copies it (the admin, the bundle and the secret key stay per home)."""
    return VENV_BI / "share" / "lakehouse" / f"superset-template-{lock_hash()}.db"


def prepare_template(progress: Progress = _quiet) -> float:
    """Migrate and initialise the template metadata database once per install (`make bi`
    and `make venv-bi` run it); returns the seconds it took (0 when it exists)."""
    if _template_db().exists():
        return 0.0
    started = time.monotonic()
    progress("preparing Superset's metadata database (migrations, roles; once per install)")
    with tempfile.TemporaryDirectory(prefix="lakehouse-bi-template-") as tmp:
        paths = write_config(BiPaths(Path(tmp)))
        fix = f"reinstall Superset: `rm -rf {VENV_BI}` and `make bi` (see {paths.log})"
        _superset(paths, "db", "upgrade", fix=fix)
        _superset(paths, "init", fix=fix)
        target = _template_db()
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        shutil.copyfile(paths.metadata_db, partial)
        os.replace(partial, target)
    return time.monotonic() - started


def provision(
    settings: Settings,
    progress: Progress = _quiet,
    gold: Path | None = None,
    instance: str | None = None,
    behind_gateway: bool = False,
) -> bool:
    """Metadata database, admin and bundle, each only when it changed; True when the bundle
    was imported. `gold`: the DuckDB file the database connection reads (default: this home's
    gold file); `instance`: host:port users reach Superset on (the lineage namespace);
    `behind_gateway`: users are signed in by the token gateway (see write_config)."""
    paths = write_config(settings, behind_gateway)
    state = _state(paths)
    password, _ = admin_password(settings)
    fix = f"see {paths.log}; remove {paths.metadata_db} to start from an empty Superset"
    if state.get("lock") != lock_hash() or not paths.metadata_db.exists():
        if paths.metadata_db.exists():  # a Superset upgrade: migrate this home's objects
            progress("migrating the Superset metadata database")
            _superset(settings, "db", "upgrade", fix=fix)
            _superset(settings, "init", fix=fix)
        else:
            prepare_template(progress)
            shutil.copyfile(_template_db(), paths.metadata_db)
        state = {"lock": lock_hash()}
    admin = f"{settings.bi_admin_user}:{hashlib.sha256(password.encode()).hexdigest()}"
    if state.get("admin") != admin:
        progress(f"creating the admin user {settings.bi_admin_user}")
        _superset(
            settings,
            "fab",
            "create-admin",
            "--username",
            settings.bi_admin_user,
            "--firstname",
            "Lakehouse",
            "--lastname",
            "Admin",
            "--email",
            f"{settings.bi_admin_user}@lakehouse.local",
            "--password",
            password,
            fix=fix,
        )  # a no-op for a user that exists: then its password is set below
        if state.get("admin"):
            _superset(
                settings,
                "fab",
                "reset-password",
                "--username",
                settings.bi_admin_user,
                "--password",
                password,
                fix=fix,
            )
        state["admin"] = admin
    from lake.gold import gold_db_path

    gold = gold or gold_db_path(settings)
    wanted = f"{bundle_hash()}:{gold}"
    imported = False
    if state.get("bundle") != wanted:
        progress(f"importing the dashboards from {BUNDLE_DIR}")
        with publish_lineage(settings, gold, instance or _instance(_url(settings))):
            import_bundle(settings, gold=gold)
        state["bundle"] = wanted
        imported = True
    paths.state.write_text(json.dumps(state, indent=1), "utf-8")
    return imported


def up(
    settings: Settings,
    progress: Progress = _quiet,
    host: str | None = None,
    role: str | None = None,
) -> UpReport:
    """Install if needed, provision, start Superset and wait until healthy. On `host`
    (default LAKEHOUSE_BI_HOST) beyond loopback, Superset listens on a private loopback port
    and the token gateway on host:LAKEHOUSE_BI_PORT; with `role`, the dashboards read that
    role's published gold file."""
    from governance.tokens import is_loopback, require_tokens_to_bind
    from lake.gold import gold_db_path

    host = host or settings.bi_host
    behind_gateway = not is_loopback(host)
    if behind_gateway:  # before any work: no tokens, no start
        require_tokens_to_bind(settings, host, "the BI server")
    roles = gateway_roles(settings, role) if behind_gateway or role else []
    gold = gold_db_path(settings)
    if not gold.exists():
        raise LakehouseError(f"no gold database at {gold}: run `make demo` first")
    password, generated = admin_password(settings)
    running = _running_pid(settings) is not None
    record = _record(settings) if running else {}
    if running and (record.get("host", "127.0.0.1"), record.get("role")) != (host, role):
        raise LakehouseError(
            f"Superset already runs on {_url(settings)}"
            + (f" for role {record['role']}" if record.get("role") else "")
            + ": stop it with `lakehouse bi down`, then run `lakehouse bi up` again"
        )
    if not running and _port_taken(settings.bi_port, host):
        raise LakehouseError(
            f"port {settings.bi_port} on {host} is taken by another program: set "
            "LAKEHOUSE_BI_PORT to a free port (or stop that program)"
        )
    connection = gold
    if role is not None:
        from governance.policy import publish_role_gold

        progress(f"publishing the gold of role {role}")
        connection, _ = publish_role_gold(settings, role)
    url = public_url(settings, host)
    instance = _instance(url)
    report = UpReport(url, settings.bi_admin_user, password if generated else None)
    if roles and behind_gateway:
        report.gateway_roles = roles
    if running:
        report.already_running = True
        # into the running server: the next request sees the new objects
        report.imported = provision(settings, progress, connection, instance, behind_gateway)
        return report
    report.install_s = ensure_environment(progress) + prepare_template(progress)
    started = time.monotonic()
    report.imported = provision(settings, progress, connection, instance, behind_gateway)
    report.provision_s = time.monotonic() - started
    started = time.monotonic()
    superset_port = _free_loopback_port() if behind_gateway else settings.bi_port
    record = {"pid": _start(settings, progress, superset_port), "port": superset_port}
    record |= {"host": host, "url": url, "role": role, "roles": roles}
    bi_paths(settings).pid_file.write_text(json.dumps(record), "utf-8")
    if behind_gateway:
        record["gateway_pid"] = _start_gateway(settings, host, superset_port, roles, progress)
        bi_paths(settings).pid_file.write_text(json.dumps(record), "utf-8")
    report.start_s = time.monotonic() - started
    return report


def _free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start(settings: Settings, progress: Progress, port: int) -> int:
    """Start gunicorn on 127.0.0.1:`port` and wait for /health; returns its pid."""
    paths = bi_paths(settings)
    url = f"http://127.0.0.1:{port}"
    progress(f"starting Superset on {url}")
    log = open(paths.log, "ab")  # noqa: SIM115 - handed to the server process
    command = [
        str(_bin("gunicorn")),
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "1",
        "--worker-class",
        "gthread",
        "--threads",
        "8",
        "--timeout",
        "120",
        "superset.app:create_app()",
    ]
    process = subprocess.Popen(
        command,
        env=superset_env(settings),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: `down` stops it and its workers
        cwd=paths.home,
    )
    log.close()
    paths.pid_file.write_text(json.dumps({"pid": process.pid, "port": port}), "utf-8")
    deadline = time.monotonic() + HEALTH_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            paths.pid_file.unlink(missing_ok=True)
            tail = paths.log.read_text("utf-8", errors="replace").strip().splitlines()[-1:]
            raise LakehouseError(
                f"Superset exited at start ({tail[0][:200] if tail else 'no output'}): see {paths.log}"
            )
        if _healthy(settings):
            return process.pid
        time.sleep(0.5)
    raise LakehouseError(
        f"Superset did not answer {url}/health within {HEALTH_TIMEOUT_S:.0f} s: "
        f"see {paths.log}, then `lakehouse bi down` and `make bi`"
    )


def _start_gateway(
    settings: Settings, host: str, superset_port: int, roles: list[str], progress: Progress
) -> int:
    """The token gateway (governance/gateway.py) on host:LAKEHOUSE_BI_PORT in front of
    Superset, in its own process group; returns its pid once it accepts connections."""
    paths = bi_paths(settings)
    progress(f"starting the token gateway on {host}:{settings.bi_port} (roles {', '.join(roles)})")
    log = open(paths.gateway_log, "ab")  # noqa: SIM115 - handed to the gateway process
    command = [sys.executable, "-m", "governance.gateway", "bi", host, str(settings.bi_port)]
    command += [f"http://127.0.0.1:{superset_port}", "--roles", ",".join(roles)]
    command += ["--proof-file", str(paths.gateway_proof)]  # signs its callers in (write_config)
    process = subprocess.Popen(
        command,
        # the config path marks it as this home's (see _ours), like the Superset server
        env=os.environ | {"SUPERSET_CONFIG_PATH": str(paths.config)},
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        cwd=REPO,
    )
    log.close()
    probe_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = paths.gateway_log.read_text("utf-8", errors="replace").strip().splitlines()
            raise LakehouseError(
                f"the BI gateway exited at start ({tail[-1][:200] if tail else 'no output'}): "
                f"see {paths.gateway_log}, then `lakehouse bi down`"
            )
        with (
            contextlib.suppress(OSError),
            socket.create_connection((probe_host, settings.bi_port), timeout=1),
        ):
            return process.pid
        time.sleep(0.2)
    raise LakehouseError(
        f"the BI gateway did not listen on {host}:{settings.bi_port} within 30 s: see "
        f"{paths.gateway_log}, then `lakehouse bi down`"
    )


def _stop(pid: int, settings: Settings) -> None:
    """Stop the process group of `pid` (TERM, then KILL after 20 s)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and _ours(pid, settings):
        with contextlib.suppress(ChildProcessError):  # reap it when `up` ran in this process
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.2)
    if _ours(pid, settings):
        os.killpg(pid, signal.SIGKILL)


def down(settings: Settings) -> bool:
    """Stop the server `up` started for this home (its process group) and its gateway; False
    when none runs."""
    paths = bi_paths(settings)
    record = _record(settings)
    gateway = int(record.get("gateway_pid") or 0)
    if gateway and _ours(gateway, settings):
        _stop(gateway, settings)
    pid = _running_pid(settings)
    if pid is None:
        paths.pid_file.unlink(missing_ok=True)
        return False
    _stop(pid, settings)
    paths.pid_file.unlink(missing_ok=True)
    return True
