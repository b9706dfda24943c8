"""Synthetic social posts for `social_raw` at the seed's Annex B rates.

10–50 posts/min (a daily wave), ≈ 20 % negative, emojis and URLs, French and English, five
sources (twitter, reddit, reviews, forum, tiktok), engagement {likes, replies, shares}, our
brand and its competitors, exact reposts and near-duplicates, spam, sarcasm, and an optional
crisis: a burst of negative posts about one aspect of one brand, so that the alert path can
be demonstrated. The event is the seed's shape (post_id, ts, source, lang, text, engagement)
plus `author_type` (social_raw v2): our brand's customer-care account answers some posts that
name it, on the same network, as a post of its own with `author_type` "brand" and
`in_reply_to_post_id` (the first-response time of gold social_response_time); the delay
depends on the network and the post's tone, and is longer during a crisis (the team is
swamped). A reply whose time falls after the window's end is not sent (still unanswered).
The declared `lang` is sometimes wrong or missing, as with real connectors. The ground truth
(label, aspect, brand, spam, duplicate of, sarcasm) never enters the stream: `truth` is
returned separately for evaluation only.

These templates are the generator's own; the classifier is evaluated on a held-out set
written independently of them (sentiment/data/eval_*.tsv).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

BRANDS = ("Lumio", "Vexa", "Nordline")  # ours first, then competitors
OUR_BRAND = BRANDS[0]
SOURCES = ("twitter", "reddit", "reviews", "forum", "tiktok")
SOURCE_WEIGHTS = (0.35, 0.15, 0.25, 0.1, 0.15)
ASPECTS = ("product", "price", "delivery", "customer_service", "other")
ASPECT_WEIGHTS = (0.35, 0.2, 0.2, 0.15, 0.1)
LABEL_WEIGHTS = {"pos": 0.5, "neu": 0.3, "neg": 0.2}  # Annex B: ≈ 20 % negative
# Customer care of our brand: share of its organic posts it answers, by tone, and the median
# first-response delay per network in minutes (log-normal around it, x3 during a crisis).
REPLY_PROBABILITY = {"neg": 0.7, "neu": 0.3, "pos": 0.15}
REPLY_MEDIAN_MINUTES = {
    "twitter": 12.0,
    "tiktok": 25.0,
    "reddit": 45.0,
    "forum": 90.0,
    "reviews": 240.0,
}
REPLY_TEXTS = {
    "fr": (
        "Bonjour, ici le service client {b}. Désolés pour ce souci, envoyez-nous votre numéro "
        "de commande en message privé.",
        "Merci pour votre message ! L'équipe {b} regarde cela tout de suite.",
        "Bonjour, merci pour ce retour, nous transmettons à l'équipe {b} concernée.",
    ),
    "en": (
        "Hi, {b} care here. Sorry about this, please DM us your order number.",
        "Thanks for reaching out! The {b} team is looking into it right now.",
        "Hi, thanks for the feedback, we are passing it on to the {b} team.",
    ),
}

# (lang, label, aspect) -> phrases; {b} is the brand
PHRASES: dict[tuple[str, str, str], tuple[str, ...]] = {
    ("fr", "pos", "product"): (
        "mon nouveau {b} est une pépite",
        "le dernier {b} tient toutes ses promesses",
        "qualité de fabrication excellente chez {b}",
        "je suis trop fan de mon {b}",
    ),
    ("fr", "pos", "price"): (
        "{b} a des prix vraiment doux en ce moment",
        "super promo chez {b}, j'ai fait une affaire",
        "pour le prix, {b} est imbattable",
    ),
    ("fr", "pos", "delivery"): (
        "colis {b} livré en un temps record",
        "livraison {b} rapide et soignée",
        "reçu ma commande {b} avant la date prévue",
    ),
    ("fr", "pos", "customer_service"): (
        "le SAV {b} m'a dépanné en un rien de temps",
        "merci au service client {b}, super réactif",
        "conseillère {b} adorable au téléphone",
    ),
    ("fr", "pos", "other"): (
        "la nouvelle pub {b} est vraiment réussie",
        "j'adore l'ambiance des boutiques {b}",
    ),
    ("fr", "neu", "product"): (
        "quelqu'un a testé le nouveau {b} ?",
        "le {b} existe en quatre coloris",
        "je compare {b} avec d'autres marques",
    ),
    ("fr", "neu", "price"): (
        "le {b} est affiché à 79 euros",
        "les soldes {b} commencent lundi",
    ),
    ("fr", "neu", "delivery"): (
        "ma commande {b} est en préparation",
        "{b} livre-t-il en Belgique ?",
    ),
    ("fr", "neu", "customer_service"): (
        "comment joindre le service client {b} ?",
        "j'ai ouvert un ticket chez {b}",
    ),
    ("fr", "neu", "other"): (
        "{b} ouvre un magasin à Rennes",
        "{b} annonce un partenariat",
    ),
    ("fr", "neg", "product"): (
        "mon {b} est tombé en panne au bout de trois jours",
        "qualité {b} en chute libre, c'est nul",
        "le {b} chauffe et fait un bruit horrible",
    ),
    ("fr", "neg", "price"): (
        "{b} augmente encore ses prix, c'est abusé",
        "beaucoup trop cher pour du {b}",
    ),
    ("fr", "neg", "delivery"): (
        "colis {b} toujours pas livré, très déçu",
        "livraison {b} en retard de dix jours",
        "{b} a perdu mon colis, inadmissible",
    ),
    ("fr", "neg", "customer_service"): (
        "service client {b} injoignable, honteux",
        "le SAV {b} ne répond jamais",
    ),
    ("fr", "neg", "other"): (
        "site {b} en panne encore une fois",
        "plus jamais chez {b}",
    ),
    ("en", "pos", "product"): (
        "my new {b} is a gem",
        "the latest {b} really delivers",
        "{b} build quality is excellent",
    ),
    ("en", "pos", "price"): (
        "{b} has great deals right now",
        "got an amazing bargain at {b}",
    ),
    ("en", "pos", "delivery"): (
        "{b} parcel arrived in record time",
        "super fast {b} shipping",
    ),
    ("en", "pos", "customer_service"): (
        "{b} support sorted me out in minutes",
        "shoutout to {b} customer care, so helpful",
    ),
    ("en", "pos", "other"): ("love the new {b} ad",),
    ("en", "neu", "product"): (
        "anyone tried the new {b}?",
        "the {b} comes in four colours",
    ),
    ("en", "neu", "price"): ("the {b} is listed at 79 dollars",),
    ("en", "neu", "delivery"): ("my {b} order is being prepared",),
    ("en", "neu", "customer_service"): ("how do I reach {b} support?",),
    ("en", "neu", "other"): ("{b} is opening a store in Leeds",),
    ("en", "neg", "product"): (
        "my {b} died after three days",
        "{b} quality has gone downhill, awful",
    ),
    ("en", "neg", "price"): ("{b} raised prices again, ridiculous",),
    ("en", "neg", "delivery"): (
        "{b} parcel still not here, so disappointed",
        "{b} delivery ten days late",
        "{b} lost my package, unacceptable",
    ),
    ("en", "neg", "customer_service"): (
        "{b} customer service is unreachable, shameful",
        "{b} support never answers",
    ),
    ("en", "neg", "other"): ("{b} website down again",),
}
SARCASM = {
    "fr": (
        "génial, encore un {b} en panne, merci beaucoup 🙃",
        "bravo {b}, trois semaines pour un colis 🙄",
    ),
    "en": (
        "oh great, another broken {b}, thanks so much 🙃",
        "well done {b}, three weeks for a parcel 🙄",
    ),
}
SPAM = (
    "GAGNEZ un iPhone gratuit!!! cliquez ici http://promo-{n}.example.com #concours",
    "Free followers fast!!! visit http://followers-{n}.example.net now",
    "Code promo -90% sur tout {b} http://bit.ly/deal{n} http://bit.ly/deal{n}x",
)
EMOJIS = {
    "pos": ("😍", "👍", "🔥", "😊", "🚀"),
    "neu": ("🤔", "📦", ""),
    "neg": ("😡", "😤", "👎", "😞"),
}
# Decorations keep each label's meaning: "for the 4th time" or "Welp," only on negative posts.
CLOSERS = {
    ("fr", "pos"): ("", "", " !", " !!"),
    ("fr", "neu"): ("", "", "."),
    ("fr", "neg"): ("", "", " !", " !!", "..."),
    ("en", "pos"): ("", "", "!", "!!"),
    ("en", "neu"): ("", "", "."),
    ("en", "neg"): ("", "", "!", "!!", "..."),
}
CLAUSES = {
    ("fr", "pos"): (
        ", je valide",
        ", bravo l'équipe",
        ", rien à redire",
        ", je reprendrai",
        ", ma sœur aussi est ravie",
        ", top",
        ", contente de mon choix",
        ", je note 5/5",
    ),
    ("fr", "neu"): (
        ", à suivre",
        ", je vous tiens au courant",
        ", des avis ?",
        ", on verra bien",
        ", c'est pour offrir",
        ", je regarde encore",
    ),
    ("fr", "neg"): (
        ", remboursez-moi",
        ", c'est la dernière fois",
        ", je vais porter réclamation",
        ", j'en ai marre",
        ", zéro étoile",
        ", je fais opposition",
        ", honteux",
    ),
    ("en", "pos"): (
        ", 10/10",
        ", would buy again",
        ", kudos to the team",
        ", my sister loves it too",
        ", no complaints",
        ", happy customer",
    ),
    ("en", "neu"): (
        ", will update",
        ", any thoughts?",
        ", it's a gift",
        ", still comparing",
        ", we'll see",
    ),
    ("en", "neg"): (
        ", I want a refund",
        ", never again",
        ", filing a complaint",
        ", zero stars",
        ", fed up",
        ", disgraceful",
    ),
}
MODELS = ("", "", " X2", " Air", " Pro", " Mini", " 5")
OPENERS = {
    ("fr", "pos"): ("", "", "", "Franchement ", "Petit retour : ", "Update : "),
    ("fr", "neu"): ("", "", "", "Question : ", "Info : ", "Bon, "),
    ("fr", "neg"): ("", "", "", "Franchement ", "Sérieusement, ", "Bref, "),
    ("en", "pos"): ("", "", "", "Honestly ", "Quick review: ", "Update: "),
    ("en", "neu"): ("", "", "", "Question: ", "FYI ", "So "),
    ("en", "neg"): ("", "", "", "Honestly ", "Seriously, ", "Welp, "),
}
DETAILS = {
    ("fr", "pos"): ("", "", "", " (commande {n})", " ce matin", " hier soir"),
    ("fr", "neu"): ("", "", "", " (commande {n})", " ce matin", " hier soir"),
    ("fr", "neg"): ("", "", " (commande {n})", " depuis {d} jours", " pour la {d}e fois"),
    ("en", "pos"): ("", "", "", " (order {n})", " this morning", " last night"),
    ("en", "neu"): ("", "", "", " (order {n})", " this morning", " last night"),
    ("en", "neg"): ("", "", " (order {n})", " for {d} days now", " for the {d}th time"),
}


@dataclass(frozen=True)
class Crisis:
    """A burst of negative posts about `aspect` of `brand` from `start` for `minutes`."""

    start: datetime
    minutes: float = 30.0
    aspect: str = "delivery"
    brand: str = OUR_BRAND
    extra_per_minute: float = 40.0


@dataclass
class SocialStream:
    events: list[dict[str, object]] = field(default_factory=list)
    truth: list[dict[str, object]] = field(default_factory=list)

    def messages(self, topic: str = "social_raw") -> list[tuple[bytes, bytes]]:
        return [
            (str(e["post_id"]).encode(), json.dumps(e, ensure_ascii=False).encode())
            for e in self.events
        ]

    def event_seconds(self, topic: str = "social_raw") -> np.ndarray:
        return np.asarray([float(t["epoch_s"]) for t in self.truth], dtype=np.float64)


def per_minute_rate(minutes_of_day: np.ndarray) -> np.ndarray:
    """10–50 posts/min: low at night, peak in the evening."""
    phase = (minutes_of_day - 20 * 60) / (24 * 60) * 2 * np.pi
    return 30.0 + 20.0 * np.cos(phase)


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def generate_social(
    start: datetime,
    end: datetime,
    seed: int = 42,
    scale: float = 1.0,
    crisis: Crisis | None = None,
) -> SocialStream:
    """Posts in [start, end), in event-time order."""
    rng = np.random.default_rng(seed)
    begin = start.timestamp()
    minutes = int(np.ceil((end.timestamp() - begin) / 60))
    minute_starts = begin + 60.0 * np.arange(minutes)
    minute_of_day = (minute_starts // 60) % (24 * 60)
    counts = rng.poisson(per_minute_rate(minute_of_day) * scale)
    times = np.concatenate(
        [m + np.sort(rng.uniform(0, 60, n)) for m, n in zip(minute_starts, counts, strict=True)]
        or [np.zeros(0)]
    )
    crisis_mask = np.zeros(len(times), dtype=bool)
    if crisis is not None:
        c0 = crisis.start.timestamp()
        n_crisis = rng.poisson(crisis.extra_per_minute * crisis.minutes * scale)
        extra = np.sort(rng.uniform(c0, c0 + crisis.minutes * 60, n_crisis))
        times = np.concatenate([times, extra])
        crisis_mask = np.concatenate([crisis_mask, np.ones(n_crisis, dtype=bool)])
        order = np.argsort(times, kind="stable")
        times, crisis_mask = times[order], crisis_mask[order]
    keep = times < end.timestamp()
    times, crisis_mask = times[keep], crisis_mask[keep]
    stream = SocialStream()
    seen: list[int] = []  # indices of organic posts that can be reposted
    for i, (moment, in_crisis) in enumerate(zip(times.tolist(), crisis_mask.tolist(), strict=True)):
        post_id = f"p_{seed}_{int(moment * 1000)}_{i}"
        event, truth = _post(rng, post_id, moment, bool(in_crisis), crisis, stream, seen)
        stream.events.append(event)
        stream.truth.append(truth)
        if truth["kind"] == "organic":
            seen.append(i)
    # Replies come from their own generator: the customers' posts stay those of the seed.
    return _with_brand_replies(stream, np.random.default_rng([seed, 1]), end.timestamp())


def _with_brand_replies(stream: SocialStream, rng: np.random.Generator, end: float) -> SocialStream:
    """`stream` with our customer care's first replies merged in event-time order."""
    replies: list[tuple[dict[str, object], dict[str, object]]] = []
    for event, truth in zip(stream.events, stream.truth, strict=True):
        if truth["kind"] != "organic" or truth["brand"] != OUR_BRAND:
            continue
        label = str(truth["label"])
        if rng.random() >= REPLY_PROBABILITY[label]:
            continue
        median = REPLY_MEDIAN_MINUTES[str(event["source"])] * (3.0 if truth["crisis"] else 1.0)
        moment = float(truth["epoch_s"]) + 60.0 * float(rng.lognormal(np.log(median), 0.6))
        if moment >= end:
            continue
        lang = str(truth["lang"])
        text = str(rng.choice(REPLY_TEXTS[lang])).format(b=OUR_BRAND)
        reply_id = f"r_{event['post_id']}"
        replies.append(
            (
                {
                    "post_id": reply_id,
                    "ts": _iso(moment),
                    "source": event["source"],
                    "lang": lang,
                    "text": text,
                    "engagement": {"likes": int(rng.poisson(1.0)), "replies": 0, "shares": 0},
                    "author_type": "brand",
                    "in_reply_to_post_id": event["post_id"],
                },
                {
                    "post_id": reply_id,
                    "epoch_s": moment,
                    "lang": lang,
                    "label": "neu",
                    "aspect": "customer_service",
                    "brand": OUR_BRAND,
                    "kind": "brand_reply",
                    "crisis": False,
                    "reply_to": event["post_id"],
                },
            )
        )
    if not replies:
        return stream
    merged = list(zip(stream.events, stream.truth, strict=True)) + replies
    merged.sort(key=lambda pair: float(pair[1]["epoch_s"]))  # stable: posts keep their order
    return SocialStream([e for e, _ in merged], [t for _, t in merged])


