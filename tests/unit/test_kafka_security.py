"""External Kafka security settings → the kafka-python options every client gets."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingestion.kafka_client import _security, security_options
from lakehouse.config import Settings
from lakehouse.errors import ConfigError

BROKER = {"LAKEHOUSE_HOME": "/tmp/x", "LAKEHOUSE_KAFKA_BOOTSTRAP": "kafka-1:9093,kafka-2:9093"}


def _pem(tmp_path: Path, name: str) -> str:
    path = tmp_path / name
    path.write_text("-----BEGIN CERTIFICATE-----\n")
    return str(path)


def test_plaintext_is_the_default_and_adds_nothing() -> None:
    assert security_options(Settings.from_env(BROKER)) == {}
    assert security_options(Settings.from_env({"LAKEHOUSE_HOME": "/tmp/x"})) == {}


def test_sasl_ssl_with_scram(tmp_path: Path) -> None:
    settings = Settings.from_env(
        BROKER
        | {
            "LAKEHOUSE_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
            "LAKEHOUSE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "LAKEHOUSE_KAFKA_SASL_USERNAME": "lakehouse",
            "LAKEHOUSE_KAFKA_SASL_PASSWORD": "s3cret",
            "LAKEHOUSE_KAFKA_SSL_CAFILE": _pem(tmp_path, "ca.pem"),
        }
    )
    assert security_options(settings) == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "lakehouse",
        "sasl_plain_password": "s3cret",
        "ssl_check_hostname": True,
        "ssl_cafile": str(tmp_path / "ca.pem"),
    }
    assert "s3cret" not in repr(settings)  # a secret is never printed


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256"])
def test_sasl_plaintext(mechanism: str) -> None:
    settings = Settings.from_env(
        BROKER
        | {
            "LAKEHOUSE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "LAKEHOUSE_KAFKA_SASL_MECHANISM": mechanism,
            "LAKEHOUSE_KAFKA_SASL_USERNAME": "u",
            "LAKEHOUSE_KAFKA_SASL_PASSWORD": "p",
        }
    )
    options = security_options(settings)
    assert options["security_protocol"] == "SASL_PLAINTEXT"
    assert options["sasl_mechanism"] == mechanism
    assert not [k for k in options if k.startswith("ssl_")]  # no TLS on a plaintext listener


def test_mutual_tls(tmp_path: Path) -> None:
    settings = Settings.from_env(
        BROKER
        | {
            "LAKEHOUSE_KAFKA_SECURITY_PROTOCOL": "SSL",
            "LAKEHOUSE_KAFKA_SSL_CAFILE": _pem(tmp_path, "ca.pem"),
            "LAKEHOUSE_KAFKA_SSL_CERTFILE": _pem(tmp_path, "client.pem"),
            "LAKEHOUSE_KAFKA_SSL_KEYFILE": _pem(tmp_path, "client.key"),
            "LAKEHOUSE_KAFKA_SSL_PASSWORD": "key-pass",
            "LAKEHOUSE_KAFKA_SSL_CHECK_HOSTNAME": "off",
        }
    )
    assert security_options(settings) == {
        "security_protocol": "SSL",
        "ssl_check_hostname": False,
        "ssl_cafile": str(tmp_path / "ca.pem"),
        "ssl_certfile": str(tmp_path / "client.pem"),
        "ssl_keyfile": str(tmp_path / "client.key"),
        "ssl_password": "key-pass",
    }
    assert "key-pass" not in repr(settings)


def test_only_the_configured_external_broker_gets_the_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every client factory asks `_security(bootstrap)`: the settings' broker gets TLS/SASL,
    another address (the embedded broker, a test's own) stays plaintext."""
    env = BROKER | {
        "LAKEHOUSE_KAFKA_SECURITY_PROTOCOL": "SSL",
        "LAKEHOUSE_KAFKA_SSL_CAFILE": _pem(tmp_path, "ca.pem"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert _security("kafka-1:9093,kafka-2:9093")["security_protocol"] == "SSL"
    assert _security("127.0.0.1:19092") == {}


@pytest.mark.parametrize(
    ("changes", "fix"),
    [
        ({"LAKEHOUSE_KAFKA_SECURITY_PROTOCOL": "TLS"}, "use one of PLAINTEXT, SSL"),
        ({"LAKEHOUSE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "needs LAKEHOUSE_KAFKA_SASL_MECHANISM"),
        (
            {
                "LAKEHOUSE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "LAKEHOUSE_KAFKA_SASL_MECHANISM": "PLAIN",
            },
            "needs LAKEHOUSE_KAFKA_SASL_USERNAME and LAKEHOUSE_KAFKA_SASL_PASSWORD",
        ),
        ({"LAKEHOUSE_KAFKA_SASL_MECHANISM": "GSSAPI"}, "use one of PLAIN, SCRAM-SHA-256"),
        ({"LAKEHOUSE_KAFKA_SASL_MECHANISM": "PLAIN"}, "needs LAKEHOUSE_KAFKA_SECURITY_PROTOCOL"),
        ({"LAKEHOUSE_KAFKA_SSL_CAFILE": "/nonexistent/ca.pem"}, "readable PEM file"),
        ({"LAKEHOUSE_KAFKA_SSL_CHECK_HOSTNAME": "maybe"}, "use on or off"),
    ],
)
def test_bad_security_settings_name_the_fix(changes: dict[str, str], fix: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(BROKER | changes)
    assert "\n" not in str(info.value) and fix in str(info.value)


def test_security_needs_an_external_broker() -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"LAKEHOUSE_HOME": "/tmp/x", "LAKEHOUSE_KAFKA_SECURITY_PROTOCOL": "SSL"})
    assert "LAKEHOUSE_KAFKA_BOOTSTRAP" in str(info.value)


def test_a_client_certificate_needs_its_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(
            BROKER
            | {
                "LAKEHOUSE_KAFKA_SECURITY_PROTOCOL": "SSL",
                "LAKEHOUSE_KAFKA_SSL_CERTFILE": _pem(tmp_path, "client.pem"),
            }
        )
    assert "set both or neither" in str(info.value)
