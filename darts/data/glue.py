"""GLUE tasks: registry, readers for the standard GLUE TSV layout, and a Hugging Face loader.

Two sources give the same `Example`s with the same label index convention:

* the TSV directory written by `download_glue_data.py` (`<glue_dir>/SST-2/train.tsv`, ...), read
  by `read_tsv_split`;
* the Hugging Face hub dataset `nyu-mll/glue`, read by `load_hub_split`.

Label ids follow the hub's `ClassLabel` order for every task (e.g. RTE/QNLI entailment=0,
not_entailment=1; MNLI entailment=0, neutral=1, contradiction=2), so a model trained from one
source can be evaluated on the other. `load_split` picks the source.
"""

from __future__ import annotations

import codecs
import dataclasses
import hashlib
import json
import math
import os
import pathlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from absl import logging

# Hub dataset that hosts GLUE (the old short name "glue" redirects to it).
HUB_DATASET = "nyu-mll/glue"
GLUE_DIR_ENV = "GLUE_DIR"

# How to point at local files; repeated in every "not found" message so users need not search.
_HOW_TO_POINT = (
    "Point at a GLUE directory in the standard layout written by download_glue_data.py "
    "(<glue_dir>/SST-2/train.tsv, <glue_dir>/MRPC/dev.tsv, ...) with --config.data.glue_dir=PATH "
    f"or the {GLUE_DIR_ENV} environment variable."
)

# Split names accepted in addition to the canonical "train" / "dev".
_SPLIT_ALIASES = {"validation": "dev", "valid": "dev"}


@dataclasses.dataclass(frozen=True)
class GlueTask:
  """Static description of one GLUE task and of both of its sources.

  Attributes:
    name: registry name, e.g. "sst2".
    dir_name: TSV directory name under the GLUE root, e.g. "SST-2".
    text_columns: 0-based TSV column index of text_a (and text_b for pair tasks).
    label_column: TSV column index of the label; negative counts from the end (MNLI's gold label
      is the last column while train and dev have different column counts).
    label_names: class names in the hub's ClassLabel order (index = label id); None for
      regression (stsb).
    tsv_label_values: label strings as written in the TSV, aligned with `label_names` (so
      `tsv_label_values[i]` maps to id i); None for regression.
    has_header: whether the TSV's first line is a header.
    header_names: expected header names of the text columns followed by the label column; used to
      catch a wrong file early. Empty when there is no header.
    num_columns: expected column count of header-less files; with a header the header's own
      column count is used, since it differs between splits (MNLI train/dev).
    split_files: (split, file name) pairs, e.g. (("train", "train.tsv"), ("dev", "dev.tsv")).
    metric_names: metrics reported by `darts.data.metrics.compute_metrics`; the first one is the main
      metric used for model selection.
    hub_config: config name of the hub dataset, e.g. "sst2".
    hub_text_columns: hub column names of text_a (and text_b).
    hub_splits: (split, hub split name) pairs.
  """

  name: str
  dir_name: str
  text_columns: tuple[int, ...]
  label_column: int
  label_names: tuple[str, ...] | None
  tsv_label_values: tuple[str, ...] | None
  has_header: bool
  header_names: tuple[str, ...]
  num_columns: int | None
  split_files: tuple[tuple[str, str], ...]
  metric_names: tuple[str, ...]
  hub_config: str
  hub_text_columns: tuple[str, ...]
  hub_splits: tuple[tuple[str, str], ...]

  @property
  def is_regression(self) -> bool:
    return self.label_names is None

  @property
  def num_labels(self) -> int:
    """Number of classes; 1 for regression (one output unit)."""
    return 1 if self.label_names is None else len(self.label_names)

  @property
  def is_pair(self) -> bool:
    return len(self.text_columns) == 2

  @property
  def splits(self) -> tuple[str, ...]:
    return tuple(split for split, _ in self.split_files)

  def canonical_split(self, split: str) -> str:
    """Returns the canonical split name ("train"/"dev"), or raises a ValueError."""
    canonical = _SPLIT_ALIASES.get(split, split)
    if canonical not in self.splits:
      raise ValueError(
          f"Unknown split {split!r} for GLUE task {self.name!r}; valid splits: "
          f"{', '.join(self.splits)}. (GLUE test labels are not public, so there is no "
          "labelled test split.)")
    return canonical

  def split_file(self, split: str) -> str:
    return dict(self.split_files)[self.canonical_split(split)]

  def hub_split(self, split: str) -> str:
    return dict(self.hub_splits)[self.canonical_split(split)]