def _engagement(rng: np.random.Generator, source: str, label: str) -> dict[str, int]:
    boost = 2.0 if label == "neg" else 1.0  # complaints travel further
    base = {"twitter": 8, "reddit": 12, "reviews": 2, "forum": 3, "tiktok": 40}[source]
    likes = int(rng.lognormal(np.log(base * boost), 1.0))
    return {
        "likes": likes,
        "replies": int(rng.poisson(0.1 * likes + 0.2)),
        "shares": int(rng.poisson(0.05 * likes)),
    }


def _post(
    rng: np.random.Generator,
    post_id: str,
    moment: float,
    in_crisis: bool,
    crisis: Crisis | None,
    stream: SocialStream,
    seen: list[int],
) -> tuple[dict[str, object], dict[str, object]]:
    source = str(rng.choice(SOURCES, p=SOURCE_WEIGHTS))
    roll = rng.random()
    if seen and not in_crisis and roll < 0.08:  # repost: exact (4 %) or near duplicate (4 %)
        original = seen[int(rng.integers(max(0, len(seen) - 200), len(seen)))]
        orig_event, orig_truth = stream.events[original], stream.truth[original]
        text = str(orig_event["text"])
        kind = "exact_duplicate"
        if roll >= 0.04:
            kind = "near_duplicate"
            text = (
                ("RT " if rng.random() < 0.5 else "")
                + text.rstrip("!. ")
                + str(rng.choice(["", " !!", " 💯", " +1"]))
            )
        lang, label, aspect, brand = (orig_truth[k] for k in ("lang", "label", "aspect", "brand"))
        truth_extra: dict[str, object] = {"duplicate_of": orig_event["post_id"]}
    elif not in_crisis and roll < 0.11:  # spam (3 %)
        brand = str(rng.choice(BRANDS))
        which = int(rng.integers(len(SPAM)))
        lang = "en" if which == 1 else "fr"
        text = SPAM[which].format(n=int(rng.integers(1000)), b=brand)
        label, aspect, kind, truth_extra = "neu", "other", "spam", {}
    else:
        lang = "fr" if rng.random() < 0.55 else "en"
        if in_crisis and crisis is not None:
            label, aspect, brand = "neg", crisis.aspect, crisis.brand
        else:
            label = str(rng.choice(list(LABEL_WEIGHTS), p=list(LABEL_WEIGHTS.values())))
            aspect = str(rng.choice(ASPECTS, p=ASPECT_WEIGHTS))
            brand = str(rng.choice(BRANDS, p=(0.6, 0.25, 0.15)))
        sarcastic = label == "neg" and rng.random() < 0.15
        if sarcastic:
            text = str(rng.choice(SARCASM[lang])).format(b=brand)
        else:
            named = brand + str(rng.choice(MODELS)) if aspect == "product" else brand
            text = str(rng.choice(PHRASES[(lang, label, aspect)])).format(b=named)
            detail = str(rng.choice(DETAILS[lang, label])).format(
                n=int(rng.integers(10_000, 99_999)), d=int(rng.integers(2, 9))
            )
            if rng.random() < 0.5 and not text.endswith("?"):
                text += str(rng.choice(CLAUSES[lang, label]))
            text = str(rng.choice(OPENERS[lang, label])) + text + detail
            if text.endswith("?"):
                text = text[0].upper() + text[1:]
            else:
                text = text[0].upper() + text[1:] + str(rng.choice(CLOSERS[lang, label]))
            emoji = str(rng.choice(EMOJIS[label]))
            if emoji and rng.random() < 0.5:
                text += " " + emoji
        if rng.random() < 0.15:
            text += f" https://lnk.example/{int(rng.integers(1 << 20)):x}"
        if rng.random() < 0.1:
            text = f"@{brand}_help " + text
        if rng.random() < 0.1:
            text += f" #{brand.lower()}"
        kind, truth_extra = "organic", {"sarcasm": sarcastic}
    declared: str | None = lang
    lie = rng.random()
    if lie < 0.05:
        declared = "en" if lang == "fr" else "fr"  # connectors mislabel
    elif lie < 0.1:
        declared = None
    event = {
        "post_id": post_id,
        "ts": _iso(moment),
        "source": source,
        "lang": declared,
        "text": text,
        "engagement": _engagement(rng, source, str(label)),
        "author_type": "customer",
    }
    truth = {
        "post_id": post_id,
        "epoch_s": moment,
        "lang": lang,
        "label": label,
        "aspect": aspect,
        "brand": brand,
        "kind": kind,
        "crisis": in_crisis,
        **truth_extra,
    }
    return event, truth


