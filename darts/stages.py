"""The main job, stage by stage: from a pretrained BERT and a task to a verified phone model.

  table    cost table of the search space on this machine's runtime  WORKDIR/table/
  teacher  the base model fine-tuned on the task                      WORKDIR/teacher/model
  target   table's prediction of the base x target_fraction          WORKDIR/target.json
  search   latency-constrained differentiable search                  WORKDIR/search/arch.json
  retrain  the searched subnet retrained with distillation            WORKDIR/retrain/model
  export   fp32/fp16/int8 TFLite models verified against JAX          WORKDIR/export/
  measure  exported models timed; table predictions checked           WORKDIR/latency.json
  report   report.md and its figures                                  WORKDIR/report.md

The logic of `python -m darts.pipeline`, usable from Python: `run(config, workdir, stages)`. Every stage
reads what earlier stages wrote to WORKDIR, so stages can run alone, and each is skipped when its
output exists: a killed run resumes with the same command (the jobs inside resume from their own
checkpoints).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import pathlib
from typing import Any, Callable, Sequence

import ml_collections
from absl import logging

from configs import cost_table as cost_table_config, retrain as retrain_config
from darts import layout as layout_lib, report
from darts.nas import architecture_search
from darts.training import checkpoints, finetune, loop
from export import exporter
from latency_loss import builder, fidelity, host, table as table_lib
from latency_loss.backends import base as backends
from latency_loss.runtime import RuntimeSpec
from latency_loss.timing import TimingProtocol
from models import files, workdirs
from models.search_space import Arch

STAGES = ("table", "teacher", "target", "search", "retrain", "export", "measure", "report")


def parse_stages(text: str) -> tuple[str, ...]:
  """'all' or a comma-separated subset of STAGES, returned in pipeline order."""
  if text.strip() == "all":
    return STAGES
  asked = [s.strip() for s in text.split(",") if s.strip()]
  unknown = [s for s in asked if s not in STAGES]
  if unknown or not asked:
    raise ValueError(f"config.stages='{text}': unknown stages {unknown}; use 'all' or a "
                     f"comma-separated subset of {', '.join(STAGES)}.")
  return tuple(s for s in STAGES if s in asked)


def _require(path: pathlib.Path, stage: str) -> pathlib.Path:
  if not path.exists():
    raise FileNotFoundError(f"{path} does not exist: run the '{stage}' stage first "
                            f"(--config.stages={stage} or all).")
  return path


def _read_json(path: pathlib.Path, stage: str) -> dict[str, Any]:
  return json.loads(_require(path, stage).read_text())


def with_runtime(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """`config` with its top-level runtime and precision (when set) applied to the table it
  builds; the export then compiles for the table's runtime (`Pipeline.export`)."""
  if not (config.runtime or config.precision):
    return config
  config = copy.deepcopy(config)
  if config.runtime:
    cost_table_config.set_runtime(config.table, config.runtime, config.table.threads,
                                  config.table.xnnpack)
  if config.precision:
    config.table.precision = config.precision
  return config