_TRAIN_DEV_FILES = (("train", "train.tsv"), ("dev", "dev.tsv"))
_TRAIN_DEV_HUB = (("train", "train"), ("dev", "validation"))
_BINARY_TSV = ("0", "1")

_MNLI = GlueTask(
    name="mnli", dir_name="MNLI", text_columns=(8, 9), label_column=-1,
    label_names=("entailment", "neutral", "contradiction"),
    tsv_label_values=("entailment", "neutral", "contradiction"), has_header=True,
    header_names=("sentence1", "sentence2", "gold_label"), num_columns=None,
    split_files=(("train", "train.tsv"), ("dev", "dev_matched.tsv")),
    metric_names=("accuracy",), hub_config="mnli",
    hub_text_columns=("premise", "hypothesis"),
    hub_splits=(("train", "train"), ("dev", "validation_matched")))

TASKS: dict[str, GlueTask] = {
    task.name: task for task in (
        GlueTask(
            name="cola", dir_name="CoLA", text_columns=(3,), label_column=1,
            label_names=("unacceptable", "acceptable"), tsv_label_values=_BINARY_TSV,
            has_header=False, header_names=(), num_columns=4, split_files=_TRAIN_DEV_FILES,
            metric_names=("mcc",), hub_config="cola", hub_text_columns=("sentence",),
            hub_splits=_TRAIN_DEV_HUB),
        GlueTask(
            name="sst2", dir_name="SST-2", text_columns=(0,), label_column=1,
            label_names=("negative", "positive"), tsv_label_values=_BINARY_TSV,
            has_header=True, header_names=("sentence", "label"), num_columns=None,
            split_files=_TRAIN_DEV_FILES, metric_names=("accuracy",), hub_config="sst2",
            hub_text_columns=("sentence",), hub_splits=_TRAIN_DEV_HUB),
        GlueTask(
            name="mrpc", dir_name="MRPC", text_columns=(3, 4), label_column=0,
            label_names=("not_equivalent", "equivalent"), tsv_label_values=_BINARY_TSV,
            has_header=True, header_names=("#1 String", "#2 String", "Quality"),
            num_columns=None, split_files=_TRAIN_DEV_FILES,
            metric_names=("f1", "accuracy", "accuracy_f1_mean"), hub_config="mrpc",
            hub_text_columns=("sentence1", "sentence2"), hub_splits=_TRAIN_DEV_HUB),
        GlueTask(
            name="stsb", dir_name="STS-B", text_columns=(7, 8), label_column=-1,
            label_names=None, tsv_label_values=None, has_header=True,
            header_names=("sentence1", "sentence2", "score"), num_columns=None,
            split_files=_TRAIN_DEV_FILES,
            metric_names=("pearson", "spearman", "pearson_spearman_mean"), hub_config="stsb",
            hub_text_columns=("sentence1", "sentence2"), hub_splits=_TRAIN_DEV_HUB),
        GlueTask(
            name="qqp", dir_name="QQP", text_columns=(3, 4), label_column=5,
            label_names=("not_duplicate", "duplicate"), tsv_label_values=_BINARY_TSV,
            has_header=True, header_names=("question1", "question2", "is_duplicate"),
            num_columns=None, split_files=_TRAIN_DEV_FILES,
            metric_names=("f1", "accuracy", "accuracy_f1_mean"), hub_config="qqp",
            hub_text_columns=("question1", "question2"), hub_splits=_TRAIN_DEV_HUB),
        _MNLI,
        # MNLI evaluated on the mismatched dev set; same training data as "mnli".
        dataclasses.replace(
            _MNLI, name="mnli_mm",
            split_files=(("train", "train.tsv"), ("dev", "dev_mismatched.tsv")),
            hub_splits=(("train", "train"), ("dev", "validation_mismatched"))),
        GlueTask(
            name="qnli", dir_name="QNLI", text_columns=(1, 2), label_column=3,
            label_names=("entailment", "not_entailment"),
            tsv_label_values=("entailment", "not_entailment"), has_header=True,
            header_names=("question", "sentence", "label"), num_columns=None,
            split_files=_TRAIN_DEV_FILES, metric_names=("accuracy",), hub_config="qnli",
            hub_text_columns=("question", "sentence"), hub_splits=_TRAIN_DEV_HUB),
        GlueTask(
            name="rte", dir_name="RTE", text_columns=(1, 2), label_column=3,
            label_names=("entailment", "not_entailment"),
            tsv_label_values=("entailment", "not_entailment"), has_header=True,
            header_names=("sentence1", "sentence2", "label"), num_columns=None,
            split_files=_TRAIN_DEV_FILES, metric_names=("accuracy",), hub_config="rte",
            hub_text_columns=("sentence1", "sentence2"), hub_splits=_TRAIN_DEV_HUB),
        # WNLI's TSV writes 0/1 with 1 = entailment, which is also the hub's order.
        GlueTask(
            name="wnli", dir_name="WNLI", text_columns=(1, 2), label_column=3,
            label_names=("not_entailment", "entailment"), tsv_label_values=_BINARY_TSV,
            has_header=True, header_names=("sentence1", "sentence2", "label"), num_columns=None,
            split_files=_TRAIN_DEV_FILES, metric_names=("accuracy",), hub_config="wnli",
            hub_text_columns=("sentence1", "sentence2"), hub_splits=_TRAIN_DEV_HUB),
    )
}

