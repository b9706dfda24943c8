"""Text pre-processing: pure functions over strings (one post) or lists of strings (a batch).

Cleaning keeps what carries sentiment: emojis become descriptive tokens (`emoji_angry`), URLs
a `url` token, mentions `@user`, hashtags their word; repeated letters are shortened
("trooop" → "troop") and counted as an emphasis cue; stopwords are removed per language but
negations are kept ("pas", "not": they flip polarity). Two renderings exist: `model_text`
(emojis as plain words, for the English-trained sentence encoder, which has no emoji tokens)
and `clean_tokens` (for word counts, wordclouds and the lexicons).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import cache
from importlib import resources

URL_RE = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
MENTION_RE = re.compile(r"(?<!\w)@\w+")
HASHTAG_RE = re.compile(r"(?<!\w)#(\w+)")
REPEAT_RE = re.compile(r"(\w)\1{2,}")
PUNCT_REPEAT_RE = re.compile(r"([!?.])\1{2,}")
WORD_RE = re.compile(r"emoji_[a-z_]+|@user|[a-zà-öø-ÿœæ]+(?:['’][a-zà-öø-ÿœæ]+)?", re.UNICODE)

# Emojis that matter for sentiment → (token, words for the sentence encoder, polarity).
# Polarity: +1 positive, -1 negative, 0 neutral; "sarcasm" ones are ironic markers (🙃 🙄 😒).
EMOJIS: dict[str, tuple[str, str, int]] = {
    "😀": ("emoji_grin", "happy", 1),
    "😃": ("emoji_grin", "happy", 1),
    "😄": ("emoji_grin", "happy", 1),
    "😁": ("emoji_grin", "happy", 1),
    "😊": ("emoji_smile", "happy", 1),
    "🙂": ("emoji_smile", "pleased", 1),
    "😍": ("emoji_love", "love it", 1),
    "🥰": ("emoji_love", "love it", 1),
    "❤": ("emoji_heart", "love", 1),
    "❤️": ("emoji_heart", "love", 1),
    "💯": ("emoji_hundred", "perfect", 1),
    "👍": ("emoji_thumbs_up", "good", 1),
    "👌": ("emoji_ok", "great", 1),
    "👏": ("emoji_clap", "well done", 1),
    "🎉": ("emoji_party", "celebration", 1),
    "🚀": ("emoji_rocket", "fast great", 1),
    "🔥": ("emoji_fire", "awesome", 1),
    "😂": ("emoji_laugh", "funny", 0),
    "🤣": ("emoji_laugh", "funny", 0),
    "☕": ("emoji_coffee", "coffee", 0),
    "🎁": ("emoji_gift", "gift", 0),
    "📦": ("emoji_package", "package", 0),
    "🤔": ("emoji_thinking", "wondering", 0),
    "😡": ("emoji_angry", "angry", -1),
    "😠": ("emoji_angry", "angry", -1),
    "🤬": ("emoji_angry", "furious", -1),
    "😤": ("emoji_angry", "annoyed", -1),
    "😞": ("emoji_sad", "disappointed", -1),
    "😢": ("emoji_sad", "sad", -1),
    "😭": ("emoji_sad", "crying sad", -1),
    "☹": ("emoji_sad", "sad", -1),
    "☹️": ("emoji_sad", "sad", -1),
    "👎": ("emoji_thumbs_down", "bad", -1),
    "💩": ("emoji_poop", "crap", -1),
    "🤮": ("emoji_vomit", "disgusting", -1),
    "🙃": ("emoji_upside_down", "ironic", -2),
    "🙄": ("emoji_eye_roll", "annoyed sarcastic", -2),
    "😒": ("emoji_unamused", "unamused", -2),
}
SARCASM = -2
_EMOJI_RE = re.compile(
    "|".join(re.escape(e) for e in sorted(EMOJIS, key=len, reverse=True))
    + r"|[\U0001F300-\U0001FAFF\u2600-\u27BF]\uFE0F?"
)
NEGATIONS = frozenset(
    {"ne", "n", "pas", "jamais", "aucun", "aucune", "rien", "sans", "ni", "plus", "personne"}
    | {"not", "no", "never", "nothing", "nobody", "without", "nor", "don't", "doesn't"}
    | {"isn't", "wasn't", "won't", "can't", "didn't", "aren't", "couldn't", "cannot"}
)


def strip_accents(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


@cache
def stopwords(lang: str) -> frozenset[str]:
    """Per-language stopwords (sentiment-safe: negations are never stopwords)."""
    name = {"fr": "stopwords_fr.txt", "en": "stopwords_en.txt"}.get(lang)
    if name is None:
        return frozenset()
    text = resources.files("sentiment").joinpath("data", name).read_text("utf-8")
    words = {w.strip() for w in text.splitlines() if w.strip() and not w.startswith("#")}
    return frozenset(words - NEGATIONS)


def emoji_tokens(text: str) -> list[str]:
    """The emojis of a post as descriptive tokens, in order (unknown emojis → `emoji_other`)."""
    return [EMOJIS.get(m, ("emoji_other",))[0] for m in _EMOJI_RE.findall(text)]


def squeeze_repeats(text: str) -> str:
    """Light spelling normalisation: 3+ repeated letters → 2 ("trooop" → "troop"),
    "!!!!" → "!!!"."""
    return PUNCT_REPEAT_RE.sub(r"\1\1\1", REPEAT_RE.sub(r"\1\1", text))


def model_text(text: str) -> str:
    """What the sentence encoder reads: URLs and mentions as neutral words, hashtags as words,
    emojis replaced by words (the encoder's vocabulary has no emojis), repeats squeezed."""
    text = URL_RE.sub(" link ", text)
    text = MENTION_RE.sub(" @user ", text)
    text = HASHTAG_RE.sub(r"\1", text)
    text = _EMOJI_RE.sub(lambda m: f" {EMOJIS.get(m.group(0), ('', ''))[1]} ", text)
    return " ".join(squeeze_repeats(text).split())


def clean_tokens(text: str, lang: str) -> list[str]:
    """Lower-cased word tokens: url / @user / emoji_* tokens, hashtags as words, stopwords
    of `lang` removed (negations kept), repeated letters squeezed."""
    text = URL_RE.sub(" url ", text)
    text = MENTION_RE.sub(" @user ", text)
    text = HASHTAG_RE.sub(r" \1 ", text)
    text = _EMOJI_RE.sub(lambda m: f" {EMOJIS.get(m.group(0), ('emoji_other',))[0]} ", text)
    text = squeeze_repeats(text.lower()).replace("’", "'")
    stop = stopwords(lang)
    tokens: list[str] = []
    for token in WORD_RE.findall(text):
        if "'" in token and not token.endswith("n't"):  # l'appli → appli, j'adore → adore
            token = token.split("'", 1)[1]
        if token not in stop and (len(token) > 1 or token in NEGATIONS):
            tokens.append(token)
    return tokens


def clean_text(text: str, lang: str) -> str:
    return " ".join(clean_tokens(text, lang))


def dedup_key(text: str) -> str:
    """Normalised text for exact-duplicate hashing: reposts that only differ by URL, mentions,
    case, accents, punctuation, emojis or spacing get the same key."""
    text = URL_RE.sub(" ", text)
    text = MENTION_RE.sub(" ", text)
    text = _EMOJI_RE.sub(" ", text)
    text = strip_accents(squeeze_repeats(text.lower()))
    text = re.sub(r"^(rt|repost)\b[: ]*", " ", text)
    return " ".join(re.findall(r"[a-z0-9]+", text))


@dataclass(frozen=True)
class Cues:
    """Surface cues used as features (sarcasm/intensity signals the lexicons miss)."""

    positive_emojis: int
    negative_emojis: int
    sarcasm_emojis: int
    exclamations: int
    questions: int
    ellipsis: int
    elongated: int
    caps_ratio: float
    urls: int
    mentions: int
    hashtags: int

    def as_list(self) -> list[float]:
        return [
            float(self.positive_emojis),
            float(self.negative_emojis),
            float(self.sarcasm_emojis),
            float(min(self.exclamations, 5)),
            float(min(self.questions, 5)),
            float(self.ellipsis),
            float(self.elongated),
            self.caps_ratio,
            float(self.urls),
            float(self.mentions),
            float(self.hashtags),
        ]


CUE_NAMES = [
    "positive_emojis",
    "negative_emojis",
    "sarcasm_emojis",
    "exclamations",
    "questions",
    "ellipsis",
    "elongated",
    "caps_ratio",
    "urls",
    "mentions",
    "hashtags",
]


def cues(text: str) -> Cues:
    polarity = [EMOJIS.get(m, ("", "", 0))[2] for m in _EMOJI_RE.findall(text)]
    letters = [c for c in text if c.isalpha()]
    caps = sum(1 for c in letters if c.isupper()) / len(letters) if letters else 0.0
    return Cues(
        positive_emojis=sum(1 for p in polarity if p > 0),
        negative_emojis=sum(1 for p in polarity if p == -1),
        sarcasm_emojis=sum(1 for p in polarity if p == SARCASM),
        exclamations=text.count("!"),
        questions=text.count("?"),
        ellipsis=text.count("...") + text.count("…"),
        elongated=len(REPEAT_RE.findall(text)),
        caps_ratio=round(caps, 3) if len(letters) >= 8 else 0.0,
        urls=len(URL_RE.findall(text)),
        mentions=len(MENTION_RE.findall(text)),
        hashtags=len(HASHTAG_RE.findall(text)),
    )
