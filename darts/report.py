"""The pipeline's report: report.md and its figures, from the files the stages left in WORKDIR.

Every section is drawn from measured outputs (target.json, the teacher's and the retrained
model's eval.json, search/arch.json and its probability history, export/export_report.json,
latency.json); a section whose inputs are missing says so instead of being left out silently.
"""

from __future__ import annotations

import datetime
import json
import pathlib
from typing import Any, Optional

import numpy as np

from darts import layout as layout_lib
from darts.layout import ACCURACY_FIGURE, ARCH_FIGURE, FIDELITY_FIGURE, PROBABILITIES_FIGURE
from latency_loss import plugins


def _load(path: pathlib.Path) -> Optional[Any]:
  return json.loads(path.read_text()) if path.exists() else None


def _pyplot():
  import matplotlib  # pylint: disable=g-import-not-at-top  # Only the report draws.
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def _save(fig, path: pathlib.Path, dpi: int = 120) -> bool:
  fig.tight_layout()
  fig.savefig(path, dpi=dpi)
  _pyplot().close(fig)
  return True


def gather(layout: layout_lib.Layout, teacher_model: pathlib.Path,
           baselines: str = "") -> dict[str, Any]:
  """Everything the report shows, read from the workdir (None for what is missing)."""
  history_path = layout.history_file
  return {
      "target": _load(layout.target_file),
      "teacher_eval": _load(layout_lib.eval_file(teacher_model)),
      "search": _load(layout.arch_file),
      "history": ([json.loads(line) for line in history_path.read_text().splitlines()]
                  if history_path.exists() else None),
      "retrain_eval": _load(layout.retrain_eval_file),
      "export": _load(layout.export_report_file),
      "latency": _load(layout.latency_file),
      "baselines": _load(pathlib.Path(baselines)) if baselines else None,
  }


def _main_metric(eval_json: Optional[dict]) -> Optional[float]:
  return eval_json["metrics"][eval_json["main_metric"]] if eval_json else None


def table_threads_ms(latency: Optional[dict[str, Any]],
                     precision: str = "fp32") -> Optional[float]:
  """From a latency.json record (stage measure): the exported model's measured latency on the
  table's runtime (its thread count)."""
  if not latency or precision not in latency["models"]:
    return None
  return latency["models"][precision]["latency_ms"].get(str(latency["runtime"]["threads"]))


def paired_base_ms(latency: Optional[dict[str, Any]]) -> Optional[float]:
  """From a latency.json record: the base model's latency on the table's runtime, timed
  interleaved with the exported ones."""
  return latency and latency.get("base_ms", {}).get(str(latency["runtime"]["threads"]))


# ------------------------------------------------------------------------------- figures


def plot_accuracy_latency(facts: dict[str, Any], path: pathlib.Path) -> bool:
  """Dev metric vs measured latency: base, searched (each precision), baselines, target."""
  target, latency = facts["target"], facts["latency"]
  if not (target and latency and facts["teacher_eval"] and facts["retrain_eval"]):
    return False
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(6.5, 4.5))
  threads = str(latency["runtime"]["threads"])
  base_ms = paired_base_ms(facts["latency"]) or target["base_measured_ms"]
  if base_ms is not None:
    ax.scatter([base_ms], [100 * _main_metric(facts["teacher_eval"])],
               marker="s", s=60, color="black", label="base (fine-tuned teacher)", zorder=3)
  for name, point in sorted((facts["baselines"] or {}).items()):
    ax.scatter([point["latency_ms"]], [100 * point["metric"]], marker="^", s=40,
               label=name, zorder=2)
  for precision, model in latency["models"].items():
    metric = model["metrics"][model["main_metric"]]
    if model["latency_ms"][threads] is None:  # A phone table: timed on the phone, not here.
      continue
    ax.scatter([model["latency_ms"][threads]], [100 * metric], s=50 if precision == "fp32" else 25,
               marker="o", label=f"searched, {precision} (LiteRT)", zorder=3)
  ax.axvline(target_ms_now(target, paired_base_ms(latency)), color="gray", ls="--", lw=1,
             label="latency target")
  ax.set(xlabel=f"measured latency, {threads} threads (ms)",
         ylabel=f"dev {facts['retrain_eval']['main_metric']} (%)",
         title=f"{facts['retrain_eval']['task']}: accuracy vs measured latency")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7, loc="best")  # Fixed in a corner, it hid a point (int8_full on host D).
  return _save(fig, path, 120)


