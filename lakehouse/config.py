"""The one configuration object: every setting comes from a `LAKEHOUSE_*` environment variable.

Defaults are the embedded profile (local folders, embedded broker, SQLite Dagster storage), so a
fresh clone runs with nothing set. A bad value raises `ConfigError` whose message is one line
naming the variable and the fix; the CLI prints exactly that line.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TypeVar

from lakehouse.errors import ConfigError

T = TypeVar("T")

PII_KEY_FILE = "pii.key"  # beside the subject key store when LAKEHOUSE_PII_KEY is unset
_generated_pii_keys: dict[Path, str] = {}


def create_secret_file(path: Path, make: Callable[[], str]) -> None:
    """Create `path` holding `make()` unless it exists (file 0600, folder 0700). Atomic across
    processes: the secret is written to a private temporary file and hard-linked into place, so
    a reader sees no file or the whole secret, and of two creators the first link wins."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(make())
        # another process created it first: theirs is the secret
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        os.unlink(temporary)


def _generated_secret(path: Path) -> str:
    """The secret in `path`, created once (32 random bytes, hex; folder 0700, file 0600) so a
    fresh clone runs without a secret in the repository; production sets the variable."""
    if path in _generated_pii_keys:
        return _generated_pii_keys[path]
    create_secret_file(path, lambda: os.urandom(32).hex())
    if os.stat(path).st_mode & 0o077:
        raise ConfigError(f"{path} is readable by others: run chmod 600 {path} (it is a secret)")
    secret = path.read_text().strip()
    if not secret:
        raise ConfigError(
            f"{path} is empty: delete it (a new key is generated) or set LAKEHOUSE_PII_KEY"
        )
    _generated_pii_keys[path] = secret
    return secret


def _parse(env: Mapping[str, str], name: str, default: T, cast: Callable[[str], T], fix: str) -> T:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return cast(raw.strip())
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name}={raw!r} is invalid ({exc}): {fix}") from None


def _int_between(low: int, high: int) -> Callable[[str], int]:
    def cast(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise ValueError(f"{value} is outside {low}..{high}")
        return value

    return cast


def _days_between(low: float, high: float) -> Callable[[str], float]:
    def cast(text: str) -> float:
        value = float(text)
        if not low <= value <= high:  # NaN fails too
            raise ValueError(f"{value} is outside {low:g}..{high:g}")
        return value

    return cast


_number_between = _days_between  # any bounded number (km, probabilities)


def _bootstrap(text: str) -> str:
    for server in text.split(","):
        host, sep, port = server.strip().rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"{server!r} is not host:port")
    return text


def _lake_root(text: str) -> str:
    if "://" in text and not text.startswith(("s3://", "file://")):
        raise ValueError("only local paths, file:// and s3:// are supported")
    scheme, sep, rest = text.partition("://")
    if sep and not rest.strip("/"):
        where = "a bucket, s3://bucket/prefix" if scheme == "s3" else "a path, file:///abs/path"
        raise ValueError(f"{scheme}:// names no location: give {where}")
    return text.rstrip("/")


def _url(text: str) -> str:
    if not text.startswith(("http://", "https://")):
        raise ValueError("expected an http(s):// URL")
    return text


def _public_url(text: str) -> str:
    host = _url(text).partition("://")[2].split("/", 1)[0]
    if not host or host.split(":")[0] in ("0.0.0.0", "[::]"):
        raise ValueError("names no address users can open")
    return text.rstrip("/")


def _postgres_url(text: str) -> str:
    if not text.startswith(("postgresql://", "postgres://")):
        raise ValueError("expected postgresql://user@host:port/db")
    return text


def _redis_url(text: str) -> str:
    if not text.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("expected redis://host:port/db")
    return text


def _redis_prefix(text: str) -> str:
    if any(c.isspace() or c in "*?[]" for c in text):
        raise ValueError("no spaces or glob characters (* ? [ ])")
    return text


def _mlflow_uri(text: str) -> str:
    if not text.startswith(("sqlite:///", "http://", "https://", "postgresql://")):
        raise ValueError("expected sqlite:///path.db, http(s):// or postgresql://")
    return text