# Spellings people commonly use for the same tasks (directory names, hub config names).
_TASK_ALIASES = {
    "sst-2": "sst2",
    "sts-b": "stsb",
    "mnli_matched": "mnli",
    "mnli-m": "mnli",
    "mnli_mismatched": "mnli_mm",
    "mnli-mm": "mnli_mm",
}


def get_task(name: str | GlueTask) -> GlueTask:
  """Returns the task called `name` (case-insensitive; "SST-2" works too).

  Raises:
    ValueError: for an unknown name; the message lists the valid names.
  """
  if isinstance(name, GlueTask):
    return name
  key = str(name).strip().lower()
  key = _TASK_ALIASES.get(key, key)
  if key not in TASKS:
    raise ValueError(
        f"Unknown GLUE task {name!r}; valid names: {', '.join(sorted(TASKS))}.")
  return TASKS[key]


@dataclasses.dataclass(frozen=True)
class Example:
  """One labelled GLUE example.

  Attributes:
    text_a: first (or only) sentence.
    text_b: second sentence of pair tasks, None for single-sentence tasks.
    label: class id in the hub's ClassLabel order, or a float similarity score (stsb).
  """

  text_a: str
  text_b: str | None
  label: int | float


# ----------------------------------------------------------------------------------------------
# TSV reader
# ----------------------------------------------------------------------------------------------


