"""Where the main job writes inside its workdir: the one owner of those file names.

The pipeline, the report and bench/ find every output through `Layout`; the jobs inside it name
their own files (`finetune.EVAL_FILE`, `architecture_search.ARCH_FILE`, `exporter.REPORT_FILE`),
which `Layout` composes.
"""

from __future__ import annotations

import dataclasses
import pathlib

from darts.nas import architecture_search
from darts.training import finetune
from export import exporter
from latency_loss import builder

REPORT_FILE = "report.md"
# The report's figures, beside report.md (which links them by these names).
ACCURACY_FIGURE = "accuracy_vs_latency.png"
PROBABILITIES_FIGURE = "arch_probabilities.png"
FIDELITY_FIGURE = "predicted_vs_measured.png"
ARCH_FIGURE = "arch.png"


@dataclasses.dataclass(frozen=True)
class Layout:
  """Where each stage writes inside the pipeline's workdir."""
  root: pathlib.Path

  @property
  def table_dir(self) -> pathlib.Path:
    return self.root / "table"

  @property
  def teacher_dir(self) -> pathlib.Path:
    return self.root / "teacher"

  @property
  def target_file(self) -> pathlib.Path:
    return self.root / "target.json"

  @property
  def search_dir(self) -> pathlib.Path:
    return self.root / "search"

  @property
  def arch_file(self) -> pathlib.Path:
    return self.search_dir / architecture_search.ARCH_FILE

  @property
  def retrain_dir(self) -> pathlib.Path:
    return self.root / "retrain"

  @property
  def export_dir(self) -> pathlib.Path:
    return self.root / exporter.EXPORT_DIR

  @property
  def latency_file(self) -> pathlib.Path:
    return self.root / "latency.json"

  @property
  def table_file(self) -> pathlib.Path:
    return self.table_dir / builder.TABLE_NAME

  @property
  def teacher_model_dir(self) -> pathlib.Path:
    return self.teacher_dir / finetune.MODEL_DIR

  @property
  def subnet_dir(self) -> pathlib.Path:
    return self.search_dir / architecture_search.SUBNET_DIR

  @property
  def history_file(self) -> pathlib.Path:
    return self.search_dir / architecture_search.HISTORY_FILE

  @property
  def retrain_model_dir(self) -> pathlib.Path:
    return self.retrain_dir / finetune.MODEL_DIR

  @property
  def retrain_eval_file(self) -> pathlib.Path:
    return self.retrain_dir / finetune.EVAL_FILE

  @property
  def export_report_file(self) -> pathlib.Path:
    return self.export_dir / exporter.REPORT_FILE

  @property
  def report_file(self) -> pathlib.Path:
    return self.root / REPORT_FILE


def eval_file(model_dir: pathlib.Path) -> pathlib.Path:
  """The eval.json that darts.train wrote beside a trained model (WORKDIR/model)."""
  return model_dir.parent / finetune.EVAL_FILE