def plot_probabilities(facts: dict[str, Any], path: pathlib.Path) -> bool:
  """Depth and hidden-size probabilities, and each layer's expected heads and FFN width."""
  history, search = facts["history"], facts["search"]
  if not (history and search):
    return False
  space = search["space"]
  steps = [row["step"] for row in history]
  plt = _pyplot()
  fig, axes = plt.subplots(2, 2, figsize=(10, 6.5), sharex=True)
  for ax, key, choices in ((axes[0, 0], "depth", space["depth_choices"]),
                           (axes[0, 1], "hidden", space["hidden_choices"])):
    probs = np.array([row[key] for row in history])
    for j, choice in enumerate(choices):
      ax.plot(steps, probs[:, j], label=str(choice))
    ax.set(title=f"P({key})", ylim=(0, 1))
    ax.legend(fontsize=7, ncol=2)
  for ax, key, choices in ((axes[1, 0], "heads", space["head_choices"]),
                           (axes[1, 1], "ffn", space["ffn_choices"])):
    expected = np.array([row[key] for row in history]) @ np.array(choices, float)
    for layer in range(expected.shape[1]):
      ax.plot(steps, expected[:, layer], label=f"layer {layer}")
    ax.set(title=f"expected {key} per layer", xlabel="search step")
    ax.legend(fontsize=7, ncol=2)
  return _save(fig, path, 110)


def plot_fidelity(facts: dict[str, Any], path: pathlib.Path) -> bool:
  """Cost-table prediction vs measured latency: random archs, the base and the searched arch."""
  target, latency = facts["target"], facts["latency"]
  if not latency:
    return False
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(5, 5))
  points = [(r["measured_ms"], r["predicted_ms"]) for r in latency["fidelity"] or []]
  if points:
    ax.scatter(*zip(*points), s=16, color="tab:blue", label="random archs")
  if target and target["base_measured_ms"] is not None:
    ax.scatter([target["base_measured_ms"]], [target["base_predicted_ms"]], marker="s", s=50,
               color="black", label="base")
    points.append((target["base_measured_ms"], target["base_predicted_ms"]))
  searched_ms = table_threads_ms(facts["latency"])
  if searched_ms is not None:
    ax.scatter([searched_ms], [latency["predicted_ms"]], marker="*", s=120, color="tab:red",
               label="searched (exported fp32)")
    points.append((searched_ms, latency["predicted_ms"]))
  if not points:
    plt.close(fig)
    return False
  top = 1.05 * max(max(p) for p in points)
  ax.plot([0, top], [0, top], "k-", lw=0.8)
  ax.fill_between([0, top], [0, 0.9 * top], [0, 1.1 * top], alpha=0.12, label="+-10%")
  ax.set(xlim=(0, top), ylim=(0, top), xlabel="measured (ms)", ylabel="cost table (ms)",
         title="predicted vs measured latency")
  ax.legend(fontsize=7, loc="upper left")
  return _save(fig, path, 120)


def plot_arch(facts: dict[str, Any], path: pathlib.Path) -> bool:
  """The searched arch layer by layer against the base: heads and FFN width kept."""
  search = facts["search"]
  if not search:
    return False
  space, arch = search["space"], search["arch"]
  layers = np.arange(max(space["depth_choices"]))
  plt = _pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(9, 0.5 * len(layers) + 1.8), sharey=True)
  for ax, key, base in ((axes[0], "heads", max(space["head_choices"])),
                        (axes[1], "ffn", max(space["ffn_choices"]))):
    kept = np.zeros(len(layers))
    kept[:arch["num_layers"]] = arch[key]
    ax.barh(layers, [base] * len(layers), color="0.88", label="base")
    ax.barh(layers, kept, color="tab:blue", label="searched")
    for layer in layers:
      ax.text(base * 0.98, layer, "dropped" if layer >= arch["num_layers"] else
              f"{int(kept[layer])}", va="center", ha="right", fontsize=8)
    ax.set(title=f"{'attention heads' if key == 'heads' else 'FFN units'} per layer",
           xlim=(0, base))
  axes[0].set(yticks=layers, yticklabels=[f"layer {i}" for i in layers])
  axes[0].invert_yaxis()
  axes[1].legend(fontsize=7, loc="lower right")
  fig.suptitle(f"hidden size {arch['hidden_size']} (base {max(space['hidden_choices'])}), "
               f"{arch['num_layers']} of {len(layers)} layers")
  return _save(fig, path, 110)


# ------------------------------------------------------------------------------ markdown


def _fmt(value: Optional[float], spec: str = ".2f", suffix: str = "") -> str:
  return "n/a" if value is None else f"{value:{spec}}{suffix}"


# What a target fraction was a fraction of: the table's prediction of the base (target.json's
# "units": "table"), or, in runs made before targets were set in the table's units, its timing.
_BASE_UNITS = {"table": "latency as the cost table predicts it", "measured": "measured latency"}


