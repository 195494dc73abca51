"""The latency-constrained architecture search behind `python -m darts.search`.

  fine-tuned teacher -> supernet (the teacher's weights, heads/FFN units reordered by importance)
  -> bilevel search (weights on train, architecture on held-out, latency penalty from the cost
  table) -> most probable arch, repaired to the latency target -> WORKDIR/subnet + arch.json
With search.selection=held_out_loss, evolution on the trained supernet's held-out loss picks the
arch instead, starting from that one and the learned distribution; search.method=evolution or
random train the supernet with uniformly sampled subnets and select by held-out loss alone.

Resumes from WORKDIR/checkpoints; arch.json is written last and atomically, so its presence means
the search finished.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import pathlib
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tensorboardX
from absl import logging
from flax import nnx

from darts.data import batching, glue
from darts.nas import bilevel_step, discretize, evolution, relaxation
from darts.training import (checkpoints, finetune, inference, loop, losses, progress, sharding,
                            teacher)
from latency_loss import table as table_lib
from latency_loss.runtime import RuntimeSpec
from models import checkpoint, files, search_space, supernet, workdirs
from models.tokenizer import WordPieceTokenizer

ARCH_FILE = "arch.json"
HISTORY_FILE = "arch_probabilities.jsonl"
FITNESS_FILE = "fitness.jsonl"  # Sampled methods: every evaluated subnet's held-out loss.
SUBNET_DIR = "subnet"
TARGETS_DIR = "targets"  # One arch.json and subnet per extra target (latency.deploy_targets_ms).
# differentiable: the bilevel relaxed search. evolution, random: the supernet's weights trained
# with one uniformly sampled subnet per step (HAT's SuperTransformer), then subnets selected by
# their held-out loss under the latency budget (darts.nas.evolution).
METHODS = ("differentiable", *evolution.METHODS)


@dataclasses.dataclass
class SearchData:
  task: glue.GlueTask
  train: batching.EncodedDataset  # Weights are trained on this part of the train split...
  held_out: batching.EncodedDataset  # ...the architecture on this disjoint part.
  eval: batching.EncodedDataset


def read_search_examples(data_config: ml_collections.ConfigDict, seed: int
                         ) -> tuple[glue.GlueTask, dict[str, list[glue.Example]]]:
  """The task and its examples: the (subsampled) train split cut into disjoint "train" (for the
  weights) and "held_out" (for the architecture) parts, and the "eval" split."""
  task, examples = finetune.read_task_examples(data_config, seed)
  order = np.random.default_rng(seed + 1).permutation(len(examples["train"]))
  num_held_out = int(round(data_config.held_out_fraction * len(order)))
  if not 0 < num_held_out < len(order):
    raise ValueError(f"held_out_fraction={data_config.held_out_fraction} leaves no examples for "
                     f"one side of the split of {len(order)} train examples.")
  part = lambda indices: [examples["train"][i] for i in indices]
  return task, {"train": part(order[num_held_out:]), "held_out": part(order[:num_held_out]),
                "eval": examples["eval"]}


def encode_search_data(task: glue.GlueTask, examples: dict[str, list[glue.Example]],
                       tokenizer: WordPieceTokenizer, max_length: int) -> SearchData:
  encode = lambda split: batching.encode(examples[split], tokenizer, max_length,
                                         task.is_regression)
  return SearchData(task, encode("train"), encode("held_out"), encode("eval"))


def search_space_for(config: ml_collections.ConfigDict) -> search_space.SearchSpace:
  """The configured space, at the deployment sequence length when one is given."""
  space = search_space.get_space(config.space)
  if config.latency.seq_len:
    space = dataclasses.replace(space, seq_len=config.latency.seq_len)
  return space


def load_cost_table(latency: ml_collections.ConfigDict, space: search_space.SearchSpace
                    ) -> table_lib.CostTable:
  """The cost table, checked against the space, runtime and target the job asks for."""
  table = table_lib.load_table(latency.table, expect=RuntimeSpec.from_config(latency), space=space)
  floor = table.predict_ms(space.smallest_arch())
  ceiling = table.predict_ms(space.largest_arch())
  budget = latency.target_ms * (1.0 - latency.margin)
  if budget < floor:
    raise ValueError(f"The latency target {latency.target_ms} ms (budget {budget:.2f} ms after "
                     f"the {latency.margin:.0%} margin) is below the smallest architecture of "
                     f"space '{space.name}' ({floor:.2f} ms in {latency.table}).")
  if latency.target_ms >= ceiling:
    logging.warning("The latency target %.2f ms is above the base model's %.2f ms: the search "
                    "has no latency pressure.", latency.target_ms, ceiling)
  logging.info("Cost table %s: %.2f ms (smallest arch) .. %.2f ms (base); target %.2f ms.",
               latency.table, floor, ceiling, latency.target_ms)
  return table


def make_arch_optimizer(arch_optim: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Adam on the architecture logits, with a little weight decay (DARTS, FBNet)."""
  return optax.adamw(arch_optim.lr, b1=arch_optim.b1, b2=arch_optim.b2,
                     weight_decay=arch_optim.weight_decay)