def _bi_user(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", text):
        raise ValueError("not a user name")
    return text


def _bind_host(text: str) -> str:
    """An interface address or host name to listen on (not a URL, no port)."""
    if not re.fullmatch(r"[A-Za-z0-9.:-]{1,253}", text) or text.count(":") == 1:
        raise ValueError("not a host")
    return text


def _bi_password(text: str) -> str | None:
    """LAKEHOUSE_BI_ADMIN_PASSWORD, never echoed in the error (it is a secret)."""
    if not text.strip():
        return None
    if len(text.strip()) < 8:
        raise ConfigError(
            "LAKEHOUSE_BI_ADMIN_PASSWORD is too short: use at least 8 characters, or unset it "
            "to have one generated"
        )
    return text.strip()


@dataclass(frozen=True)
class Settings:
    """Typed settings; build with `Settings.from_env()`."""

    home: Path
    lake_root: str
    kafka_bootstrap: str | None
    broker_port: int
    topic_partitions: int
    pii_key: str | None = field(repr=False)  # LAKEHOUSE_PII_KEY, a secret: never printed
    late_watermark_minutes: int
    max_batch_records: int
    gold_db_path: Path
    openlineage_url: str | None
    dagster_postgres_url: str | None
    redis_url: str | None
    mlflow_tracking_uri: str
    alert_webhook_url: str | None
    sentiment_encoder: str = "static"
    # every key of the online fraud feature store starts with this: deployments (or test
    # runs) sharing one Redis database stay apart
    redis_prefix: str = "lakehouse:fraud:"
    # brands the sentiment pipeline recognises in posts: ours first, then competitors
    sentiment_brands: tuple[str, ...] = ("Lumio", "Vexa", "Nordline")
    storage_options: dict[str, str] = field(default_factory=dict)
    # fraud label delay: validation window, gap after training, labels' maturity (days)
    fraud_val_days: float = 5.0
    fraud_gap_days: float = 2.0
    fraud_maturity_days: float = 5.0
    # ---- supply actions (forecasting/actions.py) ---------------------------------------
    # a store-to-store transfer only between stores at most this far apart (km)
    supply_transfer_max_km: float = 450.0
    # an open shipment with P(late) at or above this alerts its destination store
    supply_eta_alert_p_late: float = 0.5
    # ---- privacy and access (governance/) ------------------------------------------------
    raw_encryption: bool = True  # direct identifiers in raw encrypted under per-subject keys
    master_key: str | None = field(default=None, repr=False)  # wraps the subject keys
    key_store_path: Path = Path(".lakehouse/keys/subject_keys.db")
    s3_sse: str | None = None  # AES256 (SSE-S3) or aws:kms (SSE-KMS) on every object written
    s3_sse_kms_key_id: str | None = None
    erasure_retention_hours: float = 0.0  # VACUUM retention after an erasure (time travel)
    policy_path: Path | None = None  # access policy; None: governance/policy.yaml
    api_tokens: tuple[str, ...] = field(default=(), repr=False)  # "sha256:<hex>=subject:role"
    # ---- Delta maintenance (`lakehouse lake maintain`, lake/maintenance.py) ----
    # VACUUM keeps every file a version of the last N hours needs (a running reader's
    # snapshot), and the files of the versions downstream markers point at
    maintenance_retention_hours: int = 168
    # OPTIMIZE compacts files smaller than this into files of about this size
    maintenance_target_file_mb: int = 128
    # ---- operational alerts (monitoring/, docs/operations.md) ----
    # a topic whose newest event (or oldest unread record) is older than this alerts
    stream_latency_seconds: int = 120
    # a gold model not rebuilt for this long alerts (the refresh runs every 15 minutes)
    gold_max_age_minutes: int = 30
    # an alert resolved less than this ago is not raised again (flapping)
    alert_cooldown_minutes: int = 30
    # a micro-batch smaller than this is too small to judge null rates on
    null_rate_min_rows: int = 50
    # ---- idle streams and long-running processes (FinOps) ----
    # a topic without new offsets for this long moves its sensor to the slow cadence
    idle_stream_minutes: int = 10
    # ... and probes the broker every this many seconds until new offsets wake it
    idle_stream_poll_seconds: int = 60
    # long-running processes (live generator, service warmers) exit after this idle time
    # when run with --exit-when-idle; 0 = never
    idle_exit_seconds: int = 0
    # DuckDB memory_limit of the gold build (dbt): above it DuckDB spills to disk, so the
    # build's memory does not grow with the lake
    gold_memory_limit: str = "2GB"
    # ---- engine (silver transforms): duckdb on one machine, or spark (lake/spark_silver.py) --
    engine: str = "duckdb"
    spark_master: str = "local[*]"
    # extra Spark configuration (LAKEHOUSE_SPARK_CONF_<key>), applied after the defaults
    spark_conf: dict[str, str] = field(default_factory=dict)
    # ---- external Kafka security (ingestion/kafka_client.security_options) ---------------
    kafka_security_protocol: str = "PLAINTEXT"  # PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL
    kafka_sasl_mechanism: str | None = None  # PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = field(default=None, repr=False)
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    kafka_ssl_password: str | None = field(default=None, repr=False)
    kafka_ssl_check_hostname: bool = True
    # ---- BI (Superset, lakehouse/bi.py) ----
    bi_port: int = 8088
    # beyond loopback, Superset moves to a private loopback port behind the token gateway
    bi_host: str = "127.0.0.1"
    # where users reach the BI server (a proxy's URL); None: http://<host>:<port>, with this
    # machine's name for a wildcard host (0.0.0.0, ::)
    bi_public_url: str | None = None
    bi_admin_user: str = "admin"
    # None: a password generated once and kept in <home>/bi/admin_password (0600)
    bi_admin_password: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        home = Path(_parse(env, "LAKEHOUSE_HOME", ".lakehouse", str, "set it to a writable folder"))
        home = home.expanduser().resolve()
        lake_root = _parse(
            env,
            "LAKEHOUSE_LAKE_ROOT",
            str(home / "lake"),
            _lake_root,
            "set it to a local folder or s3://bucket/prefix",
        )
        if lake_root.startswith("file://"):
            lake_root = lake_root.removeprefix("file://")
        is_local = not lake_root.startswith("s3://")
        default_gold = (Path(lake_root) if is_local else home) / "gold" / "gold.duckdb"
        return cls(
            home=home,
            lake_root=lake_root,
            kafka_bootstrap=_parse(
                env,
                "LAKEHOUSE_KAFKA_BOOTSTRAP",
                None,
                _bootstrap,
                "use host:port[,host:port], or unset it to use the embedded broker",
            ),
            broker_port=_parse(
                env,
                "LAKEHOUSE_BROKER_PORT",
                19092,
                _int_between(1024, 65535),
                "use a free TCP port between 1024 and 65535",
            ),
            topic_partitions=_parse(
                env,
                "LAKEHOUSE_TOPIC_PARTITIONS",
                3,
                _int_between(1, 64),
                "use an integer between 1 and 64",
            ),
            pii_key=_parse(
                env,
                "LAKEHOUSE_PII_KEY",
                None,
                _non_empty,
                "set a secret string (it keys the HMAC that pseudonymises PII)",
            ),
            late_watermark_minutes=_parse(
                env,
                "LAKEHOUSE_LATE_WATERMARK_MINUTES",
                120,
                _int_between(0, 60 * 24 * 365),
                "use a whole number of minutes (0 disables lateness counting)",
            ),
            max_batch_records=_parse(
                env,
                "LAKEHOUSE_MAX_BATCH_RECORDS",
                500_000,
                _int_between(1, 100_000_000),
                "use a positive integer",
            ),
            gold_db_path=Path(
                _parse(env, "LAKEHOUSE_GOLD_DB", str(default_gold), str, "set a local .duckdb path")
            ),
            openlineage_url=_parse(
                env,
                "LAKEHOUSE_OPENLINEAGE_URL",
                None,
                _url,
                "use the http(s) endpoint of an OpenLineage backend, or unset it for file output",
            ),
            dagster_postgres_url=_parse(
                env,
                "LAKEHOUSE_DAGSTER_POSTGRES_URL",
                None,
                _postgres_url,
                "use postgresql://user@host:port/db, or unset it for SQLite",
            ),
            redis_url=_parse(
                env,
                "LAKEHOUSE_REDIS_URL",
                None,
                _redis_url,
                "use redis://host:port/db, or unset it for the in-process feature store",
            ),
            redis_prefix=_parse(
                env,
                "LAKEHOUSE_REDIS_PREFIX",
                "lakehouse:fraud:",
                _redis_prefix,
                "use a key prefix such as lakehouse:fraud: (no spaces or * ? [ ])",
            ),
            mlflow_tracking_uri=_parse(
                env,
                "LAKEHOUSE_MLFLOW_TRACKING_URI",
                f"sqlite:///{home / 'mlflow' / 'mlflow.db'}",
                _mlflow_uri,
                "use sqlite:///path.db or http(s)://host:port, or unset it for <home>/mlflow",
            ),
            alert_webhook_url=_parse(
                env,
                "LAKEHOUSE_ALERT_WEBHOOK_URL",
                None,
                _url,
                "use the http(s) URL of a Slack-compatible webhook, or unset it to only store alerts",
            ),
            sentiment_encoder=_parse(
                env,
                "LAKEHOUSE_SENTIMENT_ENCODER",
                "static",
                _sentiment_encoder,
                "use static (distilled MiniLM, fast) or transformer (full MiniLM)",
            ),
            sentiment_brands=_parse(
                env,
                "LAKEHOUSE_SENTIMENT_BRANDS",
                ("Lumio", "Vexa", "Nordline"),
                _brands,
                "use a comma-separated list of brand names, your brand first (e.g. Acme,Rival)",
            ),
            storage_options=_storage_options(env)
            | _sse_options(env, lake_root.startswith("s3://"))
            | (_s3_commit_options(env) if lake_root.startswith("s3://") else {}),
            fraud_val_days=_parse(
                env,
                "LAKEHOUSE_FRAUD_VAL_DAYS",
                5.0,
                _days_between(0.5, 365),
                "use a number of days between 0.5 and 365 (the fraud validation window)",
            ),
            fraud_gap_days=_parse(
                env,
                "LAKEHOUSE_FRAUD_GAP_DAYS",
                2.0,
                _days_between(0, 365),
                "use a number of days between 0 and 365 (gap between training and validation)",
            ),
            fraud_maturity_days=_parse(
                env,
                "LAKEHOUSE_FRAUD_MATURITY_DAYS",
                5.0,
                _days_between(0, 365),
                "use a number of days between 0 and 365 (how long chargebacks take to arrive)",
            ),
            # ---- supply actions ----
            supply_transfer_max_km=_parse(
                env,
                "LAKEHOUSE_SUPPLY_TRANSFER_MAX_KM",
                450.0,
                _number_between(0, 5000),
                "use a distance in km between 0 and 5000 (farthest store-to-store transfer)",
            ),
            supply_eta_alert_p_late=_parse(
                env,
                "LAKEHOUSE_SUPPLY_ETA_ALERT_P_LATE",
                0.5,
                _number_between(0, 1),
                "use a probability between 0 and 1 (P(late) that alerts the store)",
            ),
            **_privacy_settings(env, home, lake_root),
            maintenance_retention_hours=_parse(
                env,
                "LAKEHOUSE_MAINTENANCE_RETENTION_HOURS",
                168,
                _int_between(1, 24 * 365),
                "use hours between 1 and 8760 (longer than any reader or backup runs)",
            ),
            maintenance_target_file_mb=_parse(
                env,
                "LAKEHOUSE_MAINTENANCE_TARGET_FILE_MB",
                128,
                _int_between(1, 4096),
                "use megabytes between 1 and 4096 (the size OPTIMIZE compacts files to)",
            ),
            **_operations_settings(env),
            gold_memory_limit=_parse(
                env,
                "LAKEHOUSE_GOLD_MEMORY_LIMIT",
                "2GB",
                _memory_size,
                "use a size such as 2GB or 512MB (DuckDB's memory_limit for the gold build)",
            ),
            engine=_parse(
                env,
                "LAKEHOUSE_ENGINE",
                "duckdb",
                _engine,
                "use duckdb (one machine, the default) or spark (LAKEHOUSE_SPARK_MASTER)",
            ),
            spark_master=_parse(
                env,
                "LAKEHOUSE_SPARK_MASTER",
                "local[*]",
                _spark_master,
                "use local[*], local[N], spark://host:port, yarn, k8s://https://host:port "
                "or a Spark Connect URL sc://host:port",
            ),
            spark_conf=_spark_conf(env),
            **_kafka_security(env),
            bi_port=_parse(
                env,
                "LAKEHOUSE_BI_PORT",
                8088,
                _int_between(1024, 65535),
                "use a free TCP port between 1024 and 65535",
            ),
            bi_host=_parse(
                env,
                "LAKEHOUSE_BI_HOST",
                "127.0.0.1",
                _bind_host,
                "use an interface address such as 127.0.0.1, 0.0.0.0 or 10.0.0.5 (no port)",
            ),
            bi_public_url=_parse(
                env,
                "LAKEHOUSE_BI_PUBLIC_URL",
                None,
                _public_url,
                "use the http(s)://host[:port] users open, e.g. https://bi.example.com, or unset it",
            ),
            bi_admin_user=_parse(
                env,
                "LAKEHOUSE_BI_ADMIN_USER",
                "admin",
                _bi_user,
                "use letters, digits, '.', '_' or '-' (at most 64)",
            ),
            bi_admin_password=_bi_password(env.get("LAKEHOUSE_BI_ADMIN_PASSWORD", "")),
        )

    # ---- derived locations -------------------------------------------------------------
    @property
    def pii_hash_key(self) -> str:
        """The HMAC key of pseudonyms: LAKEHOUSE_PII_KEY, else a generated key kept in
        `<key store folder>/pii.key` (0600), the same for every process of this home."""
        if self.pii_key is not None:
            return self.pii_key
        return _generated_secret(self.key_store_path.parent / PII_KEY_FILE)

    @property
    def embedded_broker(self) -> bool:
        return self.kafka_bootstrap is None

    @property
    def bootstrap(self) -> str:
        return self.kafka_bootstrap or f"127.0.0.1:{self.broker_port}"

    @property
    def is_local_lake(self) -> bool:
        return not self.lake_root.startswith("s3://")

    @cached_property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    @property
    def broker_dir(self) -> Path:
        return self.home / "broker"

    @property
    def lineage_file(self) -> Path:
        return self.home / "openlineage" / "events.jsonl"

    @property
    def models_dir(self) -> Path:
        """Local model files (e.g. trained heads, feature snapshots); MLflow keeps the registry."""
        return self.home / "models"

    def table_uri(self, zone: str, name: str) -> str:
        """Location of a Delta table: `<lake>/<zone>/<name>` (zones: raw, silver, gold, _dead_letter)."""
        return f"{self.lake_root}/{zone}/{name}" if name else f"{self.lake_root}/{zone}"


ENGINES = ("duckdb", "spark")
SPARK_CONF_PREFIX = "LAKEHOUSE_SPARK_CONF_"


def _memory_size(text: str) -> str:
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)\s*([KMGT]i?B)", text, re.IGNORECASE)
    if not match or float(match.group(1)) <= 0:
        raise ValueError("expected a positive size with a unit: KB, MB, GB, TB (or KiB ...)")
    return f"{match.group(1)}{match.group(2).upper().replace('IB', 'iB')}"