class Pipeline:
  """The stages of the main job over one workdir; see the module docstring."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str):
    self.config = with_runtime(config)
    self.layout = layout_lib.Layout(pathlib.Path(workdir))
    self.layout.root.mkdir(parents=True, exist_ok=True)

  # ------------------------------------------------------------------------ shared inputs

  @property
  def table_path(self) -> pathlib.Path:
    if self.config.latency_table:
      return pathlib.Path(self.config.latency_table)
    return self.layout.table_file

  def load_table(self) -> table_lib.CostTable:
    return table_lib.load_table(str(_require(self.table_path, "table")))

  @property
  def teacher_model(self) -> pathlib.Path:
    if self.config.teacher_model:
      return pathlib.Path(self.config.teacher_model)
    return self.layout.teacher_model_dir

  def _with_glue_dir(self, config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    config = copy.deepcopy(config)
    if self.config.glue_dir:
      config.data.glue_dir = self.config.glue_dir
    return config

  # ----------------------------------------------------------------- what each stage is

  def stage_fields(self) -> dict[str, dict[str, Any]]:
    """The config values that define each stage's result (its part of the run manifest).

    Left out: the stage list, logging and checkpoint cadence, and glue_dir (the jobs inside
    hash their data).
    """
    c = self.config
    cadence = lambda prefix: tuple(f"{prefix}.{key}" for key in loop.CADENCE_KEYS)
    fields = workdirs.config_fields
    return {
        "table": fields({"table": c.table, "latency_table": c.latency_table}),
        "teacher": fields({"teacher": c.teacher, "base_checkpoint": c.base_checkpoint,
                           "teacher_model": c.teacher_model}, exclude=cadence("teacher")),
        "target": fields({"latency": {"target_fraction": c.latency.target_fraction,
                                      "target_ms": c.latency.target_ms}}),
        "search": fields({"search": c.search}, exclude=cadence("search")),
        "retrain": fields({"retrain": c.retrain, "runlocal": c.runlocal},
                          exclude=cadence("retrain")),
        "export": fields({"export": c.export}),
        "measure": fields({"measure": c.measure}),
        "report": fields({"report_baselines": c.report_baselines}),
    }

  def has_results(self, stage: str) -> bool:
    """Whether `stage` has left results (or checkpoints) in the workdir. The report has none:
    it is always rewritten from the others."""
    layout = self.layout
    return {
        "table": lambda: layout.table_file.exists(),
        "teacher": lambda: (layout_lib.eval_file(layout.teacher_model_dir).exists()
                            or checkpoints.has_checkpoints(layout.teacher_dir)),
        "target": lambda: layout.target_file.exists(),
        "search": lambda: (layout.arch_file.exists()
                           or checkpoints.has_checkpoints(layout.search_dir)),
        "retrain": lambda: (layout.retrain_eval_file.exists()
                            or checkpoints.has_checkpoints(layout.retrain_dir)),
        "export": lambda: layout.export_report_file.exists(),
        "measure": lambda: layout.latency_file.exists(),
        "report": lambda: False,
    }[stage]()

  # ------------------------------------------------------------------------------ stages

  def table(self) -> None:
    """Builds the cost table for this machine, or resumes or reuses one."""
    if self.config.latency_table:
      table = self.load_table()
      logging.info("Using the cost table %s (%s, %s).", self.table_path,
                   table.host.get("cpu_model"), table.runtime.to_dict())
      return
    if self.table_path.exists() and not self.load_table().missing():
      logging.info("Cost table %s is complete.", self.table_path)
      return
    builder.build_table(self.config.table, str(self.layout.table_dir))

  def teacher(self) -> None:
    """Fine-tunes the base checkpoint on the task (the teacher and the accuracy reference)."""
    if self.config.teacher_model:
      logging.info("Using the teacher %s.", _require(self.teacher_model, "teacher"))
      return
    if layout_lib.eval_file(self.layout.teacher_model_dir).exists():
      logging.info("Teacher in %s is trained.", self.layout.teacher_dir)
      return
    config = self._with_glue_dir(self.config.teacher)
    config.model.checkpoint = self.config.base_checkpoint
    finetune.train_and_evaluate(config, str(self.layout.teacher_dir))

  def check_target_table(self) -> None:
    """A target set on one table is not reused with another (a rebuilt or replaced table)."""
    if not (self.layout.target_file.exists() and self.table_path.exists()):
      return
    recorded = json.loads(self.layout.target_file.read_text())["table_sha256"]
    current = files.file_sha256(self.table_path)
    if recorded != current:
      raise workdirs.WorkdirMismatchError(
          f"{self.layout.target_file} holds a target set on another cost table (sha256 "
          f"{recorded[:12]}...) than {self.table_path} (sha256 {current[:12]}...); the search "
          f"and everything after it were made for that target. Use another --workdir, or "
          f"--new_run.")

  def target(self) -> None:
    """Sets the latency target in the table's own units, and checks the table on this host.

    A fraction of the base model's latency is a fraction of the *table's prediction* of the base:
    the search, the discretization budget and the target compare table predictions, so a table
    that is uniformly slower or faster than this host gives the same architecture, and timing
    noise never moves the target. The base is also measured now (interleaved speed-ups and the
    table check use it; a phone's table: not on this host). A target once set is the truth of
    the workdir: it is reused as it is, never re-timed (`run` refuses another fraction).
    """
    self.check_target_table()
    if self.layout.target_file.exists():
      done = json.loads(self.layout.target_file.read_text())
      logging.info("Latency target %.2f ms (%s).", done["target_ms"], self.layout.target_file)
      return
    table = self.load_table()
    wanted = {"target_fraction": self.config.latency.target_fraction,
              "target_ms_override": self.config.latency.target_ms,
              "table_sha256": files.file_sha256(self.table_path)}
    base = table.space.largest_arch()
    base_predicted_ms = table.predict_ms(base)
    base_ms = self.measure_base(table, base, base_predicted_ms)
    target_ms = (self.config.latency.target_ms
                 or self.config.latency.target_fraction * base_predicted_ms)
    record = {**wanted, "target_ms": target_ms, "units": "table",
              "base_arch": dataclasses.asdict(base), "base_measured_ms": base_ms,
              "base_predicted_ms": base_predicted_ms,
              "runtime": table.runtime.to_dict(), "table": str(self.table_path.absolute()),
              "table_conditions": host.build_conditions(table.host),
              "table_cpu_mismatch": None if base_ms is None else host.other_cpu(table.host)}
    if record["table_cpu_mismatch"]:
      logging.warning("Cost table %s: %s; its predictions may not hold on this machine.",
                      self.table_path, record["table_cpu_mismatch"])
    files.write_json_atomically(self.layout.target_file, record)
    logging.info("Base model: %.2f ms predicted by the table, %s ms measured; latency target "
                 "%.2f ms (table units).", base_predicted_ms,
                 "n/a" if base_ms is None else f"{base_ms:.2f}", target_ms)

  def measure_base(self, table: table_lib.CostTable, base: Arch,
                   predicted_ms: float) -> float | None:
    """The base model measured now, in the table's units (against its reference model).

    Beyond `latency.table_tolerance` of the table's prediction, it is measured once more (a
    burst of other load passes), then refused: a table that does not describe this machine
    would rank architectures wrongly here. None for a phone's table (nothing to time here).

    Raises:
      ValueError: the table and this machine disagree; with both numbers and what to do.
    """
    tolerance = self.config.latency.table_tolerance
    measured = [measure_arch_ms(table, base)]
    if measured[0] is None or not tolerance:
      return measured[0]
    while abs(predicted_ms / measured[-1] - 1) > tolerance:
      if len(measured) == 2:
        raise ValueError(
            f"The cost table {self.table_path} predicts {predicted_ms:.2f} ms for the base model, "
            f"but it measures {measured[0]:.2f} and {measured[1]:.2f} ms on this machine in the "
            f"table's units ({100 * (predicted_ms / measured[1] - 1):+.0f}%, beyond "
            f"latency.table_tolerance={tolerance:.0%}): the table does not describe this machine "
            f"({host.other_cpu(table.host) or 'the same CPU, but other load or another runtime'}"
            f"), so its ranking of architectures may not hold here. Build the table on this "
            f"machine (rerun with --new_run, or --config.latency_table=<a table built here>), or "
            f"keep it with --config.latency.table_tolerance=0. Nothing was written.")
      logging.warning("The cost table predicts %.2f ms for the base model, measured %.2f ms "
                      "(%+.0f%%, tolerance %.0f%%); measuring it again.", predicted_ms,
                      measured[-1], 100 * (predicted_ms / measured[-1] - 1), 100 * tolerance)
      measured.append(measure_arch_ms(table, base))
    return measured[-1]

  def search(self) -> None:
    """The latency-constrained search (resumes; skipped once arch.json exists)."""
    target_ms = _read_json(self.layout.target_file, "target")["target_ms"]
    config = self._with_glue_dir(self.config.search)
    config.teacher = str(_require(self.teacher_model, "teacher"))
    runtime = self.load_table().runtime
    config.latency.update(table=str(self.table_path), target_ms=target_ms, **runtime.to_dict())
    architecture_search.search(config, str(self.layout.search_dir))

  def retrain(self) -> None:
    """Retrains the searched subnet with distillation from the teacher (configs/retrain.py)."""
    arch_file = _require(self.layout.arch_file, "search")
    if self.layout.retrain_eval_file.exists():
      logging.info("Retrained model in %s is done.", self.layout.retrain_dir)
      return
    config = retrain_config.get_config(
        f"arch={arch_file}{',runlocal' if self.config.runlocal else ''}")
    config.update(self.config.retrain)
    finetune.train_and_evaluate(config, str(self.layout.retrain_dir))

  def export(self) -> None:
    """Exports the retrained model to TFLite at the table's sequence length, verified."""
    model_dir = _require(self.layout.retrain_model_dir, "retrain")
    if self.layout.export_report_file.exists():
      logging.info("Export in %s is done.", self.layout.export_dir)
      return
    config = self._with_glue_dir(self.config.export)
    config.model_dir = str(model_dir)
    table = self.load_table()
    config.seq_len = table.space.seq_len  # The length the latency target is for.
    if table.runtime.backend == "compiled":  # Compile for, and verify on, the table's runtime.
      config.update(runtime=table.runtime.name, soc_model=table.runtime.soc_model,
                    graph_backend=table.runtime.graph_backend)
    if table.runtime.precision not in exporter.parse_precisions(config.precisions):
      config.precisions += f",{table.runtime.precision}"  # The precision the search was for.
    exporter.export(config, str(self.layout.root))

  def measure(self) -> None:
    """Times every exported model, and checks the table's predictions on random archs."""
    if self.layout.latency_file.exists():
      logging.info("Latencies in %s are measured.", self.layout.latency_file)
      return
    export_report = _read_json(self.layout.export_report_file, "export")
    table = self.load_table()
    models, base_ms = measure_exported(self.layout.export_dir, table,
                                       self.config.measure.threads)
    record = {"models": models, "base_ms": base_ms,
              "fidelity": measure_fidelity(table, self.config.measure.fidelity_archs,
                                           self.config.measure.seed),
              "arch": export_report["arch"], "runtime": table.runtime.to_dict()}
    record["predicted_ms"] = table.predict_ms(Arch.from_json(json.dumps(export_report["arch"])))
    files.write_json_atomically(self.layout.latency_file, record)

  def report(self) -> None:
    """Writes report.md and its figures from everything the other stages left."""
    path = report.write_report(self.layout, self.teacher_model, self.config.report_baselines)
    logging.info("Report: %s", path)


