"""The classifier on the held-out set (per language), the lexicon baseline, both encoders, the
aspects and the `lakehouse sentiment classify` command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sentiment_kit import install_models, trained_models
from typer.testing import CliRunner

from lakehouse.config import Settings
from sentiment import aspects, datasets, lexicon
from sentiment.classifier import evaluate_labels, load_head


@pytest.fixture(scope="module")
def models() -> Path:
    return trained_models()


def test_held_out_set_is_balanced_and_disjoint_from_training() -> None:
    training = set(datasets.training_set().texts)
    for lang in ("fr", "en"):
        held_out = datasets.evaluation_set(lang)
        assert len(held_out) >= 150
        assert sorted(set(held_out.labels)) == list(datasets.LABELS)
        assert len({held_out.labels.count(x) for x in datasets.LABELS}) == 1  # balanced
        assert not training & set(held_out.texts)


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_model_meets_the_macro_f1_target_per_language(models: Path, lang: str) -> None:
    head = load_head(models, "static")
    assert head is not None
    held_out = datasets.evaluation_set(lang)
    predicted, confidence = head.predict(held_out.texts, held_out.langs, models)
    result = evaluate_labels("static", lang, held_out.labels, predicted)
    assert result.macro_f1 >= 0.80, result.table()
    assert all(0.33 <= c <= 1.0 for c in confidence)
    baseline, _ = lexicon.classify(held_out.texts, held_out.langs)
    assert evaluate_labels("lexicon", lang, held_out.labels, baseline).macro_f1 >= 0.6


def test_lexicons_handle_negation_intensity_and_emojis() -> None:
    assert lexicon.label_of(lexicon.french_compound("Ce n'est pas terrible")) == "neg"
    assert lexicon.label_of(lexicon.french_compound("Pas déçu du tout, c'est parfait")) == "pos"
    assert lexicon.french_compound("très bon") > lexicon.french_compound("bon") > 0
    assert lexicon.french_compound("Colis reçu 😡") < 0
    assert lexicon.label_of(lexicon.english_compound("Not good at all")) == "neg"


def test_sarcasm_cues_move_the_prediction(models: Path) -> None:
    head = load_head(models, "static")
    assert head is not None
    labels, _ = head.predict(
        ["Génial, encore un colis perdu, merci 🙃", "Génial, colis reçu, merci 😍"],
        ["fr", "fr"],
        models,
    )
    assert labels == ["neg", "pos"]


def test_static_encoder_tracks_the_transformer(models: Path) -> None:
    from sentiment.embedding import encode_transformer, static_model

    texts = ["The parcel arrived late", "Great product, love it", "Le SAV ne répond jamais"]
    full = encode_transformer(texts + texts[:1])  # the duplicate is encoded once
    static = static_model(models).encode(texts)
    assert full.shape == (4, 384) and np.allclose(np.linalg.norm(full, axis=1), 1, atol=1e-4)
    assert np.allclose(full[0], full[3])
    # the distilled vectors live near, not on, the full model's: each static vector is closer
    # to the full embedding of its own text than to the other texts' (fidelity in docs)
    similarity = full[:3] @ static.T
    assert (similarity.argmax(axis=0) == np.arange(3)).all(), similarity


def test_aspects_on_the_labelled_sample(models: Path) -> None:
    for lang in ("fr", "en"):
        held_out = datasets.evaluation_set(lang)
        scores = aspects.evaluate(held_out.texts, held_out.langs, held_out.aspects, models)
        assert scores["accuracy"] >= 0.65, (lang, scores)
    [found] = aspects.extract(["Livraison en retard, très déçu"], ["fr"], models)
    assert found.aspects == ["delivery"] and found.keyphrases


def test_classify_command_reads_lines_and_jsonl(settings: Settings) -> None:
    from lakehouse.cli import app

    install_models(settings.models_dir)
    stdin = 'Livraison en retard, très déçu ! 😡\n{"text": "Great product, love it"}\n\n'
    result = CliRunner().invoke(app, ["sentiment", "classify"], input=stdin)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert [(r["label"], r["lang"]) for r in rows] == [("neg", "fr"), ("pos", "en")]
    assert rows[0]["aspects"] == ["delivery"] and 0 < rows[0]["confidence"] <= 1
    bad = CliRunner().invoke(app, ["sentiment", "classify"], input='{"txt": 1}\n')
    assert bad.exit_code != 0


def test_token_table_comes_from_the_environment_unless_the_home_has_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sentiment import embedding

    prebuilt = tmp_path / "env" / "share" / "lakehouse" / "minilm_static_tokens.npy"
    monkeypatch.setattr(embedding, "PREBUILT_TABLE", prebuilt)
    home_models = tmp_path / "home" / "models"
    own = home_models / "sentiment" / "minilm_static_tokens.npy"
    # neither exists: the first use builds into the home (and says so)
    assert embedding.static_table_path(home_models) == own
    prebuilt.parent.mkdir(parents=True)
    np.save(prebuilt, np.zeros((3, 2), dtype=np.float16))
    assert embedding.static_table_path(home_models) == prebuilt  # `make venv` built it
    own.parent.mkdir(parents=True)
    np.save(own, np.zeros((3, 2), dtype=np.float16))
    assert embedding.static_table_path(home_models) == own