def _engine(text: str) -> str:
    if text.lower() not in ENGINES:
        raise ValueError(f"expected one of {', '.join(ENGINES)}")
    return text.lower()


def _spark_master(text: str) -> str:
    local = re.fullmatch(r"local(\[(\*|[1-9][0-9]*)(,[0-9]+)?\])?", text)
    remote = text.startswith(("spark://", "k8s://", "sc://", "mesos://")) or text == "yarn"
    if not local and not remote:
        raise ValueError("not a Spark master URL")
    return text


def _spark_conf(env: Mapping[str, str]) -> dict[str, str]:
    """`LAKEHOUSE_SPARK_CONF_<key>=<value>` → Spark conf `<key>`: the key as Spark spells it,
    its dots written `__` where a shell allows no dot in a name
    (`LAKEHOUSE_SPARK_CONF_spark__executor__memory=4g` → `spark.executor.memory`)."""
    conf: dict[str, str] = {}
    for name, value in env.items():
        if not name.startswith(SPARK_CONF_PREFIX) or not value.strip():
            continue
        key = name.removeprefix(SPARK_CONF_PREFIX).replace("__", ".")
        if not key.startswith("spark.") or key == "spark.master":
            raise ConfigError(
                f"{name}: a Spark setting name must start with spark__ (e.g. "
                "LAKEHOUSE_SPARK_CONF_spark__executor__memory=4g); set the master with "
                "LAKEHOUSE_SPARK_MASTER"
            )
        conf[key] = value.strip()
    return conf


