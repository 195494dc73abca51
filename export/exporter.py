"""Export of a fine-tuned BERT to TFLite: the logic behind `python -m export.to_tflite`.

The checkpoint's architecture is rebuilt with `models.tf_bert` (the graph the cost table
times), converted at each precision, verified through LiteRT against the JAX model, and written
with what an app needs: the vocabulary, a JSON sidecar and the same JSON inside the flatbuffer.
Everything is staged in a temporary directory and moved into `RUN/export/` only after the
verification gate passes, so a failed export leaves no file that looks final.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import json
import os
import pathlib
import shutil
import tempfile
from typing import Any, Callable

import ml_collections
import numpy as np
import tensorflow as tf
from absl import logging

from configs import quantization, runtimes
from darts.data import glue
from darts.training import teacher
from export import delegates, metadata, verify
from latency_loss import plugins
from latency_loss.backends import tflite as tflite_backend
from latency_loss.runtime import RuntimeSpec
from models import checkpoint, files, quantize, tf_bert, workdirs
from models.bert import BertConfig
from models.search_space import Arch, SearchSpace
from models.tokenizer import WordPieceTokenizer

EMBEDDING_TABLES = tuple(f"embeddings.{name}_embeddings.weight"
                         for name in ("word", "position", "token_type"))
EXPORT_DIR = "export"
REPORT_FILE = "export_report.json"
FAILED_REPORT_FILE = "export_failed.json"
MODEL_DIR = "model"  # darts.train writes the fine-tuned model to WORKDIR/model.


class VerificationError(RuntimeError):
  """The exported models do not compute what the JAX model computes."""


@dataclasses.dataclass(frozen=True)
class Source:
  """A fine-tuned checkpoint, read and checked for export.

  Attributes:
    model_dir: the checkpoint directory.
    task: the GLUE task it was fine-tuned on.
    config: its `BertConfig`.
    arch: its architecture.
    space: a one-point search space carrying the export shapes (seq_len, vocab, labels).
    weights: Hugging Face named tensors, torch layout.
  """
  model_dir: pathlib.Path
  task: glue.GlueTask
  config: BertConfig
  arch: Arch
  space: SearchSpace
  weights: dict[str, np.ndarray]


def parse_precisions(text: str) -> tuple[str, ...]:
  """'fp32,fp16' -> ('fp32', 'fp16'); raises ValueError naming an unknown mode."""
  names = tuple(p.strip() for p in text.split(",") if p.strip())
  unknown = [p for p in names if p not in tf_bert.PRECISIONS]
  if unknown or not names:
    raise ValueError(f"--config.precisions={text!r}: unknown quantization mode(s) {unknown}; "
                     f"expected a comma-separated subset of {tf_bert.PRECISIONS}")
  return names


def model_dir_of(config: ml_collections.ConfigDict, workdir: str) -> pathlib.Path:
  """`config.model_dir` if set, else the darts.train output `workdir/model`."""
  path = pathlib.Path(config.model_dir or pathlib.Path(workdir) / MODEL_DIR)
  if not path.is_dir():
    raise FileNotFoundError(f"Model directory {path} does not exist; pass a darts.train "
                            "--workdir (which holds model/) or --config.model_dir.")
  return path


def arch_and_space(config: BertConfig, seq_len: int, num_labels: int) -> tuple[Arch, SearchSpace]:
  """The checkpoint's `Arch` and the one-point `SearchSpace` that admits exactly it."""
  arch = Arch(config.num_layers, config.hidden_size, config.num_heads, config.intermediate_size)
  space = SearchSpace(
      name="export", depth_choices=(arch.num_layers,), hidden_choices=(arch.hidden_size,),
      head_choices=tuple(sorted(set(arch.heads))), ffn_choices=tuple(sorted(set(arch.ffn))),
      head_size=config.head_size, seq_len=seq_len, batch=1, vocab_size=config.vocab_size,
      max_position_embeddings=config.max_position_embeddings,
      type_vocab_size=config.type_vocab_size, num_labels=num_labels)
  return arch, space


