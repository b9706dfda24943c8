import os
from pathlib import Path

import pytest

from lakehouse.config import Settings, create_secret_file
from lakehouse.errors import ConfigError


def test_defaults_are_the_embedded_profile(tmp_path: Path) -> None:
    s = Settings.from_env({"LAKEHOUSE_HOME": str(tmp_path)})
    assert s.home == tmp_path.resolve()
    assert s.lake_root == str(tmp_path.resolve() / "lake")
    assert s.embedded_broker and s.bootstrap == "127.0.0.1:19092"
    assert s.topic_partitions == 3
    # no secret from the repository: a key generated once into the home (0600)
    key_file = tmp_path.resolve() / "keys" / "pii.key"
    assert s.pii_hash_key == key_file.read_text() and len(s.pii_hash_key) == 64
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert Settings.from_env({"LAKEHOUSE_HOME": str(tmp_path)}).pii_hash_key == s.pii_hash_key
    assert "pii" not in repr(s).lower()
    assert (
        Settings.from_env({"LAKEHOUSE_HOME": str(tmp_path), "LAKEHOUSE_PII_KEY": "k"}).pii_hash_key
        == "k"
    )
    assert s.gold_db_path == tmp_path.resolve() / "lake" / "gold" / "gold.duckdb"
    assert s.dagster_postgres_url is None and s.storage_options == {}


def test_external_broker_and_s3_lake() -> None:
    s = Settings.from_env(
        {
            "LAKEHOUSE_HOME": "/tmp/x",
            "LAKEHOUSE_KAFKA_BOOTSTRAP": "kafka-1:9092,kafka-2:9092",
            "LAKEHOUSE_LAKE_ROOT": "s3://bucket/lake/",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:5000",
            "AWS_ACCESS_KEY_ID": "k",
        }
    )
    assert not s.embedded_broker and s.bootstrap == "kafka-1:9092,kafka-2:9092"
    assert s.lake_root == "s3://bucket/lake" and not s.is_local_lake
    assert s.table_uri("raw", "orders") == "s3://bucket/lake/raw/orders"
    assert s.gold_db_path == Path("/tmp/x/gold/gold.duckdb")  # DuckDB file stays local
    assert s.storage_options["AWS_ENDPOINT_URL"] == "http://127.0.0.1:5000"


@pytest.mark.parametrize(
    ("name", "value", "fix"),
    [
        ("LAKEHOUSE_BROKER_PORT", "abc", "free TCP port"),
        ("LAKEHOUSE_BROKER_PORT", "80", "between 1024 and 65535"),
        ("LAKEHOUSE_TOPIC_PARTITIONS", "0", "between 1 and 64"),
        ("LAKEHOUSE_KAFKA_BOOTSTRAP", "localhost", "host:port"),
        ("LAKEHOUSE_LAKE_ROOT", "gs://bucket", "s3://bucket/prefix"),
        ("LAKEHOUSE_LAKE_ROOT", "s3://", "give a bucket"),
        ("LAKEHOUSE_LAKE_ROOT", "s3:///", "give a bucket"),
        ("LAKEHOUSE_OPENLINEAGE_URL", "ftp://x", "http(s) endpoint"),
        ("LAKEHOUSE_DAGSTER_POSTGRES_URL", "mysql://x", "postgresql://"),
        ("LAKEHOUSE_MAX_BATCH_RECORDS", "-5", "positive integer"),
        ("LAKEHOUSE_GOLD_MEMORY_LIMIT", "lots", "such as 2GB"),
        ("LAKEHOUSE_ENGINE", "polars", "duckdb"),
        ("LAKEHOUSE_SPARK_MASTER", "local[0]", "spark://host:port"),
        ("LAKEHOUSE_SPARK_MASTER", "http://x", "sc://host:port"),
        ("LAKEHOUSE_REDIS_PREFIX", "team a:*", "such as lakehouse:fraud:"),
    ],
)
def test_bad_values_give_one_line_naming_variable_and_fix(name: str, value: str, fix: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"LAKEHOUSE_HOME": "/tmp/x", name: value})
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{name}={value!r}")
    assert fix in message