KAFKA_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def _one_of(choices: tuple[str, ...]) -> Callable[[str], str]:
    def cast(text: str) -> str:
        if text.upper() not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return text.upper()

    return cast


def _readable_file(text: str) -> Path:
    path = Path(text).expanduser()
    if not path.is_file():
        raise ValueError(f"no file at {path}")
    return path.resolve()


def _kafka_security(env: Mapping[str, str]) -> dict[str, object]:
    """TLS and SASL settings of an external Kafka (every client the project creates)."""
    protocol = _parse(
        env,
        "LAKEHOUSE_KAFKA_SECURITY_PROTOCOL",
        "PLAINTEXT",
        _one_of(KAFKA_PROTOCOLS),
        f"use one of {', '.join(KAFKA_PROTOCOLS)} (your broker's listener)",
    )
    mechanism = _parse(
        env,
        "LAKEHOUSE_KAFKA_SASL_MECHANISM",
        None,
        _one_of(SASL_MECHANISMS),
        f"use one of {', '.join(SASL_MECHANISMS)}",
    )
    username = env.get("LAKEHOUSE_KAFKA_SASL_USERNAME") or None
    password = env.get("LAKEHOUSE_KAFKA_SASL_PASSWORD") or None
    files = {
        f"kafka_ssl_{name}": _parse(
            env,
            f"LAKEHOUSE_KAFKA_SSL_{name.upper()}",
            None,
            _readable_file,
            "give the path of a readable PEM file",
        )
        for name in ("cafile", "certfile", "keyfile")
    }
    if protocol != "PLAINTEXT" and not env.get("LAKEHOUSE_KAFKA_BOOTSTRAP"):
        raise ConfigError(
            f"LAKEHOUSE_KAFKA_SECURITY_PROTOCOL={protocol} needs an external broker: set "
            "LAKEHOUSE_KAFKA_BOOTSTRAP (the embedded broker listens in plaintext on loopback)"
        )
    if protocol.startswith("SASL_"):
        if mechanism is None:
            raise ConfigError(
                f"LAKEHOUSE_KAFKA_SECURITY_PROTOCOL={protocol} needs "
                f"LAKEHOUSE_KAFKA_SASL_MECHANISM: set one of {', '.join(SASL_MECHANISMS)}"
            )
        if not username or not password:
            raise ConfigError(
                f"LAKEHOUSE_KAFKA_SASL_MECHANISM={mechanism} needs LAKEHOUSE_KAFKA_SASL_USERNAME "
                "and LAKEHOUSE_KAFKA_SASL_PASSWORD: set both"
            )
    elif mechanism is not None:
        raise ConfigError(
            f"LAKEHOUSE_KAFKA_SASL_MECHANISM={mechanism} needs "
            "LAKEHOUSE_KAFKA_SECURITY_PROTOCOL=SASL_SSL (or SASL_PLAINTEXT): set it"
        )
    if (files["kafka_ssl_certfile"] is None) != (files["kafka_ssl_keyfile"] is None):
        raise ConfigError(
            "LAKEHOUSE_KAFKA_SSL_CERTFILE and LAKEHOUSE_KAFKA_SSL_KEYFILE go together (a client "
            "certificate and its key): set both or neither"
        )
    return {
        "kafka_security_protocol": protocol,
        "kafka_sasl_mechanism": mechanism,
        "kafka_sasl_username": username,
        "kafka_sasl_password": password,
        **files,
        "kafka_ssl_password": env.get("LAKEHOUSE_KAFKA_SSL_PASSWORD") or None,
        "kafka_ssl_check_hostname": _parse(
            env,
            "LAKEHOUSE_KAFKA_SSL_CHECK_HOSTNAME",
            True,
            _on_off,
            "use on or off (off only for a test broker whose certificate names another host)",
        ),
    }