def target_ms_now(target: dict[str, Any], base_ms_now: Optional[float]) -> float:
  """The latency target in this run's measured ms (the measure stage's), comparable with the
  exported models' timings.

  A target set as a fraction of the base is that fraction of the base timed now, interleaved
  with them. One set in ms is in the table's units (its build's ms, against its reference
  block), which can be far from ms now on another host or speed level (seen: 0.73x): it is
  scaled by the base, measured in both units (by the target stage and now).
  """
  if not base_ms_now:
    return target["target_ms"]
  if not target["target_ms_override"]:
    return target["target_fraction"] * base_ms_now
  return target["target_ms"] * base_ms_now / target["base_measured_ms"]


def _target_verdict(target: dict[str, Any], searched_ms: float,
                    interleaved_base_ms: Optional[float]) -> str:
  """Whether the searched model meets its target, in this run's ms. A target set as a fraction
  of the base is judged on the interleaved ratio, which a drift of the machine's speed does not
  move."""
  goal_ms = target_ms_now(target, interleaved_base_ms)
  if interleaved_base_ms and not target["target_ms_override"]:
    ratio, goal = searched_ms / interleaved_base_ms, target["target_fraction"]
    return (f"{'meets' if ratio <= goal else 'MISSES'} the target: it takes {ratio:.0%} of the "
            f"base's latency (target {goal:.0%}: {goal_ms:.2f} of the base's "
            f"{interleaved_base_ms:.2f} ms, timed together)")
  return (f"{'meets' if searched_ms <= goal_ms else 'MISSES'} the target "
          f"({searched_ms:.2f} ms = {searched_ms / goal_ms:.0%} of {goal_ms:.2f} ms"
          + (", the target in the table's units scaled to now by the base)"
             if interleaved_base_ms else ")"))


def _units_line(target: Optional[dict[str, Any]], base_ms_now: Optional[float]) -> list[str]:
  """Why the measured row and the table's row differ on the base: two units."""
  if not (target and base_ms_now and target.get("units") == "table"):
    return []
  return [f"The cost table's figures (its prediction, the target in ms) are in its own units: "
          f"ms as its build timed them against its reference block. The base measures "
          f"{base_ms_now:.2f} ms now and {target['base_measured_ms']:.2f} in the table's units "
          f"({base_ms_now / target['base_measured_ms']:.2f}x): compare the two rows by ratios."]


def summary_lines(facts: dict[str, Any]) -> list[str]:
  """The report's Result section: base against searched, the target's verdict, the metric."""
  target, search = facts["target"], facts["search"]
  base_metric = _main_metric(facts["teacher_eval"])
  searched_metric = _main_metric(facts["retrain_eval"])
  searched_ms = table_threads_ms(facts["latency"])
  interleaved_base_ms = paired_base_ms(facts["latency"])
  base_ms = interleaved_base_ms or (target and target["base_measured_ms"])
  lines = ["| | base | searched |", "|---|---|---|"]
  if search:
    base_arch, arch = target["base_arch"] if target else None, search["arch"]
    describe = lambda a: (f"{a['num_layers']} layers, hidden {a['hidden_size']}, heads "
                          f"{list(a['heads'])}, FFN {list(a['ffn'])}") if a else "n/a"
    lines.append(f"| architecture | {describe(base_arch)} | {describe(arch)} |")
  lines += [
      f"| measured latency (ms) | {_fmt(base_ms)} | {_fmt(searched_ms)} |",
      f"| cost-table prediction (table units) | {_fmt(target and target['base_predicted_ms'])} | "
      f"{_fmt(facts['latency'] and facts['latency']['predicted_ms'])} |",
      f"| dev metric, JAX (%) | {_fmt(base_metric and 100 * base_metric)} | "
      f"{_fmt(searched_metric and 100 * searched_metric)} |",
  ]
  verdict = []
  if target:
    verdict.append(f"Latency target: {target['target_ms']:.2f} ms"
                   + (" in the table's units" if target.get("units") == "table" else "")
                   + (f" ({100 * target['target_fraction']:.0f}% of the base's "
                      f"{_BASE_UNITS[target.get('units', 'measured')]})"
                      if not target["target_ms_override"] else "") + ".")
  if base_ms and searched_ms:
    how = " (base and searched timed interleaved)" if interleaved_base_ms else ""
    verdict.append(f"Speed-up: {base_ms / searched_ms:.2f}x{how}; the searched model "
                   f"{_target_verdict(target, searched_ms, interleaved_base_ms)}.")
  if base_metric is not None and searched_metric is not None:
    verdict.append(f"Metric change: {100 * (searched_metric - base_metric):+.2f} points.")
  return lines + [""] + verdict + _units_line(target, interleaved_base_ms)