def _iter_tsv_lines(path: pathlib.Path) -> Iterable[tuple[int, list[str]]]:
  """Yields (1-based line number, fields) for each non-empty line of a GLUE TSV file.

  Lines are split on "\\t" only, never with csv quoting: GLUE text contains raw `"` characters
  (an MRPC dev sentence starts with one), and csv quoting would swallow tabs and newlines.
  Bytes are split on "\\n" only, so a stray "\\r" or U+2028 inside a sentence cannot split a
  row (a "\\r\\n" ending is still handled), and each line is decoded on its own, so an invalid
  byte is reported at its line and column. The BOM that starts MRPC's header is dropped.

  Raises:
    ValueError: a line is not UTF-8 (naming the file, line, column and byte).
  """
  with open(path, "rb") as f:
    for line_number, raw in enumerate(f, start=1):
      if line_number == 1:
        raw = raw.removeprefix(codecs.BOM_UTF8)
      try:
        line = raw.decode("utf-8")
      except UnicodeDecodeError as e:
        raise ValueError(f"{path}:{line_number}: byte {raw[e.start]:#04x} at column "
                         f"{e.start + 1} is not UTF-8; GLUE files are UTF-8 (re-save the file "
                         "as UTF-8).") from None
      line = line.removesuffix("\n").removesuffix("\r")
      if not line:
        # Blank lines (e.g. an extra newline at the end of a hand-edited file) carry no example.
        continue
      yield line_number, line.split("\t")


def _locate_tsv(task: GlueTask, glue_dir: str | os.PathLike[str], split: str) -> pathlib.Path:
  """Returns the TSV path of (task, split), or raises FileNotFoundError saying what is missing."""
  root = pathlib.Path(glue_dir).expanduser()
  if not root.is_dir():
    raise FileNotFoundError(
        f"GLUE directory {str(root)!r} does not exist or is not a directory. {_HOW_TO_POINT}")
  task_dir = root / task.dir_name
  if not task_dir.is_dir():
    present = sorted(p.name for p in root.iterdir() if p.is_dir())
    raise FileNotFoundError(
        f"No {task.dir_name!r} directory for GLUE task {task.name!r}: looked for "
        f"{str(task_dir)!r}; {str(root)!r} contains {present or 'no directories'}. "
        f"{_HOW_TO_POINT}")
  path = task_dir / task.split_file(split)
  if not path.is_file():
    present = sorted(p.name for p in task_dir.iterdir())
    raise FileNotFoundError(
        f"No {split!r} file for GLUE task {task.name!r}: looked for {str(path)!r}; "
        f"{str(task_dir)!r} contains {present or 'nothing'}. {_HOW_TO_POINT}")
  return path


def _parse_label(task: GlueTask, raw: str) -> int | float:
  """Parses a TSV label string; raises ValueError (without location) when it is invalid."""
  if task.tsv_label_values is None:
    try:
      score = float(raw)
    except ValueError:
      raise ValueError(f"unparsable similarity score {raw!r}") from None
    if not math.isfinite(score) or not 0.0 <= score <= 5.0:
      raise ValueError(f"similarity score {raw!r} is outside [0, 5]")
    return score
  try:
    return task.tsv_label_values.index(raw)
  except ValueError:
    raise ValueError(
        f"unknown label {raw!r} (expected one of {list(task.tsv_label_values)})") from None