def _brands(text: str) -> tuple[str, ...]:
    brands = tuple(b.strip() for b in text.split(","))
    if not all(brands) or len(set(b.lower() for b in brands)) != len(brands):
        raise ValueError("expected distinct, non-empty names")
    return brands


def _sentiment_encoder(text: str) -> str:
    if text not in ("static", "transformer"):
        raise ValueError("expected static or transformer")
    return text


def _non_empty(text: str) -> str:
    if not text:
        raise ValueError("empty")
    return text


def _sse_options(env: Mapping[str, str], on_s3: bool) -> dict[str, str]:
    """Server-side encryption for every object deltalake writes (LAKEHOUSE_S3_SSE)."""
    sse = env.get("LAKEHOUSE_S3_SSE")
    if not on_s3 or sse not in ("AES256", "aws:kms"):
        return {}
    options = {"aws_server_side_encryption": sse}
    if env.get("LAKEHOUSE_S3_SSE_KMS_KEY_ID"):
        options["aws_sse_kms_key_id"] = env["LAKEHOUSE_S3_SSE_KMS_KEY_ID"]
    return options


def _storage_options(env: Mapping[str, str]) -> dict[str, str]:
    """Object-store options for deltalake (S3 or any S3-compatible server such as MinIO/moto)."""
    keys = {
        "AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN": "AWS_SESSION_TOKEN",
        "AWS_REGION": "AWS_REGION",
        "AWS_DEFAULT_REGION": "AWS_REGION",
        "AWS_ENDPOINT_URL": "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT": "AWS_ENDPOINT_URL",
        "AWS_ALLOW_HTTP": "AWS_ALLOW_HTTP",
    }
    options = {target: env[source] for source, target in keys.items() if env.get(source)}
    return options


