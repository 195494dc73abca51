"""Searches a BERT architecture for a GLUE task under a latency target on a measured runtime.

Needs a fine-tuned teacher (the supernet starts from its weights) and a cost table:

  python -m darts.train --config=configs/finetune.py:task=sst2 --workdir=runs/sst2
  python -m latency_loss.build_table --config=configs/cost_table.py:space=minilm \
      --workdir=runs/table
  python -m darts.search --config=configs/search.py:task=sst2 --workdir=runs/search_sst2 \
      --config.teacher=runs/sst2/model --config.latency.table=runs/table/cost_table.json \
      --config.latency.target_ms=20

Arguments after the colon: `task`, `space` (minilm, bert_base, tiny), `runlocal` (tiny space,
a few steps: needs a teacher of the tiny space's shape; see tests/darts/test_search.py).
"""

import ml_collections

from configs import common, finetune


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  args = common.parse_arg(arg, task="sst2", space="minilm", runlocal=False)
  base = finetune.get_config(f"task={args.task}{',runlocal' if args.runlocal else ''}")
  config = ml_collections.ConfigDict()
  config.seed = 0
  # bfloat16 runs the supernet in bfloat16 (TPU/GPU); weights and architecture logits stay float32.
  config.compute_dtype = "float32"
  config.teacher = ""  # A darts.train WORKDIR/model fine-tuned on the same task.
  config.space = "tiny" if args.runlocal else args.space

  config.data = base.data
  config.data.held_out_fraction = 0.2  # Architecture updates use this disjoint part of train.
  config.data.max_train_examples = 0 if not args.runlocal else 96

  config.optim = base.optim  # Weights: AdamW with warm-up and linear decay.
  config.optim.lr = 3e-5
  config.optim.num_epochs = 1.0

  config.arch_optim = ml_collections.ConfigDict()
  # Adam moves a logit by about lr per step, so lr x architecture steps bounds how far the
  # probabilities can move: 3e-2 over the ~200-500 steps of a CPU search lets them converge
  # (at 1e-2 the per-layer head and FFN choices stayed near uniform).
  config.arch_optim.lr = 3e-2
  config.arch_optim.b1 = 0.9
  config.arch_optim.b2 = 0.999
  config.arch_optim.weight_decay = 5e-4

  config.search = ml_collections.ConfigDict()
  # differentiable (ours) | evolution (HAT) | random: the last two train the supernet with one
  # uniformly sampled subnet per step, then pick subnets by held-out loss under the budget.
  config.search.method = "differentiable"
  # differentiable: how the arch of each target comes out of the search. discretize: the most
  # probable arch, widened to the budget (darts.nas.discretize). held_out_loss: evolution on the
  # search's own supernet by held-out loss (search.evolution settings), its population started
  # from the discretized arch and draws from the learned distribution. (On MRPC the supernet
  # ranked subnets far better than the architecture probabilities: bench/README.md.)
  config.search.selection = "discretize"
  # A finished search WORKDIR whose trained supernet is reused as it is: evolution/random reuse
  # an evolution/random one (same data, optim, distill, seed: one supernet, several methods);
  # differentiable reuses a differentiable one of the same config, to select differently.
  config.search.supernet_from = ""
  config.search.evolution = ml_collections.ConfigDict()
  config.search.evolution.num_evaluations = 200  # The budget: distinct subnets evaluated.
  config.search.evolution.population = 20
  config.search.evolution.parents = 5
  config.search.evolution.mutation_share = 0.5
  config.search.evolution.mutation_prob = 0.3
  config.search.evolution.eval_examples = 512  # Held-out examples per fitness (0: all).
  config.search.relaxation = "gumbel"  # softmax (DARTS) | gumbel (FBNet) | hard (straight-through)
  config.search.tau_start = 5.0  # Gumbel-softmax temperature, annealed exponentially...
  config.search.tau_end = 0.5  # ...to this value at the last step.
  config.search.second_order = False  # True: DARTS's exact second-order architecture gradient.
  config.search.arch_warmup_fraction = 0.2  # Weights alone first, so the supernet adapts.
  config.search.importance_batches = 16  # Batches to rank heads and FFN units before architecture_search.

  config.distill = ml_collections.ConfigDict()
  config.distill.weight = 0.5  # Loss = (1 - w) * task + w * KL(teacher || supernet).
  config.distill.temperature = 1.0

  config.latency = ml_collections.ConfigDict()
  config.latency.table = ""  # A latency_loss.build_table cost table for the space and runtime.
  config.latency.target_ms = 0.0
  # Search once, deploy many: more targets (table ms) for the same search, each discretized
  # (or evolved) from the one result, written to WORKDIR/targets/<ms>ms/{arch.json,subnet}.
  config.latency.deploy_targets_ms = ()
  config.latency.penalty = "hinge"  # hinge (to the target) | proxyless (additive) | fbnet
  config.latency.penalty_weight = 2.0  # lambda (hinge, proxyless) or alpha (fbnet).
  config.latency.fbnet_beta = 0.6
  # Discretization aims at target * (1 - margin): the margin absorbs the table's prediction
  # error (MAPE ~2-3%, worst ~7% here), so the measured latency stays under the target.
  config.latency.margin = 0.05
  config.latency.fill_budget = True  # Widen the discretized arch while it fits the budget.
  config.latency.seq_len = 0  # 0: the space's deployment sequence length.
  # The runtime the table must have been measured on (a mismatch is an error, not a warning).
  config.latency.backend = "tflite"
  config.latency.threads = 2
  config.latency.xnnpack = True
  config.latency.precision = "fp32"
  config.latency.delegate = ""
  config.latency.delegate_options = {}
  config.latency.plugin = ""
  config.latency.graph_backend = ""
  config.latency.soc_model = ""

  config.log_every_steps = base.log_every_steps
  config.history_every_steps = 10  # Architecture probabilities to TensorBoard and the history.
  config.checkpoint_every_steps = base.checkpoint_every_steps
  config.keep_checkpoints = 2
  if args.runlocal:
    config.search.importance_batches = 2
    config.history_every_steps = 2
    config.optim.num_train_steps = 8
    config.search.evolution.update(num_evaluations=8, population=4, parents=2, eval_examples=0)
  return config