def _task_of(model_dir: pathlib.Path, configured: str) -> glue.GlueTask:
  """The configured task, checked against the one darts.train recorded in config.json."""
  recorded = json.loads((model_dir / checkpoint.CONFIG_FILE).read_text()).get(teacher.TASK_KEY)
  if configured and recorded and glue.get_task(configured).name != glue.get_task(recorded).name:
    raise ValueError(f"{model_dir / checkpoint.CONFIG_FILE} records {teacher.TASK_KEY}="
                     f"{recorded!r} but --config.task={configured!r}: this checkpoint was "
                     "fine-tuned for another task.")
  if not (configured or recorded):
    raise ValueError(f"{model_dir / checkpoint.CONFIG_FILE} has no {teacher.TASK_KEY}; set "
                     "--config.task to the task the model was fine-tuned on.")
  return glue.get_task(configured or recorded)


def _check_builder_semantics(config: BertConfig, model_dir: pathlib.Path) -> None:
  """models.tf_bert implements exact-GELU BERT with LayerNorm eps 1e-12; refuse anything else."""
  if config.gelu != "erf":
    raise ValueError(f"{model_dir}: hidden_act is GELU-{config.gelu}, but models.tf_bert "
                     "implements the exact (erf) GELU only.")
  if not np.isclose(config.layer_norm_eps, tf_bert.LN_EPS, rtol=0, atol=1e-15):
    raise ValueError(f"{model_dir}: layer_norm_eps={config.layer_norm_eps}, but "
                     f"models.tf_bert uses {tf_bert.LN_EPS}.")


def _check_head(weights: dict[str, np.ndarray], task: glue.GlueTask,
                model_dir: pathlib.Path) -> None:
  head = weights.get("classifier.weight")
  if head is None:
    raise ValueError(f"{model_dir} has no classifier.weight: it is not a fine-tuned classifier "
                     "(export a darts.train WORKDIR/model).")
  if head.shape[0] != task.num_labels:
    raise ValueError(f"{model_dir}: classifier.weight has {head.shape[0]} outputs but task "
                     f"{task.name} has {task.num_labels} labels.")


def load_source(model_dir: pathlib.Path, task_name: str, seq_len: int,
                arch_file: str = "") -> Source:
  """Reads and checks a fine-tuned checkpoint for export.

  Args:
    model_dir: a darts.train WORKDIR/model (config.json, model.safetensors, vocab.txt).
    task_name: the expected task; "" takes the one recorded in config.json.
    seq_len: the static sequence length of the exported graph.
    arch_file: optional Arch JSON (e.g. a search result) the checkpoint must have.

  Raises:
    FileNotFoundError: missing config, weights or vocabulary.
    ValueError: task mismatch, unsupported semantics, arch or shapes that do not match.
  """
  if not (model_dir / checkpoint.VOCAB_FILE).is_file():
    raise FileNotFoundError(f"{model_dir} has no {checkpoint.VOCAB_FILE}: the app cannot "
                            "tokenize without the vocabulary the model was trained with.")
  config = checkpoint.load_config(model_dir)
  _check_builder_semantics(config, model_dir)
  task = _task_of(model_dir, task_name)
  # Classifier checkpoints name the encoder `bert.*`; models.tf_bert uses BertModel's names.
  weights = {k.removeprefix("bert."): v for k, v in checkpoint.read_weights(model_dir).items()}
  _check_head(weights, task, model_dir)
  arch, space = arch_and_space(config, seq_len, task.num_labels)
  if arch_file:
    expected = Arch.load(arch_file)
    if expected != arch:
      raise ValueError(f"--config.arch={arch_file} is {expected}, but the checkpoint "
                       f"{model_dir} has {arch}.")
  return Source(model_dir, task, config, arch, space, weights)


