"""Pre-processing steps, each a pure function: cleaning, cues, dedup, language, spam, brands."""

from __future__ import annotations

import numpy as np

from sentiment import preprocess
from sentiment.text import clean_tokens, cues, dedup_key, model_text, squeeze_repeats


def test_cleaning_keeps_sentiment_signals_and_drops_noise() -> None:
    text = (
        "Livraison en RETARD, trooop déçu !!!! 😡 https://t.co/x @SAV_Lumio #fail Ce n'est pas top"
    )
    tokens = clean_tokens(text, "fr")
    assert tokens[:2] == ["livraison", "retard"]
    assert "troop" in tokens and "trooop" not in tokens  # repeated letters squeezed
    assert "emoji_angry" in tokens and "url" in tokens and "@user" in tokens
    assert "fail" in tokens and "#fail" not in tokens  # hashtag kept as its word
    assert "pas" in tokens  # negation kept although a French function word
    assert not {"en", "ce", "est"} & set(tokens)  # stopwords out


def test_english_stopwords_and_contractions() -> None:
    assert clean_tokens("I don't like the new app", "en") == ["don't", "like", "new", "app"]


def test_model_text_turns_emojis_into_words_for_the_encoder() -> None:
    assert model_text("Super 😍 http://a.b/c @bob") == "Super love it link @user"
    assert squeeze_repeats("Nooooon !!!!!") == "Noon !!!"


def test_cues_count_sarcasm_markers() -> None:
    found = cues("Génial, encore un colis perdu... bravo 🙃🙄 !!!")
    assert found.sarcasm_emojis == 2 and found.ellipsis == 1 and found.exclamations == 3
    assert cues("LIVRAISON EN RETARD").caps_ratio == 1.0


def test_dedup_key_ignores_urls_mentions_case_accents_and_rt() -> None:
    a = dedup_key("Livraison très RAPIDE ! https://x.y/1 @Lumio 😍")
    b = dedup_key("RT livraison tres rapide https://x.y/2")
    assert a == b == "livraison tres rapide"


def test_exact_and_near_duplicates_first_occurrence_wins() -> None:
    texts = [
        "Colis Lumio livré en un temps record, merci",
        "RT Colis Lumio livré en un temps record, merci !! https://t.co/1",  # exact after normalising
        "Colis Lumio livré en un temps record, merci beaucoup +1",  # near
        "Le SAV Lumio ne répond jamais",
    ]
    ids = ["a", "b", "c", "d"]
    hashes = preprocess.exact_hashes(texts)
    sigs = preprocess.minhash_signatures(texts)
    duplicate_of, kind = preprocess.find_duplicates(ids, hashes, sigs)
    assert duplicate_of == [None, "a", "a", None]
    assert kind == [None, "exact", "near", None]
    # across batches: the history of already-seen posts
    seen = preprocess.SeenPosts(ids[:1], hashes[:1], sigs[:1])
    again, _ = preprocess.find_duplicates(["e"], hashes[1:2], sigs[1:2], seen)
    assert again == ["a"]


def test_minhash_estimates_jaccard() -> None:
    sigs = preprocess.minhash_signatures(
        ["the parcel arrived late again", "totally unrelated words"]
    )
    assert float(np.mean(sigs[0] == sigs[1])) < 0.2


def test_language_is_detected_not_trusted() -> None:
    langs = preprocess.detect_languages(
        [
            "Le colis Nordline est arrivé en retard",
            "The Nordline parcel arrived late",
            "@x http://a.b",
        ],
        ignore=("Nordline",),
    )
    assert langs[:2] == ["fr", "en"]
    assert langs[2] == "und"


def test_spam_rules_and_model() -> None:
    texts = [
        "GAGNEZ un iPhone gratuit!!! cliquez ici http://promo.example #concours",
        "Free followers fast!!! visit http://f.example now http://f2.example",
        "Livraison gratuite dès 50 euros, pratique",
        "The support team fixed my issue quickly",
    ]
    proba, rules = preprocess.spam_scores(texts)
    assert preprocess.is_spam(proba, rules).tolist() == [True, True, False, False]


def test_brands_are_matched_as_words() -> None:
    assert preprocess.brands_in(
        ["J'adore LUMIO", "vexa is late", "Nordliner", "rien"], ("Lumio", "Vexa", "Nordline")
    ) == ["Lumio", "Vexa", "unknown", "unknown"]