def read_tsv_split(task: str | GlueTask,
                   glue_dir: str | os.PathLike[str],
                   split: str,
                   *,
                   skip_malformed: bool = False) -> list[Example]:
  """Reads one split of a task from the standard GLUE TSV directory.

  Args:
    task: task name or `GlueTask`.
    glue_dir: GLUE root directory containing e.g. `SST-2/train.tsv`.
    split: "train" or "dev" ("validation" is accepted for "dev").
    skip_malformed: if True, malformed rows are logged and skipped instead of raising. Off by
      default: the published files have none, so a malformed row means a damaged file.

  Returns:
    The examples in file order.

  Raises:
    FileNotFoundError: the directory or file does not exist (the message says where it looked).
    ValueError: a malformed header or row; the message names the file, the 1-based line number
      and the problem.
  """
  task = get_task(task)
  path = _locate_tsv(task, glue_dir, split)
  lines = iter(_iter_tsv_lines(path))

  num_columns = task.num_columns
  if task.has_header:
    try:
      line_number, header = next(lines)
    except StopIteration:
      raise ValueError(f"{path}: the file is empty; expected a header line.") from None
    used = [*task.text_columns, task.label_column]
    found = tuple(header[c] if -len(header) <= c < len(header) else None for c in used)
    if found != task.header_names:
      # A different layout (e.g. an unlabelled test.tsv renamed to dev.tsv) would otherwise be
      # parsed into garbage without any error.
      raise ValueError(
          f"{path}:{line_number}: unexpected header for GLUE task {task.name!r}: columns {used} "
          f"are {list(found)}, expected {list(task.header_names)} (full header: {header}).")
    num_columns = len(header)

  examples: list[Example] = []
  skipped: list[str] = []
  for line_number, fields in lines:
    try:
      if len(fields) != num_columns:
        raise ValueError(f"expected {num_columns} tab-separated columns, found {len(fields)}")
      label = _parse_label(task, fields[task.label_column])
    except ValueError as err:
      message = f"{path}:{line_number}: malformed row for GLUE task {task.name!r}: {err}."
      if not skip_malformed:
        raise ValueError(message) from None
      skipped.append(message)
      continue
    text_b = fields[task.text_columns[1]] if task.is_pair else None
    examples.append(Example(text_a=fields[task.text_columns[0]], text_b=text_b, label=label))

  if skipped:
    logging.warning("Skipped %d malformed rows of %s; first ones: %s", len(skipped), path,
                    " | ".join(skipped[:5]))
  return examples


# ----------------------------------------------------------------------------------------------
# Hugging Face hub
# ----------------------------------------------------------------------------------------------


def examples_from_hub_rows(task: str | GlueTask,
                           rows: Iterable[Mapping[str, Any]],
                           source: str = "hub rows") -> list[Example]:
  """Converts rows of the hub dataset (dicts with the hub's column names) to `Example`s.

  Args:
    task: task name or `GlueTask`.
    rows: any iterable of dict rows, e.g. a `datasets.Dataset`. If it has `.features` with a
      `ClassLabel` label, its class names are checked against `task.label_names`.
    source: description used in error messages.

  Returns:
    The examples in row order.

  Raises:
    ValueError: a missing column, a hidden test label (-1), an out-of-range label, or hub class
      names in a different order than ours.
  """
  task = get_task(task)
  features = getattr(rows, "features", None)
  if features is not None and "label" in features:
    names = getattr(features["label"], "names", None)
    expected = None if task.label_names is None else list(task.label_names)
    if names is not None and list(names) != expected:
      # Guards the label index convention: TSV ids are defined by task.label_names.
      raise ValueError(
          f"{source}: hub label names {list(names)} differ from the label order of GLUE task "
          f"{task.name!r} {expected}; label ids would not match the TSV convention.")

  examples: list[Example] = []
  for i, row in enumerate(rows):
    try:
      texts = [row[c] for c in task.hub_text_columns]
      label = row["label"]
    except KeyError as err:
      raise ValueError(
          f"{source}: row {i} has no column {err.args[0]!r} (columns: {sorted(row)}); GLUE task "
          f"{task.name!r} needs {[*task.hub_text_columns, 'label']}.") from None
    if task.is_regression:
      label = float(label)
      if not math.isfinite(label) or label < 0.0:
        # The hub writes -1 for the hidden test labels; real scores are in [0, 5].
        raise ValueError(
            f"{source}: row {i} has label {label}: the labels of this split are hidden (GLUE "
            "test sets are unlabelled); use the train or dev split.")
    else:
      label = int(label)
      if label == -1:
        raise ValueError(
            f"{source}: row {i} has label -1: the labels of this split are hidden (GLUE test "
            "sets are unlabelled); use the train or dev split.")
      if not 0 <= label < task.num_labels:
        raise ValueError(
            f"{source}: row {i} has label {label}, outside [0, {task.num_labels}) for GLUE task "
            f"{task.name!r}.")
    examples.append(Example(text_a=texts[0], text_b=texts[1] if task.is_pair else None,
                            label=label))
  return examples