def unit_importance(graphdef: nnx.GraphDef, params: nnx.State, space: search_space.SearchSpace,
                    dataset: batching.EncodedDataset, config: ml_collections.ConfigDict,
                    mesh: jax.sharding.Mesh) -> dict[str, np.ndarray]:
  """Sum over batches of |d loss / d scale| of every head and FFN unit of the base model."""
  largest = {k: jnp.asarray(v) for k, v in
             search_space.one_hot_probs(space.largest_arch(), space).items()}

  def loss(scales, params, batch):
    logits = supernet.supernet_logits(
        nnx.merge(graphdef, params), space, largest, batch["input_ids"],
        batch["attention_mask"], batch["token_type_ids"], unit_scales=scales)
    return losses.model_loss(logits, batch, config.distill.weight,
                             config.distill.temperature)[0]

  grad = jax.jit(jax.grad(loss))
  ones = {"heads": jnp.ones((space.max_layers, space.head_choices[-1])),
          "ffn": jnp.ones((space.max_layers, space.ffn_choices[-1]))}
  total = jax.tree.map(np.zeros_like, ones)
  batches = batching.eval_batches(dataset, config.data.batch_size,
                                  tuple(config.data.bucket_lengths))
  num = min(config.search.importance_batches,
            batching.num_eval_batches(dataset, config.data.batch_size,
                                      tuple(config.data.bucket_lengths)))
  for _, batch in progress.logged(itertools.islice(batches, num), num,
                                  "Unit importance (heads and FFN units, gradient batches)"):
    grads = grad(ones, params, sharding.shard_batch(batch, mesh))
    total = jax.tree.map(lambda t, g: t + np.abs(np.asarray(g)), total, grads)
  return total


def log_probabilities(writer: tensorboardX.SummaryWriter, history: pathlib.Path,
                      probs: dict[str, np.ndarray], space: search_space.SearchSpace,
                      step: int) -> None:
  """Every choice's probability to TensorBoard, and one JSON line to the history file."""
  rows = [("depth", probs["depth"], space.depth_choices),
          ("hidden", probs["hidden"], space.hidden_choices)]
  rows += [(f"layer{i}_heads", row, space.head_choices) for i, row in enumerate(probs["heads"])]
  rows += [(f"layer{i}_ffn", row, space.ffn_choices) for i, row in enumerate(probs["ffn"])]
  for name, row, choices in rows:
    for choice, p in zip(choices, row):
      writer.add_scalar(f"arch/{name}/{choice}", float(p), step)
  with history.open("a") as f:
    f.write(json.dumps({"step": step, **{k: v.tolist() for k, v in probs.items()}}) + "\n")


def _truncate_history(history: pathlib.Path, last_step: int) -> None:
  """Drops lines logged after the checkpoint we resume from (they will be logged again)."""
  if history.exists():
    lines = [line for line in history.read_text().splitlines()
             if json.loads(line)["step"] <= last_step]
    history.write_text("".join(line + "\n" for line in lines))


