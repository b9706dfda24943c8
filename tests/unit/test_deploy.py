"""deploy/compose.yaml and the Dockerfile, checked statically (no container runtime here).

YAML parses; every image tag is pinned; every long-running service has a healthcheck and
every `depends_on` names a service; no secret is written in the files (each is a
`${VARIABLE:?...}` the .env sets); every LAKEHOUSE_* variable the project's services receive
is a real setting of lakehouse/config.py, and their whole environment, with the secrets
filled in, is accepted by `Settings.from_env` (on both engines).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from lakehouse.config import SPARK_CONF_PREFIX, Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose.yaml"
PROJECT_IMAGE = "lakehouse:"
# variables the project reads besides LAKEHOUSE_* (lakehouse/config.py: S3; Dagster's home)
PASSTHROUGH = {
    "AWS_ENDPOINT_URL",
    "AWS_ALLOW_HTTP",
    "AWS_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "DAGSTER_HOME",
}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|_KEY$|TOKEN", re.IGNORECASE)
SUBSTITUTION = re.compile(r"\$\{([A-Z0-9_]+)(:?[-?][^}]*)?\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _settings_names() -> set[str]:
    source = (ROOT / "lakehouse" / "config.py").read_text()
    return set(re.findall(r'"(LAKEHOUSE_[A-Z0-9_]+)"', source))


def _project_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose["services"].items()
        if str(service.get("image", "")).startswith(PROJECT_IMAGE)
    }


def test_the_services_the_seed_names_are_there(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {
        "kafka",
        "minio",
        "spark-master",
        "spark-worker",
        "postgres",
        "dagster-webserver",
        "dagster-daemon",
        "superset",
    } <= set(services)
    kafka = services["kafka"]["environment"]
    assert kafka["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper
    for name in ("dagster-webserver", "dagster-daemon"):
        assert services[name]["image"].startswith(PROJECT_IMAGE)
    assert services["spark-master"]["build"]["dockerfile"] == "Dockerfile"
    assert (COMPOSE.parent / services["spark-master"]["build"]["context"] / "Dockerfile").is_file()


def test_every_image_tag_is_pinned(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        image = service.get("image")
        assert image, f"{name} names no image"
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest" and re.search(r"\d", tag), (name, image)
    dockerfiles = [ROOT / "Dockerfile", *(ROOT / "deploy").rglob("Dockerfile")]
    for dockerfile in dockerfiles:
        for line in dockerfile.read_text().splitlines():
            if line.startswith("FROM "):
                tag = line.split()[1].rpartition(":")[2]
                assert tag != "latest" and re.search(r"\d", tag), (dockerfile, line)


def test_the_project_image_installs_the_exact_pins() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "-c constraints.txt" in text
    assert "dbt parse" in text  # dagster-dbt needs the manifest before the code location loads


def test_healthchecks_and_dependencies(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        one_shot = service.get("restart") == "no"
        if not one_shot:
            assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        for dependency, rule in (service.get("depends_on") or {}).items():
            assert dependency in services, (name, dependency)
            condition = rule["condition"]
            if condition == "service_healthy":
                assert services[dependency].get("healthcheck"), (name, dependency)
            else:
                assert condition == "service_completed_successfully", (name, condition)
                assert services[dependency].get("restart") == "no", (name, dependency)


def test_no_secret_is_written_in_the_files(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for variable, value in (service.get("environment") or {}).items():
            text = str(value)
            if SECRET_NAME.search(variable):
                assert SUBSTITUTION.fullmatch(text), f"{name}: {variable} is written in the file"
                assert ":?" in text, f"{name}: {variable} must be required (${{{variable}:?}})"
            # a URL with a password takes it from a variable too
            for credentials in re.findall(r"://([^@/\s]+)@", text):
                _, _, password = credentials.partition(":")
                assert not password or SUBSTITUTION.fullmatch(password), (name, variable)
    for path in (COMPOSE, ROOT / "deploy" / "env.example", ROOT / "Dockerfile"):
        assert "BEGIN PRIVATE KEY" not in path.read_text()
    example = (ROOT / "deploy" / "env.example").read_text().splitlines()
    secrets = [line for line in example if "=" in line and SECRET_NAME.search(line.split("=")[0])]
    assert secrets and all(line.endswith("=") for line in secrets), secrets


def _resolved(value: object, secrets: dict[str, str]) -> str:
    def fill(match: re.Match[str]) -> str:
        name, rule = match.group(1), match.group(2) or ""
        if name in secrets:
            return secrets[name]
        assert rule.startswith(":-"), f"${{{name}}} has no default and is not a known secret"
        return rule[2:]

    return SUBSTITUTION.sub(fill, str(value))


def test_project_services_environment_is_real_settings(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    known = _settings_names()
    project = _project_services(compose)
    assert {"dagster-webserver", "dagster-daemon", "spark-worker"} <= set(project)
    secrets = {
        "POSTGRES_PASSWORD": "pw",
        "LAKEHOUSE_PII_KEY": "pii",
        "LAKEHOUSE_MASTER_KEY": "m" * 64,
        "MINIO_ROOT_USER": "user",
        "MINIO_ROOT_PASSWORD": "password",
    }
    for name, service in project.items():
        environment = service.get("environment") or {}
        for variable in environment:
            if variable.startswith(SPARK_CONF_PREFIX):
                continue  # any Spark setting (validated by Settings below)
            if variable.startswith("LAKEHOUSE_"):
                assert variable in known, f"{name}: {variable} is not a setting"
            else:
                assert variable in PASSTHROUGH, f"{name}: {variable} is read by nothing"
        if not environment:  # the Spark master runs no project code
            continue
        env = {k: _resolved(v, secrets) for k, v in environment.items()}
        env["LAKEHOUSE_HOME"] = str(tmp_path / name)  # a writable folder here
        for engine_env in ({}, {"LAKEHOUSE_ENGINE": "spark", "LAKEHOUSE_LAKE_ROOT": "/lake"}):
            settings = Settings.from_env(env | engine_env)
            assert settings.kafka_bootstrap == "kafka:9092"
            assert settings.dagster_postgres_url == "postgresql://dagster:pw@postgres:5432/dagster"
            assert settings.spark_master == "spark://spark-master:7077"
            assert settings.spark_conf == {"spark.executor.memory": "2g"}
        default = Settings.from_env(env)
        assert default.lake_root == "s3://lakehouse/lake" and default.engine == "duckdb"
        assert default.storage_options["AWS_ENDPOINT_URL"] == "http://minio:9000"
