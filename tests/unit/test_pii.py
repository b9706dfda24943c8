"""PII classification: every contract field classified, one reader, silver derived from it."""

from __future__ import annotations

import json
from importlib import resources

import duckdb
import pyarrow as pa
import pytest
from testkit import SEED_TRANSACTION

from fraud.store import to_silver
from fraud.training import silver_from_events
from governance import pii
from lakehouse.errors import ConfigError


def _all_fields(schema: dict, prefix: str = "") -> list[str]:
    out = []
    for name, sub in schema.get("properties", {}).items():
        out.append(prefix + name)
        out.extend(_all_fields(sub, prefix + name + "."))
        if isinstance(sub.get("items"), dict):
            out.extend(_all_fields(sub["items"], prefix + name + "[]."))
    return out


def test_every_field_of_every_contract_is_classified() -> None:
    folder = resources.files("ingestion").joinpath("schemas")
    classified = {(f.topic, f.path) for f in pii.classification()}
    expected = set()
    for path in folder.iterdir():
        if path.name.endswith(".json"):
            topic = path.name.split(".v")[0]
            expected |= {(topic, p) for p in _all_fields(json.loads(path.read_text()))}
    assert classified == expected
    assert len(expected) > 100


def test_direct_identifiers_and_their_subjects() -> None:
    direct = {(f.topic, f.path): f.subject for f in pii.personal_fields(level="direct")}
    assert direct == {
        ("orders", "customer_id"): "customer_id",
        ("sessions", "customer_id"): "customer_id",
        ("transactions", "account_id"): "account_id",
        ("transactions", "card_hash"): "card",
    }
    assert pii.subject_name("card_hash") == "card"
    with pytest.raises(ConfigError, match="unknown subject 'email'"):
        pii.subject_name("email")


def test_online_row_equals_silver_sql_for_every_treated_field() -> None:
    key = "k"
    online = to_silver(SEED_TRANSACTION, key)
    import polars as pl

    events = pl.DataFrame([SEED_TRANSACTION]).with_columns(
        pl.col("timestamp").str.to_datetime(time_zone="UTC")
    )
    batch = silver_from_events(events, key).to_dicts()[0]
    for name in ("account_hash", "card_hash", "device_id", "ip_hash", "lat", "lon"):
        assert online[name] == batch[name], name
    assert online["device_id"] == pii.pseudonym("dvc_771", key)
    assert online["lat"] == pii.grid(48.85) and online["lon"] == pii.grid(2.35)
    assert "account_id" not in online and "ip" not in online


def test_grid_is_the_same_in_sql_and_python() -> None:
    values = [48.8566, 2.3522, -33.8688, 151.2093, 0.0, -0.004, 89.999]
    sql = duckdb.sql(
        f"SELECT {pii.grid_sql('v')} AS g FROM (SELECT unnest(?::DOUBLE[]) AS v)", params=[values]
    ).fetchall()
    assert [row[0] for row in sql] == [pii.grid(v) for v in values]
    assert pii.grid(48.8566) == 48.85


def test_free_text_contacts_are_redacted() -> None:
    texts = pa.array(
        [
            "écrivez à jean.dupont@mail.example ou au +33 6 12 34 56 78",
            "appelez le 06.12.34.56.78 svp",
            "prix 19.90 en 2025, 1000 likes, hash a31234567890bcdef",
        ]
    )
    out = pii.redact_contacts(texts).to_pylist()
    assert out[0] == "écrivez à [email] ou au [phone]"
    assert out[1] == "appelez le [phone] svp"
    assert out[2] == texts[2].as_py()
    assert [pii.contact_values(t) for t in out] == [[], [], []]


def test_lineage_schema_carries_the_classification() -> None:
    from lake.tables import SILVER_TRANSACTIONS_SCHEMA
    from lakehouse.lineage import schema_facet

    fields = {f.name: f.description for f in schema_facet(SILVER_TRANSACTIONS_SCHEMA).fields}
    assert fields["lat"] == "quasi PII (grid in silver, subject account_id)"
    assert fields["account_hash"] == "direct PII (hash in silver, subject account_id)"
    assert fields["amount"] is None


def test_readme_tables_are_generated_from_the_contracts_and_the_policy() -> None:
    # the README's classification and access-policy tables are what the contracts and
    # governance/policy.yaml say (`lakehouse privacy docs` regenerates them)
    from pathlib import Path

    from governance.pii import classification_markdown
    from governance.policy import policy_markdown, render_doc_blocks

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text("utf-8")
    assert classification_markdown() in readme and policy_markdown() in readme
    assert render_doc_blocks(readme) == readme
    assert "| data_engineer |" in policy_markdown() and "dagster_ui" in policy_markdown()
