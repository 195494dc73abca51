"""Fine-tuning a fixed-shape BERT on a GLUE task: the logic behind `python -m darts.train`.

The step is a pure function `(state, batch, rng) -> (state, metrics)`, jitted once with a
data-parallel sharding and the state donated. Batch order and dropout keys are functions of the
global step, so a job restored from its last checkpoint continues exactly as if never stopped.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tensorboardX
from absl import logging
from flax import nnx

from darts.data import batching, glue, metrics
from darts.training import checkpoints, inference, loop, losses, sharding, teacher
from models import bert, checkpoint, files, workdirs
from models.tokenizer import WordPieceTokenizer

EVAL_FILE = "eval.json"
MODEL_DIR = "model"


class TrainState(NamedTuple):
  step: jax.Array
  params: nnx.State
  opt_state: optax.OptState


@dataclasses.dataclass
class TaskData:
  task: glue.GlueTask
  train: batching.EncodedDataset
  eval: batching.EncodedDataset


def subsample(examples: list[glue.Example], limit: int, seed: int) -> list[glue.Example]:
  if not limit or limit >= len(examples):
    return examples
  keep = np.sort(np.random.default_rng(seed).choice(len(examples), limit, replace=False))
  return [examples[i] for i in keep]


def read_task_examples(data_config: ml_collections.ConfigDict, seed: int
                       ) -> tuple[glue.GlueTask, dict[str, list[glue.Example]]]:
  """The task and its (subsampled, if configured) "train" and "eval" examples."""
  task = glue.get_task(data_config.task)
  read = lambda split, limit: subsample(glue.load_split(task.name, split, data_config.glue_dir),
                                        limit, seed)
  return task, {"train": read("train", data_config.max_train_examples),
                "eval": read(data_config.eval_split, data_config.max_eval_examples)}


def encode_task_data(task: glue.GlueTask, examples: dict[str, list[glue.Example]],
                     tokenizer: WordPieceTokenizer, max_length: int) -> TaskData:
  encode = lambda split: batching.encode(examples[split], tokenizer, max_length,
                                         task.is_regression)
  return TaskData(task, encode("train"), encode("eval"))


def decay_mask(params: nnx.State) -> Any:
  """True for kernels and embeddings: BERT's recipe spares biases and LayerNorm parameters."""

  def decays(path, _) -> bool:
    # NNX paths end in the Variable's `value` attribute; the parameter's name is the last key.
    names = [k.key for k in path if isinstance(k, jax.tree_util.DictKey)]
    return names[-1] in ("kernel", "embedding")

  return jax.tree_util.tree_map_with_path(decays, params)


