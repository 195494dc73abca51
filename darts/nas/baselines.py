"""What the search must beat: hand-shrunk and random architectures under the same latency budget.

Each family returns architectures of the search space whose cost-table prediction fits a budget,
so that they can be sliced from the same teacher and retrained with the same recipe as the
searched one (bench/search_quality.py).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Callable, Optional

import numpy as np

from darts.training import teacher
from latency_loss.table import CostTable
from models import checkpoint, files, supernet
from models.search_space import Arch, SearchSpace
from models.tokenizer import WordPieceTokenizer

Predict = Callable[[Arch], float]


def layer_dropped(space: SearchSpace, predict_ms: Predict, budget_ms: float) -> Optional[Arch]:
  """The base model's full width with its top layers dropped: the deepest such arch that fits."""
  base = space.largest_arch()
  for depth in reversed(space.depth_choices):
    arch = Arch(depth, base.hidden_size, base.heads[:depth], base.ffn[:depth])
    if predict_ms(arch) <= budget_ms:
      return arch
  return None


def _nearest(choices: tuple[int, ...], value: float) -> int:
  return min(choices, key=lambda c: (abs(c - value), c))


def uniform_width(space: SearchSpace, predict_ms: Predict, budget_ms: float) -> Optional[Arch]:
  """Every layer kept, hidden size, heads and FFN shrunk by one common factor: the widest that
  fits (heads and FFN rounded to the nearest choice of the space)."""
  base = space.largest_arch()
  for hidden in reversed(space.hidden_choices):
    ratio = hidden / base.hidden_size
    heads = _nearest(space.head_choices, ratio * base.heads[0])
    ffn = _nearest(space.ffn_choices, ratio * base.ffn[0])
    n = base.num_layers
    arch = Arch(n, hidden, (heads,) * n, (ffn,) * n)
    if predict_ms(arch) <= budget_ms:
      return arch
  return None


def random_under_budget(space: SearchSpace, predict_ms: Predict, low_ms: float, budget_ms: float,
                        count: int, seed: int, max_draws: int = 200_000) -> list[Arch]:
  """`count` distinct archs drawn uniformly per decision, kept when low_ms <= prediction <=
  budget_ms (the same band the searched arch must land in).

  Raises:
    ValueError: fewer than `count` archs found in `max_draws` draws.
  """
  rng = np.random.default_rng(seed)
  found: list[Arch] = []
  for _ in range(max_draws):
    arch = space.random_arch(rng)
    if arch not in found and low_ms <= predict_ms(arch) <= budget_ms:
      found.append(arch)
      if len(found) == count:
        return found
  raise ValueError(f"Only {len(found)} of {count} random archs of space '{space.name}' fall in "
                   f"[{low_ms:.2f}, {budget_ms:.2f}] ms after {max_draws} draws.")


def slice_teacher(teacher_dir: str, task_name: str, num_labels: int, space: SearchSpace,
                  arch: Arch, out_dir: pathlib.Path) -> pathlib.Path:
  """Saves `arch` sliced from the fine-tuned teacher (first heads, units and layers), with the
  teacher's tokenizer, as a checkpoint darts.train can start from."""
  model = teacher.load_teacher(teacher_dir, task_name, num_labels)
  subnet = supernet.extract_subnet(model, space, arch)
  checkpoint.save_pretrained(subnet, out_dir, extra_config={teacher.TASK_KEY: task_name})
  WordPieceTokenizer.from_pretrained(checkpoint.resolve_model_dir(teacher_dir)).save_pretrained(
      out_dir)
  return out_dir


def prepare(teacher_dir: str, task_name: str, num_labels: int, table: CostTable, arch: Arch,
            target_ms: float, directory: pathlib.Path) -> pathlib.Path:
  """`arch` sliced from the teacher into `directory`/subnet, with the search-shaped arch.json
  that configs/retrain.py reads (written last: its presence means done). Returns arch.json."""
  arch_file = directory / "arch.json"
  if arch_file.exists():
    return arch_file
  subnet = slice_teacher(teacher_dir, task_name, num_labels, table.space, arch,
                         directory / "subnet")
  files.write_json_atomically(arch_file, {
      "arch": dataclasses.asdict(arch), "predicted_ms": table.predict_ms(arch),
      "target_ms": target_ms, "task": task_name,
      "teacher": str(pathlib.Path(teacher_dir).absolute()), "subnet": str(subnet.absolute()),
      "space": json.loads(table.space.to_json()), "config": {"data": {"glue_dir": ""}}})
  return arch_file