def load_hub_split(task: str | GlueTask, split: str) -> list[Example]:
  """Loads one split of a task from the Hugging Face hub dataset `nyu-mll/glue`.

  Args:
    task: task name or `GlueTask`.
    split: "train" or "dev" ("validation" is accepted for "dev").

  Returns:
    The examples in the hub's order.

  Raises:
    RuntimeError: the hub could not be reached or read (e.g. no network); the message says how
      to use local GLUE files instead.
    ValueError: unknown split, or rows that cannot be converted (see `examples_from_hub_rows`).
  """
  task = get_task(task)
  hub_split = task.hub_split(split)
  try:
    import datasets  # pylint: disable=g-import-not-at-top  # Heavy; only needed here.
    dataset = datasets.load_dataset(HUB_DATASET, task.hub_config, split=hub_split)
  except Exception as err:  # pylint: disable=broad-except  # Any failure means "unavailable".
    raise RuntimeError(
        f"Could not load GLUE task {task.name!r} split {hub_split!r} from the Hugging Face hub "
        f"({HUB_DATASET}, config {task.hub_config!r}): {type(err).__name__}: {err}. "
        f"Without network access use local files: {_HOW_TO_POINT}") from err
  return examples_from_hub_rows(
      task, dataset, source=f"{HUB_DATASET}/{task.hub_config}[{hub_split}]")


def examples_sha256(examples: Sequence[Example]) -> str:
  """A hash of the examples' texts and labels: the identity of a job's data, wherever it was
  read from (a moved directory or the Hub's copy of the same split hash the same)."""
  digest = hashlib.sha256()
  for example in examples:
    digest.update(json.dumps([example.text_a, example.text_b, example.label]).encode())
  return digest.hexdigest()


def load_split(task_name: str,
               split: str,
               glue_dir: str | os.PathLike[str] | None = None,
               *,
               skip_malformed: bool = False) -> list[Example]:
  """Loads a split from local GLUE TSVs if configured, else from the Hugging Face hub.

  Args:
    task_name: task name, e.g. "sst2".
    split: "train" or "dev".
    glue_dir: GLUE root directory. When None or "", the `GLUE_DIR` environment variable is used;
      when that is unset too, the hub.
    skip_malformed: passed to `read_tsv_split`.

  Returns:
    The examples.

  Raises:
    FileNotFoundError / ValueError: see `read_tsv_split`.
    RuntimeError: no local directory configured and the hub is unavailable.
  """
  task = get_task(task_name)
  task.canonical_split(split)  # Fail on a bad split before touching disk or network.
  origin = "glue_dir"
  if not glue_dir:
    glue_dir = os.environ.get(GLUE_DIR_ENV) or None
    origin = f"${GLUE_DIR_ENV}"
  if glue_dir:
    examples = read_tsv_split(task, glue_dir, split, skip_malformed=skip_malformed)
    source = f"{pathlib.Path(glue_dir).expanduser() / task.dir_name / task.split_file(split)}"
    source += f" (from {origin})"
  else:
    logging.info("No GLUE directory configured (glue_dir / $%s); trying the Hugging Face hub.",
                 GLUE_DIR_ENV)
    examples = load_hub_split(task, split)
    source = f"hub {HUB_DATASET}/{task.hub_config}[{task.hub_split(split)}]"
  if not examples:
    raise ValueError(f"GLUE {task.name}/{task.canonical_split(split)} has no examples: {source} "
                     "holds none (a header alone, or every row skipped as malformed).")
  logging.info("Loaded GLUE %s/%s: %d examples from %s.", task.name, task.canonical_split(split),
               len(examples), source)
  return examples