S3_COMMITS = ("conditional-put", "unsafe-rename")


def _s3_commit_options(env: Mapping[str, str]) -> dict[str, str]:
    """How two writers of one Delta table on S3 are kept from both writing a log version
    (LAKEHOUSE_S3_COMMIT): `conditional-put` (default) puts each `_delta_log` entry with
    If-None-Match, so the second writer's put fails (ingestion then re-checks its offsets,
    ingestion/raw.py); `unsafe-rename` trusts a single writer per table, for S3-compatible
    stores without conditional writes. (delta-rs 1.6 dropped its DynamoDB lock: it logs an
    error and ignores `AWS_S3_LOCKING_PROVIDER`, so it is not offered.)"""
    mode = _parse(
        env,
        "LAKEHOUSE_S3_COMMIT",
        "conditional-put",
        _s3_commit,
        f"use one of {', '.join(S3_COMMITS)}",
    )
    if mode == "unsafe-rename":
        return {"AWS_S3_ALLOW_UNSAFE_RENAME": "true"}
    return {"conditional_put": "etag"}


def _s3_commit(text: str) -> str:
    if text.lower() not in S3_COMMITS:
        raise ValueError(f"expected one of {', '.join(S3_COMMITS)}")
    return text.lower()


# ---- privacy and access (governance/) ----------------------------------------------------