# Config keys that locate inputs the run manifest hashes instead (a moved file is the same input).
_INPUT_PATHS = ("data.glue_dir", "teacher", "latency.table", "search.supernet_from")
# What a supernet trained by another search must share with this one to be reused as it is;
# a differentiable one also its architecture distribution's settings.
_SUPERNET_KEYS = ("seed", "compute_dtype", "space", "data", "optim", "distill",
                  "search.importance_batches")
_DISTRIBUTION_KEYS = ("latency", "arch_optim", "search.relaxation", "search.tau_start",
                      "search.tau_end", "search.second_order", "search.arch_warmup_fraction")
_DEPLOYMENT_KEYS = ("latency.deploy_targets_ms",)  # Read after the search: free to differ.
SELECTIONS = ("discretize", "held_out_loss")


def check_method(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError for an unknown method, or a supernet to reuse that does not fit."""
  if config.search.method not in METHODS:
    raise ValueError(f"Unknown --config.search.method={config.search.method!r}; expected one of "
                     f"{METHODS}.")
  if config.search.selection not in SELECTIONS:
    raise ValueError(f"Unknown --config.search.selection={config.search.selection!r}; expected "
                     f"one of {SELECTIONS}.")
  source = config.search.supernet_from
  if not source:
    return
  differentiable = config.search.method == "differentiable"
  arch_file = pathlib.Path(source) / ARCH_FILE
  if not arch_file.exists():
    raise ValueError(f"--config.search.supernet_from={source}: no {ARCH_FILE} there; it must "
                     "be a finished search.")
  recorded = ml_collections.ConfigDict(json.loads(arch_file.read_text())["config"])
  if (recorded.search.method == "differentiable") != differentiable:
    raise ValueError(
        f"--config.search.supernet_from={source} was searched with method "
        f"{recorded.search.method!r}; method {config.search.method!r} reuses "
        + ("a differentiable search's supernet." if differentiable else
           "a supernet trained with sampled subnets (evolution or random)."))
  keys = _SUPERNET_KEYS + (_DISTRIBUTION_KEYS if differentiable else ())
  mine = workdirs.config_fields(config, exclude=_INPUT_PATHS)
  theirs = workdirs.config_fields(recorded, exclude=_INPUT_PATHS)
  differ = sorted(key for key in set(mine) | set(theirs)
                  if any(key == k or key.startswith(k + ".") for k in keys)
                  and key not in _DEPLOYMENT_KEYS and mine.get(key) != theirs.get(key))
  if differ:
    raise ValueError(f"--config.search.supernet_from={source} was trained with other values of "
                     + ", ".join(f"{k} ({theirs.get(k)} there, {mine.get(k)} here)"
                                 for k in differ) + "; use the same values.")
  if (checkpoint.resolve_model_dir(recorded.teacher)
      != checkpoint.resolve_model_dir(config.teacher)):
    raise ValueError(f"--config.search.supernet_from={source} started from the teacher "
                     f"{recorded.teacher}, not {config.teacher}.")


def search(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Runs (or resumes) the search and writes arch.json and the subnet; returns arch.json.

  A finished search (arch.json present) of the same config and inputs is returned as it is.

  Raises:
    models.workdirs.WorkdirMismatchError: `workdir` holds a search of another config (another
      target, relaxation, learning rate, ...) or other inputs (teacher, table, data).
    models.workdirs.WorkdirBusyError: another job is using `workdir`.
  """
  with workdirs.locked(workdir):
    return _search(config, pathlib.Path(workdir))


def _search(config: ml_collections.ConfigDict, workdir_path: pathlib.Path) -> dict[str, Any]:
  if not config.teacher:
    raise ValueError("--config.teacher is required: a model fine-tuned on the task by "
                     "darts.train (its WORKDIR/model).")
  if not config.latency.table:
    raise ValueError("--config.latency.table is required; build one with `python -m "
                     "latency_loss.build_table --config=configs/cost_table.py:space="
                     f"{config.space} --workdir=DIR`.")
  check_method(config)
  teacher_dir = checkpoint.resolve_model_dir(config.teacher)
  task = glue.get_task(config.data.task)
  model = teacher.load_teacher(str(teacher_dir), task.name, task.num_labels)  # Checks its task.
  space = search_space_for(config)
  table = load_cost_table(config.latency, space)  # Checks the runtime, space and target.
  table_arrays = table_lib.table_arrays(table, space)  # numpy: static shapes under jit
  read = functools.cache(lambda: read_search_examples(config.data, config.seed))
  loop.claim_workdir(
      workdir_path, "search", config, _INPUT_PATHS,
      {"teacher": lambda: checkpoint.checkpoint_sha256(teacher_dir),
       "table": lambda: files.file_sha256(config.latency.table),
       **{f"data.{split}": lambda split=split: glue.examples_sha256(read()[1][split])
          for split in ("train", "held_out", "eval")},
       **({"supernet_from": lambda: files.file_sha256(
           pathlib.Path(config.search.supernet_from) / ARCH_FILE)}
          if config.search.supernet_from else {})},
      outputs=(ARCH_FILE, SUBNET_DIR))
  _, examples = read()
  if (workdir_path / ARCH_FILE).exists():
    logging.info("%s exists: the search in %s is complete.", ARCH_FILE, workdir_path)
    return json.loads((workdir_path / ARCH_FILE).read_text())
  supernet.check_base_model(model.bert.config, space)
  tokenizer = WordPieceTokenizer.from_pretrained(teacher_dir)
  data = encode_search_data(task, examples, tokenizer, config.data.max_length)
  mesh = sharding.make_mesh()
  replicated = sharding.replicated(mesh)
  graphdef, params = nnx.split(model, nnx.Param)
  params = jax.device_put(params, replicated)

  buckets = tuple(config.data.bucket_lengths)
  if config.distill.weight:
    predict = inference.make_predict(graphdef, mesh)
    for name, part in (("train", data.train), ("held-out", data.held_out)):
      part.extras["teacher_logits"] = inference.dataset_logits(
          predict, params, part, config.data.eval_batch_size, buckets, mesh,
          what=f"Teacher logits ({len(part)} {name} examples)")

  steps_per_epoch = batching.num_batches_per_epoch(data.train, config.data.batch_size, buckets)
  total_steps = (config.optim.num_train_steps
                 or max(1, round(config.optim.num_epochs * steps_per_epoch)))
  warmup_steps = int(config.search.arch_warmup_fraction * total_steps)
  weight_tx, schedule = finetune.make_optimizer(config.optim, total_steps)
  arch_tx = make_arch_optimizer(config.arch_optim)
  logits = relaxation.init_logits(space)
  manager = checkpoints.checkpoint_manager(workdir_path, config.keep_checkpoints)
  source = manager
  if config.search.supernet_from and manager.latest_step() is None:
    source = checkpoints.checkpoint_manager(pathlib.Path(config.search.supernet_from),
                                            config.keep_checkpoints)
    logging.info("Reusing the supernet trained in %s.", config.search.supernet_from)
  if source.latest_step() is None:
    importance = unit_importance(graphdef, params, space, data.train, config, mesh)
    supernet.reorder_units(model, np.argsort(-importance["heads"], axis=1, kind="stable"),
                           np.argsort(-importance["ffn"], axis=1, kind="stable"))
    params = jax.device_put(nnx.state(model, nnx.Param), replicated)
    logging.info("Reordered heads and FFN units by importance (%d batches).",
                 config.search.importance_batches)
  state = jax.device_put(bilevel_step.SearchState(
      jnp.zeros((), jnp.int32), params, weight_tx.init(params), logits, arch_tx.init(logits)),
                         replicated)
  state = checkpoints.restore_latest(source, state)
  start_step = int(state.step)

  differentiable = config.search.method == "differentiable"
  settings = bilevel_step.SearchSettings(
      # Zero logits, never updated, under the one-hot straight-through relaxation: every weight
      # step trains one subnet drawn uniformly (the sampled methods' supernet training).
      relaxation=config.search.relaxation if differentiable else "hard",
      tau_start=config.search.tau_start, tau_end=config.search.tau_end, anneal_steps=total_steps,
      second_order=config.search.second_order, unroll_lr=config.optim.lr,
      distill_weight=config.distill.weight, distill_temperature=config.distill.temperature,
      penalty=config.latency.penalty, target_ms=config.latency.target_ms,
      penalty_weight=config.latency.penalty_weight, fbnet_beta=config.latency.fbnet_beta,
      compute_dtype=config.compute_dtype)
  steps = {update: jax.jit(bilevel_step.make_search_step(graphdef, space, weight_tx, arch_tx,
                                                        table_arrays, settings, update),
                           donate_argnums=0, out_shardings=(replicated, replicated),
                           in_shardings=(replicated, sharding.batch_sharded(mesh), replicated))
           for update in ((False, True) if differentiable else (False,))}

  if differentiable:
    logging.info("Searching %s on %s: %d train / %d held-out examples, %d steps (%d weight-only "
                 "warm-up), target %.2f ms (%s penalty).", space.name, data.task.name,
                 len(data.train), len(data.held_out), total_steps, warmup_steps,
                 config.latency.target_ms, config.latency.penalty)
  else:
    logging.info("Training the %s supernet on %s with uniformly sampled subnets: %d train "
                 "examples, %d steps; then %s search on %d held-out examples.", space.name,
                 data.task.name, len(data.train), total_steps, config.search.method,
                 len(data.held_out))
  writer = tensorboardX.SummaryWriter(str(workdir_path / "tensorboard"))
  history = workdir_path / HISTORY_FILE
  _truncate_history(history, start_step)
  train_batches = batching.iterate_batches(data.train, config.data.batch_size, buckets,
                                           config.seed, start_step=start_step)
  held_out_batches = batching.iterate_batches(data.held_out, config.data.batch_size, buckets,
                                              config.seed + 1, start_step=start_step)
  base_key = jax.random.key(config.seed)

  def step_fn(state: bilevel_step.SearchState, step: int):
    batch = {"train": next(train_batches)[1]}
    if differentiable:  # Only architecture updates read held-out batches.
      batch["held_out"] = next(held_out_batches)[1]
    state, step_metrics = steps[differentiable and step > warmup_steps](
        state, {k: sharding.shard_batch(v, mesh) for k, v in batch.items()},
        jax.random.fold_in(base_key, step))
    return state, step_metrics, float(batch["train"]["weights"].sum())

  def log_history(step: int, state: bilevel_step.SearchState) -> None:
    log_probabilities(writer, history, relaxation.softmax_probs(state.arch_logits), space, step)

  state, progress_log = loop.run(
      state, step_fn, start_step=start_step, total_steps=total_steps,
      cadence=loop.Cadence(config.log_every_steps, config.checkpoint_every_steps),
      manager=manager, writer=writer, schedule=schedule,
      periodic=[loop.Periodic(config.history_every_steps, log_history)] if differentiable else [],
      nan_hint="lower --config.optim.lr or --config.arch_optim.lr")
  writer.close()
  nnx.update(model, jax.device_get(state.params))
  return finish(config, workdir_path, model, tokenizer, space, table, data,
                relaxation.softmax_probs(state.arch_logits), total_steps, mesh,
                train_seconds=progress_log.train_time)


Selector = Callable[[float], tuple[search_space.Arch, dict[str, Any]]]


def make_fitness(model, space: search_space.SearchSpace, dataset: batching.EncodedDataset,
                 config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh,
                 cache_file: pathlib.Path) -> Callable[[search_space.Arch], float]:
  """The held-out loss of a subnet sliced from the supernet (one-hot probabilities: exactly the
  extracted subnet), no retraining. Losses are cached in `cache_file`, so a killed selection
  replays its (seeded) choices without evaluating anything twice."""
  graphdef, params = nnx.split(model, nnx.Param)
  params = jax.device_put(params, sharding.replicated(mesh))

  def batch_loss(params, probs, batch):
    logits = supernet.supernet_logits(nnx.merge(graphdef, params), space, probs,
                                      batch["input_ids"], batch["attention_mask"],
                                      batch["token_type_ids"])
    loss, _ = losses.model_loss(logits, batch, config.distill.weight, config.distill.temperature)
    return loss * jnp.sum(batch["weights"]), jnp.sum(batch["weights"])

  loss_fn = jax.jit(batch_loss)
  batches = [sharding.shard_batch(batch, mesh) for _, batch in batching.eval_batches(
      dataset, config.data.eval_batch_size, tuple(config.data.bucket_lengths))]
  cache = {}
  if cache_file.exists():
    for line in cache_file.read_text().splitlines():
      record = json.loads(line)
      cache[search_space.Arch(**record["arch"])] = record["loss"]

  def fitness(arch: search_space.Arch) -> float:
    if arch not in cache:
      probs = {k: jnp.asarray(v) for k, v in search_space.one_hot_probs(arch, space).items()}
      total, weight = np.sum([np.asarray(loss_fn(params, probs, b)) for b in batches], axis=0)
      cache[arch] = float(total / weight)
      with cache_file.open("a") as f:
        f.write(json.dumps({"arch": dataclasses.asdict(arch), "loss": cache[arch]}) + "\n")
    return cache[arch]

  return fitness


def make_selector(config: ml_collections.ConfigDict, workdir: pathlib.Path, model,
                  space: search_space.SearchSpace, table: table_lib.CostTable, data: SearchData,
                  probs: dict[str, np.ndarray], mesh: jax.sharding.Mesh) -> Selector:
  """target_ms -> (arch, how it was chosen), by the configured method and selection."""
  margin = config.latency.margin
  method = config.search.method

  def discretized(target_ms: float):
    arch, steps = discretize.discretize(probs, space, table.predict_ms, target_ms,
                                        margin=margin, fill=config.latency.fill_budget)
    for line in steps:
      logging.info("Discretization (%.2f ms): %s", target_ms, line)
    most_probable = discretize.most_probable_arch(probs, space)
    return arch, {"discretization_steps": steps,
                  "most_probable_arch": dataclasses.asdict(most_probable),
                  "most_probable_predicted_ms": table.predict_ms(most_probable),
                  "probabilities": {k: v.tolist() for k, v in probs.items()}}

  if method == "differentiable" and config.search.selection == "discretize":
    return discretized

  settings = config.search.evolution
  held_out = batching.head(data.held_out, settings.eval_examples)
  fitness = make_fitness(model, space, held_out, config, mesh, workdir / FITNESS_FILE)
  evolution_settings = evolution.EvolutionSettings(
      num_evaluations=settings.num_evaluations, population=settings.population,
      parents=settings.parents, mutation_share=settings.mutation_share,
      mutation_prob=settings.mutation_prob)

  def selected(target_ms: float):
    budget_ms = target_ms * (1.0 - margin)
    start = time.perf_counter()
    name = "held-out selection" if method == "differentiable" else f"{method} search"
    counter = progress.Counter(settings.num_evaluations,
                               f"{name} at {target_ms:.2f} ms (distinct subnets evaluated)")
    losses: dict[search_space.Arch, float] = {}

    def counted(arch: search_space.Arch) -> float:  # Progress: a budget takes minutes.
      losses[arch] = fitness(arch)
      counter.update(len(losses), f"best held-out loss {min(losses.values()):.4f}")
      return losses[arch]

    info = {}
    if method == "differentiable":  # Evolution from the search's discretized arch and its
      start_arch, info = discretized(target_ms)  # distribution, on its own supernet.
      best, records = evolution.evolve(
          counted, space, table.predict_ms, budget_ms, evolution_settings, config.seed,
          initial=(start_arch,), sample=functools.partial(discretize.sample_arch, probs, space))
      info.update(discretized_arch=dataclasses.asdict(start_arch),
                  discretized_held_out_loss=fitness(start_arch))
    elif method == "evolution":
      best, records = evolution.evolve(counted, space, table.predict_ms, budget_ms,
                                       evolution_settings, config.seed)
    else:
      best, records = evolution.random_search(counted, space, table.predict_ms, budget_ms,
                                              settings.num_evaluations, config.seed)
    counter.update(len(losses), f"best held-out loss {best.fitness:.4f}", final=True)
    logging.info("%s at %.2f ms: %d subnets evaluated on %d held-out examples; best loss %.4f "
                 "at %.2f ms predicted.", name, target_ms, len(records), len(held_out),
                 best.fitness, best.predicted_ms)
    return best.arch, {
        **info, "held_out_loss": best.fitness, "fitness_examples": len(held_out),
        "selection_seconds": time.perf_counter() - start,
        "evaluations": [{"arch": dataclasses.asdict(r.arch), "held_out_loss": r.fitness,
                         "predicted_ms": r.predicted_ms, "generation": r.generation}
                        for r in records]}

  return selected


def target_dir(workdir: pathlib.Path, target_ms: float) -> pathlib.Path:
  """Where the arch.json and subnet of an extra target (latency.deploy_targets_ms) go."""
  return workdir / TARGETS_DIR / f"{target_ms:.3f}ms"


def finish(config: ml_collections.ConfigDict, workdir: pathlib.Path, model, tokenizer,
           space: search_space.SearchSpace, table: table_lib.CostTable, data: SearchData,
           probs: dict[str, np.ndarray], total_steps: int, mesh: jax.sharding.Mesh,
           train_seconds: float = 0.0) -> dict[str, Any]:
  """Selects an arch for every target (search once, deploy many), saves and evaluates each
  sliced subnet, and writes the main target's arch.json last."""
  select = make_selector(config, workdir, model, space, table, data, probs, mesh)
  deployments = [{"target_ms": target,
                  "arch_file": str((target_dir(workdir, target) / ARCH_FILE).absolute())}
                 for target in config.latency.deploy_targets_ms]
  for target in config.latency.deploy_targets_ms:
    deploy(config, target_dir(workdir, target), model, tokenizer, space, table, data, target,
           select, total_steps, mesh, {"search_dir": str(workdir.absolute())})
  return deploy(config, workdir, model, tokenizer, space, table, data, config.latency.target_ms,
                select, total_steps, mesh, {"train_seconds_this_run": train_seconds,
                                            "deployments": deployments})


def deploy(config: ml_collections.ConfigDict, directory: pathlib.Path, model, tokenizer,
           space: search_space.SearchSpace, table: table_lib.CostTable, data: SearchData,
           target_ms: float, select: Selector, total_steps: int, mesh: jax.sharding.Mesh,
           extra: dict[str, Any]) -> dict[str, Any]:
  """Selects the arch for `target_ms`, saves its subnet, evaluates it, writes arch.json last."""
  arch, selection = select(target_ms)
  subnet = supernet.extract_subnet(model, space, arch)
  checkpoint.save_pretrained(subnet, directory / SUBNET_DIR,
                             extra_config={teacher.TASK_KEY: data.task.name})
  tokenizer.save_pretrained(directory / SUBNET_DIR)
  graphdef, params = nnx.split(subnet, nnx.Param)
  logits = inference.dataset_logits(inference.make_predict(graphdef, mesh), params, data.eval,
                                    config.data.eval_batch_size,
                                    tuple(config.data.bucket_lengths), mesh)
  summary = {
      "arch": dataclasses.asdict(arch), "predicted_ms": table.predict_ms(arch),
      "target_ms": target_ms, "budget_ms": target_ms * (1.0 - config.latency.margin),
      "method": config.search.method, **selection,
      "base_predicted_ms": table.predict_ms(space.largest_arch()),
      "table": str(pathlib.Path(config.latency.table).absolute()),
      "table_sha256": files.file_sha256(config.latency.table),
      "runtime": RuntimeSpec.from_config(config.latency).to_dict(),
      "space": json.loads(space.to_json()),
      "task": data.task.name, "teacher": str(checkpoint.resolve_model_dir(config.teacher)),
      "subnet": str((directory / SUBNET_DIR).absolute()), "search_steps": total_steps,
      "subnet_metrics_before_retraining": finetune.evaluate(logits, data.task, data.eval),
      **extra, "config": config.to_dict(),
  }
  files.write_json_atomically(directory / ARCH_FILE, summary)
  logging.info("%s arch %s: %.2f ms predicted (target %.2f ms); written to %s.",
               config.search.method, arch.to_json(), summary["predicted_ms"], target_ms,
               directory / ARCH_FILE)
  return json.loads((directory / ARCH_FILE).read_text())  # What later jobs will read.
