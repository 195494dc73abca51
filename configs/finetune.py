"""Fine-tunes a pretrained BERT on a GLUE task (the teacher of the search, and the baseline).

  python -m darts.train --config=configs/finetune.py:task=sst2 --workdir=runs/sst2
  python -m darts.train --config=configs/finetune.py:task=mrpc --workdir=runs/mrpc \
      --config.optim.lr=3e-5 --config.data.glue_dir=/path/to/glue
  python -m darts.train --config=configs/finetune.py:task=sst2,runlocal --workdir=/tmp/sst2_local

Arguments after the colon: `task` (cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, wnli),
`runlocal` (a few steps on a few examples: a smoke test that finishes in seconds).
"""

import ml_collections

from configs import common

# Per-task recipe for MiniLM-sized models: small sets get more epochs. Epochs are what a 2-core
# machine affords for the large sets; on accelerators raise them with --config.optim.num_epochs.
TASK_EPOCHS = {"cola": 5.0, "mrpc": 5.0, "rte": 5.0, "stsb": 5.0, "wnli": 3.0}
DEFAULT_EPOCHS = 3.0


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  args = common.parse_arg(arg, task="sst2", runlocal=False)
  config = ml_collections.ConfigDict()
  config.seed = 0
  # bfloat16 runs the forward/backward pass in bfloat16 (TPU/GPU); parameters stay float32.
  config.compute_dtype = "float32"

  config.model = ml_collections.ConfigDict()
  config.model.checkpoint = "minilm"  # Local directory, 'minilm', or Hugging Face Hub id.
  config.model.hidden_dropout = 0.1
  config.model.attention_dropout = 0.1

  config.data = ml_collections.ConfigDict()
  config.data.task = args.task
  config.data.glue_dir = ""  # Empty: $GLUE_DIR, else the Hugging Face Hub.
  config.data.eval_split = "dev"
  config.data.max_length = 128
  # Sequences are padded to the smallest bucket that holds them: XLA compiles one shape per
  # bucket, and short SST-2 sentences do not pay for 128 tokens.
  config.data.bucket_lengths = (16, 32, 64, 128)
  config.data.batch_size = 32
  config.data.eval_batch_size = 64
  config.data.max_train_examples = 0  # 0 = all; else a fixed random subset (seeded).
  config.data.max_eval_examples = 0

  config.optim = ml_collections.ConfigDict()
  config.optim.lr = 5e-5
  config.optim.warmup_ratio = 0.1
  config.optim.weight_decay = 0.01
  config.optim.b1 = 0.9
  config.optim.b2 = 0.999
  config.optim.eps = 1e-6
  config.optim.clip_norm = 1.0
  config.optim.num_epochs = TASK_EPOCHS.get(args.task, DEFAULT_EPOCHS)
  config.optim.num_train_steps = 0  # > 0 overrides num_epochs.

  # Distillation from a fine-tuned teacher (a darts.train WORKDIR/model); used by retraining.
  config.distill = ml_collections.ConfigDict()
  config.distill.teacher = ""
  config.distill.weight = 0.0  # Loss = (1 - weight) * task + weight * distillation.
  config.distill.temperature = 1.0
  # Layer distillation (TinyBERT/MiniLM style; the teacher runs live on every batch): MSE of
  # hidden states and KL of head-averaged attention maps, student layers mapped uniformly onto
  # the teacher's (darts.training.losses.layer_map). 0: logits only.
  config.distill.hidden_weight = 0.0
  config.distill.attention_weight = 0.0

  config.log_every_steps = 50
  config.eval_every_steps = 0  # 0 = evaluate at the end only.
  config.checkpoint_every_steps = 200
  config.keep_checkpoints = 2

  if args.runlocal:
    config.data.max_length = 32
    config.data.bucket_lengths = (16, 32)
    config.data.batch_size = 8
    config.data.eval_batch_size = 16
    config.data.max_train_examples = 64
    config.data.max_eval_examples = 32
    config.optim.num_train_steps = 6
    config.log_every_steps = 2
    config.eval_every_steps = 4
    config.checkpoint_every_steps = 2
  return config