def unit_variance_embeddings(weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """`weights` with the embedding tables scaled by 1 / std(word embeddings).

  The embedding LayerNorm is scale invariant (up to its 1e-12 epsilon), so the model computes the
  same function; but its input variance moves from ~0.003 to ~1, where an integer RSQRT is
  accurate (at ~0.003 int8 RSQRT is off by ~5 on outputs of ~20).
  """
  scale = 1.0 / float(np.std(weights[EMBEDDING_TABLES[0]]))
  return {k: v * scale if k in EMBEDDING_TABLES else v for k, v in weights.items()}


def build_module(source: Source, integer_friendly: bool = False) -> tf_bert.BertModule:
  """The TF graph of the checkpoint with its weights; errors name the checkpoint.

  `integer_friendly` rescales the embeddings (`unit_variance_embeddings`) for integer modes.
  """
  weights = unit_variance_embeddings(source.weights) if integer_friendly else source.weights
  try:
    return tf_bert.BertModule(source.arch, source.space, weights)
  except ValueError as e:
    raise ValueError(f"{source.model_dir}: model.safetensors does not match its "
                     f"config.json architecture {source.arch}: {e}") from None


def convert(source: Source, module: tf_bert.BertModule, precision: str,
            calibration: Callable[[], verify.PaddedSplit],
            friendly_float: Callable[[], bytes]) -> bytes:
  """The flatbuffer of `module` (built from `source`) at `precision`.

  Calibrated modes rebuild the graph with integer-friendly weights and call `calibration`. A
  recipe precision (configs/quantization.py) quantizes `friendly_float()` (that graph in fp32),
  whose ops every entry of the recipe must select.
  """
  if precision not in tf_bert.CALIBRATED:
    return tf_bert.convert_to_tflite(module, precision)
  examples = calibration()
  feeds = lambda: ({k: v[i:i + 1] for k, v in examples.inputs.items()} for i in range(len(examples)))
  if precision in quantization.RECIPES:
    recipe = quantization.get_recipe(precision)
    quantize.check_entries(friendly_float(), recipe)
    return quantize.quantize(friendly_float(), recipe, feeds())
  return tf_bert.convert_to_tflite(build_module(source, integer_friendly=True), precision, feeds)


def recipe_report(precision: str, model: bytes, float_model: bytes, dev: verify.PaddedSplit,
                  num_examples: int = 8) -> dict[str, Any]:
  """Where a recipe's model departs from float: the recipe (name, file hash), the ops it
  leaves in float, and the tensors with the worst SNR against `float_model`, the graph it was
  quantized from, on the first `num_examples` dev examples."""
  recipe = quantization.get_recipe(precision)
  n = min(num_examples, len(dev))
  feeds = [{k: v[i:i + 1] for k, v in dev.inputs.items()} for i in range(n)]
  return {"recipe": recipe.name, "recipe_sha256": recipe.sha256(),
          "integer_only": recipe.integer_only,
          "float_ops": quantize.describe_ops(quantize.float_ops(model)),
          "worst_tensors": quantize.worst_tensors(float_model, model, feeds),
          "validation_examples": n}


def _io_spec(model: bytes) -> dict[str, dict[str, dict[str, Any]]]:
  runner = tflite_backend.make_interpreter(model, RuntimeSpec(xnnpack=False)).get_signature_runner()
  describe = lambda details: {n: {"shape": [int(s) for s in d["shape"]],
                                  "dtype": np.dtype(d["dtype"]).name}
                              for n, d in details.items()}
  return {"inputs": describe(runner.get_input_details()),
          "outputs": describe(runner.get_output_details())}


def model_metadata(source: Source, tokenizer: WordPieceTokenizer, precision: str, model: bytes,
                   check: dict[str, Any]) -> dict[str, Any]:
  """The record an app needs to run one exported model."""
  return {
      "format_version": metadata.FORMAT_VERSION,
      "task": source.task.name,
      "labels": list(source.task.label_names or ["score"]),
      "is_regression": source.task.is_regression,
      "max_sequence_length": source.space.seq_len,
      "precision": precision,
      "arch": dataclasses.asdict(source.arch),
      "head_size": source.config.head_size,
      "signature": {"key": "serving_default", **_io_spec(model)},
      # Valid values of each int32 input; the graph clamps others into range (so benchmark
      # tools' random inputs run), but only these give meaningful outputs.
      "input_ranges": tf_bert.input_ranges(source.space),
      "tokenizer": {"type": "bert_wordpiece", "vocab_file": checkpoint.VOCAB_FILE,
                    "vocab_size": tokenizer.vocab_size, **tokenizer.options,
                    "pad_id": tokenizer.pad_id,
                    "format": "[CLS] a [SEP] (b [SEP]); right-padded with pad_id to "
                              "max_sequence_length; attention_mask 1 on tokens, 0 on padding; "
                              "token_type_ids 0 for a, 1 for b"},
      "verification": check,
      "source": str(source.model_dir),
      "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
  }


def _runtime(config: ml_collections.ConfigDict) -> RuntimeSpec:
  return RuntimeSpec(threads=config.threads, xnnpack=config.xnnpack, delegate=config.delegate,
                     delegate_options=delegates.parse_delegate_options(config.delegate_options))


def compile_target(config: ml_collections.ConfigDict) -> RuntimeSpec | None:
  """The CompiledModel runtime of `config.runtime` the models are also compiled for and
  verified on (None for "xnnpack": the Interpreter's verification is all), checked usable.

  Raises:
    ValueError: a runtime that is not a LiteRT one; plugins.PluginError: its plugin, dispatch
      library or SDK is missing.
  """
  fields = runtimes.runtime_fields(config.runtime)
  if fields["backend"] == "tflite":
    return None
  if fields["backend"] != "compiled":
    raise ValueError(f"--config.runtime={config.runtime}: export compiles for LiteRT runtimes "
                     f"only: {[n for n, f in runtimes.RUNTIMES.items() if f['backend'] in ('tflite', 'compiled')]}")
  fields.pop("xnnpack")
  fields.update({k: config[k] for k in ("soc_model", "graph_backend") if config[k]})
  target = RuntimeSpec(**fields, threads=config.threads)
  if target.plugin:
    plugins.check_available(target)
  return target


def compiled_file(precision: str, target: RuntimeSpec) -> str:
  """The file name of a model compiled for `target`, beside model_<precision>.tflite."""
  return f"model_{precision}_{target.name}.tflite"


def _compile_and_verify(model: bytes, precision: str, target: RuntimeSpec,
                        task: glue.GlueTask, dev: verify.PaddedSplit,
                        reference: np.ndarray) -> tuple[bytes | None, dict[str, Any]]:
  """`model` compiled for `target` (with a plugin) and verified on its dispatch path: (compiled
  model, or None when the plugin left ops on CPU; its result with the partition report)."""
  result: dict[str, Any] = {"runtime": target.to_dict()}
  if target.plugin:
    model, result["partition"] = plugins.compile_model(model, target)
    logging.info("%s %s", precision, plugins.compiled_summary(result))
    if not result["partition"]["fully_offloaded"]:
      return None, result
  logits = verify.compiled_logits(model, target, dev.inputs, f"model_{precision} on {target.name}")
  result.update(verify.compare(task, dev, reference, logits), bytes=len(model))
  return model, result


def _gate(results: dict[str, dict[str, Any]], config: ml_collections.ConfigDict,
          num_examples: int) -> list[str]:
  """Reasons the export fails; marks each result's "passed"."""
  failures = []
  if num_examples < config.verify.min_examples:
    failures.append(f"only {num_examples} verification examples (< {config.verify.min_examples})")
  checked = list(results.items())
  checked += [(f"{precision} on {r['compiled']['runtime']['plugin'] or 'litert_cpu'}",
               r["compiled"]) for precision, r in results.items()
              if "metric_drop" in r.get("compiled", {})]
  for name, r in checked:
    reasons = []
    # The Interpreter's fp32 proves the graph; a compiler may compute float layers in lower
    # precision (OpenVINO on bfloat16 CPUs: `plugins.openvino_float_precision`), so compiled
    # models are held to the metric only.
    if name == "fp32" and not r["max_abs_diff"] <= config.verify.fp32_tolerance:
      reasons.append(f"{name} logits differ from JAX by {r['max_abs_diff']:.3g} "
                     f"(> {config.verify.fp32_tolerance:g})")
    if r["metric_drop"] > config.verify.max_metric_drop:
      r["lossy"] = True
      logging.warning("%s loses %.2f points of %s against JAX.", name,
                      100 * r["metric_drop"], r["main_metric"])
      if config.verify.fail_on_metric_drop:
        reasons.append(f"{name} loses {100 * r['metric_drop']:.2f} points")
    r["passed"] = not reasons
    failures += reasons
  return failures


def export(config: ml_collections.ConfigDict, workdir: str,
           out_dir: str | pathlib.Path | None = None) -> dict[str, Any]:
  """Exports, verifies and writes every configured precision; returns the report.

  An export already in `out_dir` of the same config and checkpoint is returned as it is.

  Args:
    config: see configs/export.py.
    workdir: a darts.train workdir (its model/ is exported unless config.model_dir is set).
    out_dir: where the models go; default `workdir/export/`.

  Raises:
    VerificationError: the gate failed (nothing final is written; see export_failed.json).
    FileNotFoundError, ValueError: bad input, naming the file or key.
    models.workdirs.WorkdirMismatchError: `out_dir` holds an export of another config or model.
    models.workdirs.WorkdirBusyError: another job is using `out_dir`.
  """
  precisions = parse_precisions(config.precisions)
  runtime = _runtime(config)
  delegates.check_runtime(runtime)
  target = compile_target(config)
  source = load_source(model_dir_of(config, workdir), config.task, config.seq_len, config.arch)
  module = build_module(source)  # First: shape errors should name the export, not JAX.
  out_dir = pathlib.Path(out_dir or pathlib.Path(workdir) / EXPORT_DIR)
  with workdirs.locked(out_dir):
    # The paths of the model and data are not the export's identity: the model's content is,
    # and so is each recipe file's (an edited recipe makes other models).
    workdirs.claim(out_dir, "export",
                   workdirs.config_fields(config, exclude=("model_dir", "data.glue_dir")),
                   lambda: {"model": checkpoint.checkpoint_sha256(source.model_dir),
                            **{f"recipe.{p}": quantization.get_recipe(p).sha256()
                               for p in precisions if p in quantization.RECIPES}},
                   has_results=(out_dir / REPORT_FILE).exists())
    if (out_dir / REPORT_FILE).exists():
      logging.info("%s exists: the export in %s is complete.", REPORT_FILE, out_dir)
      return json.loads((out_dir / REPORT_FILE).read_text())
    return _export(config, source, module, precisions, runtime, target, out_dir)


def _calibration_split(split: Callable[[str, int], verify.PaddedSplit],
                       config: ml_collections.ConfigDict) -> verify.PaddedSplit:
  """The train examples activation ranges are calibrated on; too few is an error: a range
  seen on a handful of sentences clips the rest."""
  examples = split("train", config.calibration_examples)
  if len(examples) < config.min_calibration_examples:
    raise ValueError(
        f"{len(examples)} calibration examples (export.calibration_examples="
        f"{config.calibration_examples}, from the train split of {config.data.glue_dir or 'GLUE'}"
        f") are fewer than export.min_calibration_examples={config.min_calibration_examples}. "
        "Raise calibration_examples, or give a larger train split.")
  return examples


def _export(config: ml_collections.ConfigDict, source: Source, module: tf_bert.BertModule,
            precisions: tuple[str, ...], runtime: RuntimeSpec, target: RuntimeSpec | None,
            out_dir: pathlib.Path) -> dict[str, Any]:
  tokenizer = WordPieceTokenizer.from_pretrained(source.model_dir)
  split = lambda name, limit: verify.padded_split(source.task, name, tokenizer, config.seq_len,
                                                  config.data.glue_dir, limit, config.seed)
  dev = split(config.data.eval_split, config.verify.num_examples)
  reference = verify.jax_logits(source.model_dir, source.task.num_labels, dev.inputs)
  calibration = lambda: _calibration_split(split, config)
  # The integer-friendly graph in fp32: what every recipe quantizes and is validated against.
  friendly_float = functools.cache(
      lambda: tf_bert.convert_to_tflite(build_module(source, integer_friendly=True)))
  models, compiled = {}, {}
  results = {"jax": {"metrics": verify.task_metrics(source.task, reference, dev)}}
  todo = list(dict.fromkeys(("fp32", *precisions)))  # fp32 is always the gate.
  for index, precision in enumerate(todo, 1):
    logging.info("[%d/%d] Converting to %s and verifying it against JAX ...", index, len(todo),
                 precision)
    models[precision] = convert(source, module, precision, calibration, friendly_float)
    logits = verify.tflite_logits(models[precision], runtime, dev.inputs)
    results[precision] = {**verify.compare(source.task, dev, reference, logits),
                          "delegate": delegates.delegated_share(models[precision], runtime),
                          "op_coverage": delegates.coverage_report(models[precision]),
                          "bytes": len(models[precision])}
    if precision in quantization.RECIPES:
      results[precision]["quantization"] = recipe_report(precision, models[precision],
                                                         friendly_float(), dev)
    logging.info("%s: %s", precision, {k: results[precision][k] for k in
                                       ("metrics", "max_abs_diff")})
    if target is not None and precision in precisions:
      compiled[precision], results[precision]["compiled"] = _compile_and_verify(
          models[precision], precision, target, source.task, dev, reference)
  failures = _gate({p: results[p] for p in models}, config, len(dev))
  report = {"model_dir": str(source.model_dir), "task": source.task.name,
            "arch": dataclasses.asdict(source.arch), "seq_len": config.seq_len,
            "num_examples": len(dev), "runtime": runtime.to_dict(),
            "compiled_for": target.to_dict() if target else None, "results": results,
            "failures": failures}
  if failures:
    files.atomic_write(out_dir / FAILED_REPORT_FILE,
                       lambda f: pathlib.Path(f).write_text(json.dumps(report, indent=2)))
    raise VerificationError(f"export of {source.model_dir} failed verification: "
                            f"{'; '.join(failures)} (details in {out_dir / FAILED_REPORT_FILE})")
  files_out = {f"model_{p}.tflite": (p, models[p]) for p in precisions}
  files_out.update({compiled_file(p, target): (p, model) for p, model in compiled.items()
                    if model is not None})
  _write(out_dir, files_out, source, tokenizer, results, report)
  return report


def _write(out_dir: pathlib.Path, models: dict[str, tuple[str, bytes]], source: Source,
           tokenizer: WordPieceTokenizer, results: dict[str, Any], report: dict) -> None:
  """Stages every file ({file name: (precision, model)}), then moves them into `out_dir` (each
  move is an atomic rename). Compiled models get the JSON sidecar only: their DISPATCH_OP
  partitions point at byte offsets that embedding metadata would move."""
  staging = pathlib.Path(tempfile.mkdtemp(dir=out_dir, prefix=".staging-"))
  try:
    tokenizer.save_pretrained(staging)
    for name, (precision, model) in models.items():
      # The I/O spec is read with the Interpreter, from the plain model of the precision.
      plain = models[f"model_{precision}.tflite"][1]
      record = model_metadata(source, tokenizer, precision, plain, results[precision])
      is_compiled = model is not plain
      (staging / name).write_bytes(model if is_compiled else metadata.embed(model, record))
      (staging / name).with_suffix(".json").write_text(json.dumps(record, indent=2))
    (staging / REPORT_FILE).write_text(json.dumps(report, indent=2))
    # The report moves last: its presence means the whole export is complete.
    for path in sorted(staging.iterdir(), key=lambda p: p.name == REPORT_FILE):
      path.chmod(files.default_file_mode())  # Staged in a private mkdtemp directory.
      os.replace(path, out_dir / path.name)
    (out_dir / FAILED_REPORT_FILE).unlink(missing_ok=True)
  finally:
    shutil.rmtree(staging, ignore_errors=True)