def measure_arch_ms(table: table_lib.CostTable, arch) -> float | None:
  """The measured latency of `arch` (random weights) on the table's runtime, in the table's
  units (against its reference model, when it has one); None when that runtime is not on this
  host (a phone table)."""
  if table.runtime.backend == "android":
    return None
  protocol = TimingProtocol(**table.protocol)
  backend = backends.make_backend(table.space, table.runtime, protocol)
  return backends.measure(backend.arch_call(arch), protocol,
                          backends.table_reference(table.host, backend)).value(protocol.statistic)


def measure_exported(export_dir: pathlib.Path, table: table_lib.CostTable, threads: Sequence[int]
                     ) -> tuple[dict[str, dict[str, Any]], dict[str, float | None]]:
  """Median latency of every exported model, and of the base architecture, at each thread count
  on this host's LiteRT: the table's runtime when it is a LiteRT one (with a compiler plugin,
  the models compiled for it), else the Interpreter with XNNPACK.

  The base (random weights: latency does not depend on them; in the table's precision) and the
  exported models are timed interleaved, so the speed-up holds even when the machine's speed
  drifts between measurements. A phone's table: no host timings (None); time the models on the
  phone with latency_loss/backends/android_benchmark.sh.

  Returns:
    (models: precision -> file, size, latency_ms by thread count, metrics; base latency_ms by
    thread count).
  """
  export_report = json.loads((export_dir / exporter.REPORT_FILE).read_text())
  space = dataclasses.replace(table.space, seq_len=export_report["seq_len"])
  on_host = table.runtime.backend != "android"
  runtime = table.runtime if table.runtime.backend in ("tflite", "compiled") else RuntimeSpec()
  # model_<precision>.tflite, or with a plugin model_<precision>_<runtime>.tflite.
  suffix = f"_{runtime.name}" if runtime.plugin else ""
  paths = {path.stem.removeprefix("model_").removesuffix(suffix): path
           for path in sorted(export_dir.glob(f"model_*{suffix}.tflite"))}
  paths = {precision: path for precision, path in paths.items()
           if precision in export_report["results"]}
  latency = {precision: dict.fromkeys(map(str, threads)) for precision in paths}
  base = dict.fromkeys(map(str, threads))
  if on_host:
    protocol = TimingProtocol(**table.protocol)
    backend = lambda t: backends.make_backend(space, dataclasses.replace(runtime, threads=int(t)),
                                              protocol)
    # Converted and read once; the thread count is a runtime option, not a model property.
    timed = {"base": backend(threads[0]).arch_model(space.largest_arch()),
             **{precision: path.read_bytes() for precision, path in paths.items()}}
    for t in base:
      stats = backend(t).time_models(timed)
      base[t] = stats.pop("base").median_ms
      for precision, s in stats.items():
        latency[precision][t] = s.median_ms
      logging.info("%s threads on %s: base %.2f ms, %s", t, runtime.name, base[t],
                   {precision: round(s.median_ms, 2) for precision, s in stats.items()})
  models = {}
  for precision, path in paths.items():
    result = export_report["results"][precision]
    verified = result["compiled"] if suffix else result
    models[precision] = {"file": path.name, "bytes": path.stat().st_size,
                         "latency_ms": latency[precision], "metrics": verified["metrics"],
                         "main_metric": verified["main_metric"],
                         "metric_drop": verified["metric_drop"],
                         "delegated_share": (1.0 if suffix else result["delegate"]["share"])}
  return models, base