def _export_lines(facts: dict[str, Any]) -> list[str]:
  latency, export = facts["latency"], facts["export"]
  if not (latency and export):
    return ["No exported models measured yet (stages export, measure)."]
  threads = sorted({t for m in latency["models"].values() for t in m["latency_ms"]}, key=int)
  lines = ["| model | size (MB) | " + " | ".join(f"{t} thread(s) (ms)" for t in threads)
           + " | dev metric, LiteRT (%) | vs JAX (points) | delegated share |",
           "|---|---|" + "---|" * len(threads) + "---|---|---|"]
  for precision, m in latency["models"].items():
    metric = m["metrics"][m["main_metric"]]
    lines.append(f"| {m['file']} | {m['bytes'] / 1e6:.1f} | "
                 + " | ".join(_fmt(m["latency_ms"][t]) for t in threads)
                 + f" | {100 * metric:.2f} | {-100 * m['metric_drop']:+.2f} | "
                 f"{100 * m['delegated_share']:.1f}% |")
  lines.append("")
  lines.append(f"Verified on {export['num_examples']} dev examples: fp32 max |TFLite - JAX| "
               f"logit difference {export['results']['fp32']['max_abs_diff']:.2e}.")
  return lines + _compiled_lines(export)


def _compiled_lines(export: dict[str, Any]) -> list[str]:
  """What the compiler plugin took of each precision, and how its compiled model verified."""
  target = export.get("compiled_for")
  if not target or not target["plugin"]:
    return []
  lines = ["", f"Compiled by the {target['plugin']} plugin for {target['soc_model']}"
               + (f" ({target['graph_backend']} graph backend)" if target["graph_backend"] else "")
               + ", and verified through its dispatch library against JAX:"]
  return lines + [f"- {precision}: {plugins.compiled_summary(result['compiled'])}."
                  for precision, result in export["results"].items() if "compiled" in result]


def _conditions_line(conditions: dict[str, Any]) -> str:
  """How the cost table was built: host, scheduling, other load (target.json's record)."""
  contended = conditions["contended_blocks"]
  return (f"Cost table built on {conditions['cpu_model']} in "
          f"{_fmt(conditions['build_seconds'], '.0f', ' s')} of timing, at the "
          f"'{conditions['timing_priority'] or 'normal'}' scheduling level; load average "
          f"{conditions['load_average_at_start']} at its start and "
          f"{conditions['load_average_at_end']} at its end; waited "
          f"{_fmt(conditions['waited_for_quiet_s'], '.0f', ' s')} for a quiet machine; "
          + (f"{len(contended)} blocks kept a measurement made under other load: {contended[:8]}."
             if contended else "no block kept a measurement made under other load."))


def _fidelity_lines(facts: dict[str, Any]) -> list[str]:
  target = facts["target"] or {}
  mismatch = target.get("table_cpu_mismatch")
  lines = [f"Warning, cost table: {mismatch}.", ""] if mismatch else []
  if target.get("table_conditions"):
    lines += [_conditions_line(target["table_conditions"]), ""]
  records = facts["latency"] and facts["latency"]["fidelity"]
  if not records:
    return lines + ["No random-arch check in this run (measure.fidelity_archs=0, a phone's "
                    "table, or the measure stage has not run)."]
  errors = np.array([abs(r["predicted_ms"] / r["measured_ms"] - 1) for r in records])
  return lines + [f"{len(records)} random archs measured now on this machine: mean absolute "
                  f"error {100 * errors.mean():.1f}%, worst {100 * errors.max():.1f}%, "
                  f"{100 * np.mean(errors <= 0.1):.0f}% within 10%."]


def write_report(layout: layout_lib.Layout, teacher_model: pathlib.Path, baselines: str = "") -> pathlib.Path:
  """Writes WORKDIR/report.md and its PNGs; returns the report's path."""
  facts = gather(layout, teacher_model, baselines)
  figures = {
      ACCURACY_FIGURE: ("Accuracy vs measured latency", plot_accuracy_latency),
      ARCH_FIGURE: ("The searched architecture", plot_arch),
      PROBABILITIES_FIGURE: ("Architecture probabilities during the search", plot_probabilities),
      FIDELITY_FIGURE: ("Cost table: predicted vs measured latency", plot_fidelity),
  }
  task = (facts["retrain_eval"] or facts["teacher_eval"] or {}).get("task", "?")
  lines = [f"# canao report: {task}", "",
           f"Written {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}"
           f" from {layout.root.absolute()}.", "", "## Result", "", *summary_lines(facts), "",
           "## Exported models", "", *_export_lines(facts), "",
           "## Latency model", "", *_fidelity_lines(facts), ""]
  for name, (title, draw) in figures.items():
    lines += [f"## {title}", ""]
    lines.append(f"![{title}]({name})" if draw(facts, layout.root / name)
                 else "(not drawn: the stage that produces its data has not run)")
    lines.append("")
  search = facts["search"]
  if search and search.get("discretization_steps"):
    lines += ["## Discretization", "", *[f"- {s}" for s in search["discretization_steps"]], ""]
  path = layout.report_file
  path.write_text("\n".join(lines))
  return path