def _on_off(text: str) -> bool:
    if text.lower() in ("1", "true", "on", "yes"):
        return True
    if text.lower() in ("0", "false", "off", "no"):
        return False
    raise ValueError("expected on or off")


def _sse(text: str) -> str:
    if text not in ("AES256", "aws:kms"):
        raise ValueError("expected AES256 or aws:kms")
    return text


def _tokens(text: str) -> tuple[str, ...]:
    entries = tuple(t.strip() for t in text.split(",") if t.strip())
    for entry in entries:
        digest, _, who = entry.partition("=")
        subject, _, role = who.partition(":")
        if not digest.startswith("sha256:") or len(digest) != 71 or not subject or not role:
            raise ValueError("malformed entry")
    return entries


def _privacy_settings(env: Mapping[str, str], home: Path, lake_root: str) -> dict[str, object]:
    sse = _parse(
        env, "LAKEHOUSE_S3_SSE", None, _sse, "use AES256 (SSE-S3) or aws:kms (SSE-KMS), or unset it"
    )
    kms_key = env.get("LAKEHOUSE_S3_SSE_KMS_KEY_ID") or None
    if kms_key and sse != "aws:kms":
        raise ConfigError("LAKEHOUSE_S3_SSE_KMS_KEY_ID needs LAKEHOUSE_S3_SSE=aws:kms: set both")
    policy = env.get("LAKEHOUSE_POLICY")
    return {
        "raw_encryption": _parse(
            env, "LAKEHOUSE_RAW_ENCRYPTION", True, _on_off, "use on or off (raw PII encryption)"
        ),
        "master_key": env.get("LAKEHOUSE_MASTER_KEY") or None,
        "key_store_path": Path(
            _parse(
                env,
                "LAKEHOUSE_KEY_STORE",
                str(home / "keys" / "subject_keys.db"),
                str,
                "set a local file path for the subject key store",
            )
        ),
        "s3_sse": sse if lake_root.startswith("s3://") else None,
        "s3_sse_kms_key_id": kms_key,
        "erasure_retention_hours": _parse(
            env,
            "LAKEHOUSE_ERASURE_RETENTION_HOURS",
            0.0,
            _days_between(0, 24 * 3650),
            "use a number of hours >= 0 (how long erased rows stay reachable by time travel)",
        ),
        "policy_path": Path(policy).expanduser().resolve() if policy else None,
        "api_tokens": _parse(
            env,
            "LAKEHOUSE_API_TOKENS",
            (),
            _tokens,
            "use comma-separated sha256:<hex of the token>=<subject>:<role> entries "
            "(lakehouse token create prints one)",
        ),
    }