def timed(
    stream: SocialStream, topic: str = "social_raw"
) -> Iterator[tuple[float, tuple[str, bytes, bytes]]]:
    for seconds, (key, value) in zip(stream.event_seconds(), stream.messages(topic), strict=True):
        yield float(seconds), (topic, key, value)


def window(minutes: float, start: datetime | None = None) -> tuple[datetime, datetime]:
    begin = (start or datetime.now(UTC)).replace(microsecond=0)
    return begin, begin + timedelta(minutes=minutes)


def produce_social(
    bootstrap: str,
    minutes: float,
    speed: float | None,
    seed: int,
    scale: float,
    end: datetime | None = None,
) -> dict[str, int]:
    """`lakehouse generate social`: live (`speed` given: paced from now) or history (`speed`
    None: the `minutes` ending at `end`/now, sent as fast as possible)."""
    from ingestion import kafka_client
    from ingestion.generators.live import paced

    if speed is None:
        stop = (end or datetime.now(UTC)).replace(microsecond=0)
        stream = generate_social(stop - timedelta(minutes=minutes), stop, seed, scale)
        return {"social_raw": kafka_client.produce(bootstrap, "social_raw", stream.messages())}
    start, stop = window(minutes)
    stream = generate_social(start, stop, seed, scale)
    return kafka_client.produce_records(bootstrap, paced(timed(stream), start, speed))