def make_optimizer(optim: ml_collections.ConfigDict,
                   num_train_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """AdamW with linear warm-up and linear decay to zero, after global-norm clipping."""
  warmup = int(optim.warmup_ratio * num_train_steps)
  schedule = optax.join_schedules(
      [optax.linear_schedule(0.0, optim.lr, max(warmup, 1)),
       optax.linear_schedule(optim.lr, 0.0, max(num_train_steps - warmup, 1))], [warmup])
  tx = optax.chain(
      optax.clip_by_global_norm(optim.clip_norm),
      optax.adamw(schedule, b1=optim.b1, b2=optim.b2, eps=optim.eps,
                  weight_decay=optim.weight_decay, mask=decay_mask))
  return tx, schedule


def layer_distillation(distill: ml_collections.ConfigDict) -> bool:
  """Whether the student also learns the teacher's hidden states or attention maps."""
  return bool(distill.hidden_weight or distill.attention_weight)


def make_train_step(graphdef: nnx.GraphDef, tx: optax.GradientTransformation,
                    distill: ml_collections.ConfigDict, compute_dtype: str = "float32",
                    teacher_graphdef: nnx.GraphDef | None = None) -> Callable[..., tuple]:
  """Returns the pure step `(state, batch, rng, teacher_params=None) -> (state, metrics)`.

  With layer distillation (`distill.hidden_weight`, `distill.attention_weight`) the teacher
  (`teacher_graphdef`) runs live on every batch: its parameters are an input of the step, never
  trained nor checkpointed.
  """
  layered = layer_distillation(distill)

  def loss_fn(params, batch, rng, teacher_params):
    model = nnx.merge(graphdef, bert.compute_view(params, compute_dtype))
    inputs = (batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    out = model(*inputs, deterministic=False, rngs=nnx.Rngs(dropout=rng), internals=layered)
    logits, encoded = out if layered else (out, None)
    loss, parts = losses.model_loss(logits.astype(jnp.float32), batch, distill.weight,
                                    distill.temperature)
    if not layered:
      return loss, parts
    teacher = nnx.merge(teacher_graphdef, bert.compute_view(teacher_params, compute_dtype))
    _, taught = jax.lax.stop_gradient(teacher(*inputs, internals=True))
    f32 = lambda arrays: tuple(a.astype(jnp.float32) for a in arrays)
    for name, weight, fn, field in (
        ("hidden_loss", distill.hidden_weight, losses.hidden_state_loss, "hidden_states"),
        ("attention_loss", distill.attention_weight, losses.attention_loss, "attentions")):
      if weight:
        parts[name] = fn(f32(getattr(encoded, field)), f32(getattr(taught, field)),
                         batch["attention_mask"], batch["weights"])
        loss = loss + weight * parts[name]
    return loss, parts

  def train_step(state: TrainState, batch: dict[str, jax.Array], rng: jax.Array,
                 teacher_params: nnx.State | None = None):
    (loss, parts), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params, batch, rng, teacher_params)

    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return (TrainState(state.step + 1, params, opt_state),
            {"loss": loss, "grad_norm": optax.global_norm(grads), **parts})

  return train_step


def evaluate(logits: np.ndarray, task: glue.GlueTask,
             dataset: batching.EncodedDataset) -> dict[str, float]:
  """The task's official metrics of `logits` [N, num_labels] on `dataset`."""
  predictions = logits[:, 0] if task.is_regression else logits.argmax(-1)
  return metrics.compute_metrics(task.name, predictions, dataset.labels)


def add_teacher_logits(config: ml_collections.ConfigDict, data: TaskData,
                       mesh: jax.sharding.Mesh) -> None:
  """Stores the teacher's logits of every train example in the batches' `teacher_logits`."""
  model = teacher.load_teacher(config.distill.teacher, data.task.name, data.task.num_labels)
  graphdef, params = nnx.split(model, nnx.Param)
  data.train.extras["teacher_logits"] = inference.dataset_logits(
      inference.make_predict(graphdef, mesh), jax.device_put(params, sharding.replicated(mesh)),
      data.train, config.data.eval_batch_size, tuple(config.data.bucket_lengths), mesh,
      what=f"Teacher logits ({config.distill.teacher}, {len(data.train)} train examples)")


# Config keys that locate inputs the run manifest hashes instead (a moved file is the same input).
_INPUT_PATHS = ("data.glue_dir", "model.checkpoint", "distill.teacher")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Fine-tunes `config.model.checkpoint` on `config.data.task`; resumes from `workdir`.

  Writes to `workdir`: its manifest, orbax checkpoints (`checkpoints/`), TensorBoard events
  (`tensorboard/`), the fine-tuned model in Hugging Face layout (`model/`) and the final metrics
  (`eval.json`).

  Returns:
    The contents of eval.json.

  Raises:
    models.workdirs.WorkdirMismatchError: `workdir` holds a run of another config or inputs.
    models.workdirs.WorkdirBusyError: another job is using `workdir`.
  """
  with workdirs.locked(workdir):
    return _train_and_evaluate(config, pathlib.Path(workdir))


def _train_and_evaluate(config: ml_collections.ConfigDict,
                        workdir_path: pathlib.Path) -> dict[str, Any]:
  model_dir = checkpoint.resolve_model_dir(config.model.checkpoint)
  # Read once the config is known to match the workdir's (an unavailable task's files must not
  # hide that the workdir is another task's).
  read = functools.cache(lambda: read_task_examples(config.data, config.seed))
  inputs = {"checkpoint": lambda: checkpoint.checkpoint_sha256(model_dir),
            **{f"data.{split}": lambda split=split: glue.examples_sha256(read()[1][split])
               for split in ("train", "eval")}}
  if config.distill.teacher:
    inputs["teacher"] = lambda: checkpoint.checkpoint_sha256(
        checkpoint.resolve_model_dir(config.distill.teacher))
  loop.claim_workdir(workdir_path, "train", config, _INPUT_PATHS, inputs,
                     outputs=(EVAL_FILE, MODEL_DIR))
  task, examples = read()
  tokenizer = WordPieceTokenizer.from_pretrained(model_dir)
  data = encode_task_data(task, examples, tokenizer, config.data.max_length)
  model = checkpoint.load_pretrained(
      str(model_dir), data.task.num_labels, seed=config.seed,
      hidden_dropout=config.model.hidden_dropout,
      attention_dropout=config.model.attention_dropout)
  graphdef, params = nnx.split(model, nnx.Param)

  buckets = tuple(config.data.bucket_lengths)
  steps_per_epoch = batching.num_batches_per_epoch(data.train, config.data.batch_size, buckets)
  total_steps = (config.optim.num_train_steps
                 or max(1, round(config.optim.num_epochs * steps_per_epoch)))
  tx, schedule = make_optimizer(config.optim, total_steps)
  mesh = sharding.make_mesh()
  replicated = sharding.replicated(mesh)
  if config.distill.teacher:
    add_teacher_logits(config, data, mesh)
  teacher_graphdef, teacher_params = None, None
  if layer_distillation(config.distill):
    if not config.distill.teacher:
      raise ValueError("distill.hidden_weight and distill.attention_weight need "
                       "--config.distill.teacher.")
    teacher_graphdef, teacher_params = nnx.split(teacher.load_teacher(
        config.distill.teacher, data.task.name, data.task.num_labels), nnx.Param)
    teacher_params = jax.device_put(teacher_params, replicated)
  state = jax.device_put(TrainState(jnp.zeros((), jnp.int32), params, tx.init(params)),
                         replicated)

  manager = checkpoints.checkpoint_manager(workdir_path, config.keep_checkpoints)
  state = checkpoints.restore_latest(manager, state)
  start_step = int(state.step)

  jitted_step = jax.jit(
      make_train_step(graphdef, tx, config.distill, config.compute_dtype, teacher_graphdef),
      donate_argnums=0,
      in_shardings=(replicated, sharding.batch_sharded(mesh), replicated, replicated),
      out_shardings=(replicated, replicated))
  train_step = lambda state, batch, rng: jitted_step(state, batch, rng, teacher_params)
  predict = inference.make_predict(graphdef, mesh)
  run_eval = lambda params: evaluate(inference.dataset_logits(
      predict, params, data.eval, config.data.eval_batch_size, buckets, mesh), data.task,
                                     data.eval)

  logging.info("Training %s on %s: %d examples, %d steps of %d (%.2f epochs), buckets %s: %s.",
               config.model.checkpoint, data.task.name, len(data.train), total_steps,
               config.data.batch_size, total_steps / steps_per_epoch, buckets,
               batching.bucket_histogram(data.train, buckets))
  writer = tensorboardX.SummaryWriter(str(workdir_path / "tensorboard"))
  base_key = jax.random.key(config.seed)
  batches = batching.iterate_batches(data.train, config.data.batch_size, buckets, config.seed,
                                     start_step=start_step)

  def step_fn(state: TrainState, step: int) -> tuple[TrainState, dict, float]:
    _, batch = next(batches)
    state, step_metrics = train_step(state, sharding.shard_batch(batch, mesh),
                                     jax.random.fold_in(base_key, step))
    return state, step_metrics, float(batch["weights"].sum())

  def log_eval(step: int, state: TrainState) -> None:
    for name, value in run_eval(state.params).items():
      writer.add_scalar(f"eval/{name}", value, step)

  state, progress = loop.run(
      state, step_fn, start_step=start_step, total_steps=total_steps,
      cadence=loop.Cadence(config.log_every_steps, config.checkpoint_every_steps),
      manager=manager, writer=writer, schedule=schedule,
      periodic=[loop.Periodic(config.eval_every_steps, log_eval, at_end=False)])

  results = run_eval(state.params)
  for name, value in results.items():
    writer.add_scalar(f"eval/{name}", value, total_steps)
  writer.close()
  nnx.update(model, jax.device_get(state.params))
  checkpoint.save_pretrained(model, workdir_path / MODEL_DIR,
                             extra_config={teacher.TASK_KEY: data.task.name})
  tokenizer.save_pretrained(workdir_path / MODEL_DIR)
  summary = {
      "task": data.task.name, "split": config.data.eval_split,
      "metrics": results, "main_metric": metrics.main_metric(data.task.name),
      "num_eval_examples": len(data.eval), "num_train_examples": len(data.train),
      "num_train_steps": total_steps, "epochs": total_steps / steps_per_epoch,
      "resumed_from_step": start_step,
      "train_seconds_this_run": progress.train_time,
      "train_loss_this_run": progress.losses,  # [step, loss] at every logged step.
      "train_examples_per_sec": (progress.train_examples / progress.train_time
                                 if progress.train_time else None),
      "devices": [str(d) for d in mesh.devices.flat],
      "config": config.to_dict(),
  }
  files.write_json_atomically(workdir_path / EVAL_FILE, summary)
  logging.info("%s %s: %s (written to %s).", data.task.name, config.data.eval_split,
               ", ".join(f"{k} {v:.4f}" for k, v in results.items()), workdir_path / EVAL_FILE)
  return summary