def measure_fidelity(table: table_lib.CostTable, num_archs: int,
                     seed: int) -> list[dict[str, Any]] | None:
  """Predicted vs measured whole-model latency of random archs, now, on this host."""
  if table.runtime.backend == "android" or not num_archs:
    return None
  return fidelity.validate(table, num_archs, seed)["records"]


def run(config: ml_collections.ConfigDict, workdir: str,
        stages: Sequence[str] | None = None) -> layout_lib.Layout:
  """Runs `stages` (default: config.stages) in order; returns where the outputs are.

  Raises:
    models.workdirs.WorkdirMismatchError: a stage with results in `workdir` was run with other
      config values (all are listed), or the target was set on another table; before anything
      is written.
    models.workdirs.WorkdirBusyError: another job is using `workdir`.
  """
  pipeline = Pipeline(config, workdir)
  stages = parse_stages(config.stages) if stages is None else parse_stages(",".join(stages))
  root = pipeline.layout.root
  with workdirs.locked(root):
    fields = pipeline.stage_fields()
    workdirs.check_parts(root, "pipeline", fields, pipeline.has_results)
    pipeline.check_target_table()
    for index, stage in enumerate(stages, 1):
      logging.info("=== Stage %d/%d: %s", index, len(stages), stage)
      workdirs.record_part(root, "pipeline", stage, fields[stage])
      step: Callable[[], None] = getattr(pipeline, stage)
      step()
  return pipeline.layout