def test_engine_and_spark_settings() -> None:
    default = Settings.from_env({"LAKEHOUSE_HOME": "/tmp/x"})
    assert (default.engine, default.spark_master, default.spark_conf) == ("duckdb", "local[*]", {})
    s = Settings.from_env(
        {
            "LAKEHOUSE_HOME": "/tmp/x",
            "LAKEHOUSE_ENGINE": "Spark",
            "LAKEHOUSE_SPARK_MASTER": "spark://master:7077",
            "LAKEHOUSE_SPARK_CONF_spark__executor__memory": "4g",
            "LAKEHOUSE_SPARK_CONF_spark.sql.shuffle.partitions": "64",
        }
    )
    assert s.engine == "spark" and s.spark_master == "spark://master:7077"
    assert s.spark_conf == {"spark.executor.memory": "4g", "spark.sql.shuffle.partitions": "64"}
    for master in ("local", "local[2]", "local[*]", "local[4,2]", "yarn", "k8s://https://k:6443"):
        assert Settings.from_env({"LAKEHOUSE_SPARK_MASTER": master}).spark_master == master


def test_spark_conf_names_must_be_spark_settings() -> None:
    for name in ("LAKEHOUSE_SPARK_CONF_executor__memory", "LAKEHOUSE_SPARK_CONF_spark__master"):
        with pytest.raises(ConfigError) as info:
            Settings.from_env({"LAKEHOUSE_HOME": "/tmp/x", name: "x"})
        assert "\n" not in str(info.value) and name in str(info.value)


def test_bi_settings(tmp_path: Path) -> None:
    s = Settings.from_env({"LAKEHOUSE_HOME": str(tmp_path)})
    assert (s.bi_port, s.bi_admin_user, s.bi_admin_password) == (8088, "admin", None)
    s = Settings.from_env(
        {
            "LAKEHOUSE_HOME": str(tmp_path),
            "LAKEHOUSE_BI_PORT": "18088",
            "LAKEHOUSE_BI_ADMIN_USER": "trainer",
            "LAKEHOUSE_BI_ADMIN_PASSWORD": "s3cret-enough",
        }
    )
    assert (s.bi_port, s.bi_admin_user, s.bi_admin_password) == (18088, "trainer", "s3cret-enough")
    assert "s3cret-enough" not in repr(s)
    with pytest.raises(ConfigError, match=r"LAKEHOUSE_BI_PORT.*free TCP port"):
        Settings.from_env({"LAKEHOUSE_HOME": str(tmp_path), "LAKEHOUSE_BI_PORT": "80"})
    with pytest.raises(ConfigError, match="LAKEHOUSE_BI_ADMIN_USER"):
        Settings.from_env({"LAKEHOUSE_HOME": str(tmp_path), "LAKEHOUSE_BI_ADMIN_USER": "a b"})
    with pytest.raises(ConfigError, match="at least 8 characters") as short:
        Settings.from_env({"LAKEHOUSE_HOME": str(tmp_path), "LAKEHOUSE_BI_ADMIN_PASSWORD": "abc12"})
    assert "abc12" not in str(short.value)  # a secret is never echoed


def test_s3_commit_modes() -> None:
    s3 = {"LAKEHOUSE_HOME": "/tmp/x", "LAKEHOUSE_LAKE_ROOT": "s3://bucket/lake"}
    assert Settings.from_env(s3).storage_options == {"conditional_put": "etag"}
    unsafe = Settings.from_env(s3 | {"LAKEHOUSE_S3_COMMIT": "unsafe-rename"})
    assert unsafe.storage_options == {"AWS_S3_ALLOW_UNSAFE_RENAME": "true"}
    # a local lake needs none of them
    assert Settings.from_env({"LAKEHOUSE_S3_COMMIT": "unsafe-rename"}).storage_options == {}
    with pytest.raises(ConfigError) as info:
        Settings.from_env(s3 | {"LAKEHOUSE_S3_COMMIT": "dynamodb"})  # gone from delta-rs 1.6
    assert "conditional-put" in str(info.value)


def test_a_secret_file_created_by_racing_processes_is_one_whole_secret(tmp_path: Path) -> None:
    from concurrent.futures import ProcessPoolExecutor

    path = tmp_path / "keys" / "pii.key"
    with ProcessPoolExecutor(4) as pool:
        seen = set(pool.map(_create_and_read, [path] * 32))
    assert len(seen) == 1 and len(seen.pop()) == 64  # every process reads the same whole key
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert oct(path.parent.stat().st_mode & 0o777) == "0o700"
    assert [p.name for p in path.parent.iterdir()] == ["pii.key"]  # no temporary file left


def _create_and_read(path: Path) -> str:
    create_secret_file(path, lambda: os.urandom(32).hex())
    return path.read_text()
