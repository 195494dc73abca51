"""BERT WordPiece tokenization with a checkpoint's own vocabulary.

Built on the `tokenizers` library (Rust, fast). We construct it from vocab.txt ourselves rather
than through `transformers.BertTokenizerFast(vocab_file=...)`, which in transformers 5 silently
ignores the vocabulary and maps everything to [UNK].
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Sequence

import tokenizers

from models.checkpoint import VOCAB_FILE
from models.files import atomic_write

TOKENIZER_CONFIG_FILE = "tokenizer_config.json"

Encoded = tuple[list[int], list[int]]  # (input_ids, token_type_ids), with [CLS] and [SEP].


class WordPieceTokenizer:
  """Single sentences and pairs -> ids with [CLS]/[SEP], token types and truncation.

  Pairs are truncated 'longest_first' (one token at a time from the longer side), as BERT does.
  """

  def __init__(self, vocab_file: str | os.PathLike[str], *, lowercase: bool = True,
               strip_accents: bool | None = None, tokenize_chinese_chars: bool = True):
    vocab_file = pathlib.Path(vocab_file)
    if not vocab_file.is_file():
      raise FileNotFoundError(f"Vocabulary file {vocab_file} does not exist.")
    self._tokenizer = tokenizers.BertWordPieceTokenizer(
        str(vocab_file), lowercase=lowercase, strip_accents=strip_accents,
        handle_chinese_chars=tokenize_chinese_chars, clean_text=True)
    self.vocab_file = vocab_file
    self.options = {"do_lower_case": lowercase, "strip_accents": strip_accents,
                    "tokenize_chinese_chars": tokenize_chinese_chars}
    vocab = self._tokenizer.get_vocab()
    missing = [t for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]") if t not in vocab]
    if missing:
      raise ValueError(f"{vocab_file} lacks the special tokens {missing}.")
    self.pad_id = vocab["[PAD]"]
    self.vocab_size = len(vocab)
    self._max_length = None

  @classmethod
  def from_pretrained(cls, model_dir: str | os.PathLike[str]) -> "WordPieceTokenizer":
    """Reads vocab.txt and the casing options of tokenizer_config.json, when present."""
    model_dir = pathlib.Path(model_dir)
    options = {}
    config_path = model_dir / TOKENIZER_CONFIG_FILE
    if config_path.is_file():
      config = json.loads(config_path.read_text())
      options = dict(lowercase=config.get("do_lower_case", True),
                     strip_accents=config.get("strip_accents"),
                     tokenize_chinese_chars=config.get("tokenize_chinese_chars", True))
    return cls(model_dir / VOCAB_FILE, **options)

  def save_pretrained(self, out_dir: str | os.PathLike[str]) -> None:
    """Writes vocab.txt and tokenizer_config.json (the casing options) into `out_dir`."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    vocab = self.vocab_file.read_bytes()
    atomic_write(out_dir / VOCAB_FILE, lambda f: pathlib.Path(f).write_bytes(vocab))
    config = json.dumps({**self.options, "tokenizer_class": "BertTokenizer"}, indent=2)
    atomic_write(out_dir / TOKENIZER_CONFIG_FILE, lambda f: pathlib.Path(f).write_text(config))

  def _truncate_to(self, max_length: int) -> None:
    if max_length < 3:
      raise ValueError(f"max_length must leave room for [CLS] and [SEP]; got {max_length}.")
    if max_length != self._max_length:
      self._tokenizer.enable_truncation(max_length, strategy="longest_first")
      self._max_length = max_length

  def encode(self, text_a: str, text_b: str | None = None, max_length: int = 128) -> Encoded:
    """Returns (input_ids, token_type_ids) of one sentence or pair, at most `max_length` long."""
    return self.encode_batch([text_a], None if text_b is None else [text_b], max_length)[0]

  def encode_batch(self, texts_a: Sequence[str], texts_b: Sequence[str] | None,
                   max_length: int) -> list[Encoded]:
    """Encodes many sentences (or pairs when `texts_b` is given) in parallel."""
    self._truncate_to(max_length)
    if texts_b is None:
      inputs = list(texts_a)
    else:
      if len(texts_a) != len(texts_b):
        raise ValueError(f"{len(texts_a)} first sentences but {len(texts_b)} second ones.")
      inputs = list(zip(texts_a, texts_b))
    return [(e.ids, e.type_ids) for e in self._tokenizer.encode_batch(inputs)]

  def decode(self, ids: Sequence[int]) -> str:
    return self._tokenizer.decode(list(ids))
