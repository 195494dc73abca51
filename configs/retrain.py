"""Retrains a searched architecture with distillation from the search's teacher.

  python -m darts.train --config=configs/retrain.py:arch=runs/search_sst2/arch.json \
      --workdir=runs/retrain_sst2

The arch.json written by darts.search names the task, the sliced subnet (the starting weights)
and the teacher; this config reads them so the command above is all a user types. Arguments:
`arch` (path of arch.json), `runlocal` (a few steps, for tests).
"""

import json
import pathlib

import ml_collections

from configs import common
from configs import finetune


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  args = common.parse_arg(arg, arch="", runlocal=False)
  path = pathlib.Path(args.arch)
  if not path.is_file():
    raise ValueError(f"configs/retrain.py needs arch=PATH of a darts.search arch.json; "
                     f"{path} does not exist.")
  searched = json.loads(path.read_text())
  config = finetune.get_config(f"task={searched['task']}{',runlocal' if args.runlocal else ''}")
  config.model.checkpoint = searched["subnet"]
  config.data.glue_dir = searched["config"]["data"]["glue_dir"]
  config.distill.teacher = searched["teacher"]
  # Mostly the teacher's soft labels: they carry more than the hard labels (TinyBERT, DynaBERT).
  config.distill.weight = 0.9
  config.distill.temperature = 1.0
  return config