def _operations_settings(env: Mapping[str, str]) -> dict[str, object]:
    """Operational alerts and idle streams (monitoring/, docs/operations.md)."""
    return {
        "stream_latency_seconds": _parse(
            env,
            "LAKEHOUSE_STREAM_LATENCY_SECONDS",
            120,
            _int_between(1, 7 * 24 * 3600),
            "use a whole number of seconds >= 1 (the seed's stream-latency threshold is 120)",
        ),
        "gold_max_age_minutes": _parse(
            env,
            "LAKEHOUSE_GOLD_MAX_AGE_MINUTES",
            30,
            _int_between(1, 7 * 24 * 60),
            "use a whole number of minutes >= 1 (longer than the 15-minute gold refresh)",
        ),
        "alert_cooldown_minutes": _parse(
            env,
            "LAKEHOUSE_ALERT_COOLDOWN_MINUTES",
            30,
            _int_between(0, 7 * 24 * 60),
            "use a whole number of minutes >= 0 (0 raises a cleared condition again at once)",
        ),
        "null_rate_min_rows": _parse(
            env,
            "LAKEHOUSE_NULL_RATE_MIN_ROWS",
            50,
            _int_between(1, 100_000_000),
            "use a positive number of rows (smaller micro-batches are not judged)",
        ),
        "idle_stream_minutes": _parse(
            env,
            "LAKEHOUSE_IDLE_STREAM_MINUTES",
            10,
            _int_between(1, 7 * 24 * 60),
            "use a whole number of minutes >= 1 (no new offsets for that long: slow cadence)",
        ),
        "idle_stream_poll_seconds": _parse(
            env,
            "LAKEHOUSE_IDLE_STREAM_POLL_SECONDS",
            60,
            _int_between(5, 24 * 3600),
            "use a whole number of seconds >= 5 (how often an idle topic's sensor probes)",
        ),
        "idle_exit_seconds": _parse(
            env,
            "LAKEHOUSE_IDLE_EXIT_SECONDS",
            0,
            _int_between(0, 7 * 24 * 3600),
            "use a whole number of seconds >= 0 (0: long-running processes never exit when idle)",
        ),
    }


def get_settings() -> Settings:
    return Settings.from_env()
