"""The main job: a pretrained BERT and a GLUE task in; a searched, retrained, exported and
verified TFLite model out, with a report. `make demo` runs it on the defaults below.

  python -m darts.pipeline --config=configs/pipeline.py:task=sst2 --workdir=runs/demo
  python -m darts.pipeline --config=configs/pipeline.py --workdir=runs/demo \
      --config.latency.target_fraction=0.3 --config.stages=search,retrain,export,measure,report
  python -m darts.pipeline --config=configs/pipeline.py --workdir=runs/demo_phone \
      --config.latency_table=runs/phone_table/cost_table.json --config.teacher_model=runs/sst2/model
  python -m darts.pipeline --config=configs/pipeline.py --workdir=runs/demo_openvino \
      --config.runtime=openvino --config.precision=int8_full
  python -m darts.pipeline --config=configs/pipeline.py:runlocal --workdir=/tmp/pipeline_local \
      --config.base_checkpoint=PATH_OF_A_TINY_SPACE_BERT

Stages, in order (each is skipped when its output is already in WORKDIR, so a killed run is
restarted with the same command): table, teacher, target, search, retrain, export, measure,
report. Arguments after the colon: `task`, `space` (minilm, bert_base, tiny), `runlocal` (tiny
space, tiny data, a few steps: the smoke test; needs a base checkpoint of the tiny space's shape,
see tests/darts/test_pipeline.py).

The defaults take 26 minutes on 2 CPU cores (`make demo` on a fresh clone, setup included): the
teacher and the retrained model see 24k SST-2 sentences for one epoch, the search 8k. Longer
recipes are in configs/finetune.py and bench/; raise the counts and epochs on accelerators.
"""

import ml_collections

from configs import common, cost_table, export, finetune, search


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  args = common.parse_arg(arg, task="sst2", space="minilm", runlocal=False, runtime="",
                          precision="")
  local = ",runlocal" if args.runlocal else ""
  config = ml_collections.ConfigDict()
  config.stages = "all"  # Or a comma-separated subset of darts.stages.STAGES.
  config.runlocal = args.runlocal
  config.glue_dir = ""  # Every stage's GLUE files. Empty: $GLUE_DIR, else the Hugging Face Hub.
  # The pretrained model the teacher is fine-tuned from: a directory, 'minilm' or a Hub id.
  config.base_checkpoint = "minilm"

  # The runtime and precision the whole job is for (configs/runtimes.py: xnnpack, openvino,
  # ...; fp32, int8, int8_full, ...): they set the table's (config.table) and the export
  # compiles for that runtime. Empty: the table config's (xnnpack, fp32).
  config.runtime = args.runtime
  config.precision = args.precision
  config.latency_table = ""  # An existing cost table (e.g. built on a phone): skips `table`.
  config.table = cost_table.get_config(f"space={'tiny' if args.runlocal else args.space}{local}")

  config.teacher_model = ""  # An existing fine-tuned teacher (WORKDIR/model): skips `teacher`.
  config.teacher = finetune.get_config(f"task={args.task}{local}")

  config.latency = ml_collections.ConfigDict()
  # The search's target, in the cost table's units: this fraction of the table's prediction of the
  # base model, unless target_ms > 0 sets it directly (then in the table's ms too).
  config.latency.target_fraction = 0.5
  config.latency.target_ms = 0.0
  # Beyond this relative gap between the table's prediction of the base and its measurement
  # now (in the table's units), the target stage measures again, then refuses the table: it
  # would not rank architectures right on this host. 0: no check.
  config.latency.table_tolerance = 0.10

  config.search = search.get_config(f"task={args.task},space={args.space}{local}")

  # Overrides of configs/retrain.py (which reads the searched arch.json), same keys.
  config.retrain = ml_collections.ConfigDict()
  config.retrain.data = ml_collections.ConfigDict()
  config.retrain.optim = ml_collections.ConfigDict()

  config.export = export.get_config("runlocal" if args.runlocal else None)

  config.measure = ml_collections.ConfigDict()
  config.measure.threads = (1, 2)  # Thread counts each exported model is timed at.
  config.measure.fidelity_archs = 8  # Random archs measured against the table's prediction.
  config.measure.seed = 0

  # Optional JSON file of extra points for the report's accuracy-latency plot:
  # {name: {"latency_ms": ..., "metric": ...}} (e.g. the baselines of bench/search_quality.py).
  config.report_baselines = ""

  if args.runlocal:
    # The tiny space's blocks take microseconds, so its table is mostly timing noise and can
    # even predict the smallest arch slower than the base: no fixed fraction is reachable in
    # every such table (tests/darts/test_pipeline.py derives one from the table it builds).
    config.latency.target_fraction = 1.2
    config.latency.table_tolerance = 0.0  # A tiny table is timing noise: nothing to check.
    config.measure.fidelity_archs = 3
  else:
    config.teacher.optim.num_epochs = 1.0
    config.teacher.data.max_train_examples = 24000
    config.search.data.max_train_examples = 8000
    config.retrain.data.max_train_examples = 24000
    config.retrain.optim.num_epochs = 1.0
  return config
