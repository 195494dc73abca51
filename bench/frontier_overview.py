r"""The frontier across GLUE in one table: at each task's targets, the best of ours against the
best of the anchors' methods, and the points lost to the teacher against CoFi's bars.

  python -m bench.frontier_overview --out=bench/results/frontier/overview.md \
      --reports=bench/results/frontier/hostD/sst2.json,\
bench/results/frontier/hostD/sst2_variants/sst2.json,bench/results/frontier/mrpc.json,\
bench/results/frontier/hostD/rte.json,bench/results/frontier/hostD/rte_variants/rte.json,\
bench/results/frontier/hostD/cola.json

A task may take several reports (`bench.frontier --phase=report` files) of one run: ours'
variants run in a second workdir on the same teacher and table, say. They are merged point by
point, and refused unless they agree wherever they meet: the same teacher, table and recipe, and
for a method at a target the same arch and, seed by seed, the same dev scores (a rerun from the
teacher up that reproduces the first). A point keeps the report it has the most seeds in, and
that report's timing; speed-ups are never compared across reports' timings here.
"""

from __future__ import annotations

import collections
import json
import pathlib
import shlex
import sys
from typing import Any, Sequence

from absl import app, flags

from bench import frontier_lib
from bench.frontier_lib import fmt, mean_std

_REPORTS = flags.DEFINE_list("reports", None, "Frontier report JSONs (bench.frontier's "
                             "<task>.json); several of one task are merged.")
_OUT = flags.DEFINE_string("out", "bench/results/frontier/overview.md", "Markdown to write.")

OURS = ("differentiable", *frontier_lib.OURS_VARIANTS)
# What must be equal in every report of one task for their points to be pooled.
_SHARED = ("main_metric", "search_epochs", "retrain_epochs", "search_examples",
           "retrain_examples", "num_evaluations", "eval_examples")


def merge(reports: Sequence[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
  """One task's reports as one: every method's point at every target, each from the report
  with the most seeds of it (named in the point's "source").

  Args:
    reports: (path, report) pairs of one task, in the order their points are preferred when
      they hold as many seeds.

  Raises:
    ValueError: naming both files, when they are of different tasks, teachers, tables,
      targets or recipes, or give one method at one target another arch or another score for
      the same seed.
  """
  (first_path, first), *others = reports
  merged = {**first, "sources": {first_path: frontier_lib.timing_host(first)}, "targets": [
      {**t, "points": {m: {**p, "source": first_path} for m, p in t["points"].items()}}
      for t in first["targets"]]}
  for path, report in others:
    _check_same_run(first_path, first, path, report)
    for target, theirs in zip(merged["targets"], report["targets"]):
      for method, point in theirs["points"].items():
        mine = target["points"].get(method)
        if mine is None:
          target["points"][method] = {**point, "source": path}
          continue
        _check_same_point(mine, point, method, target["speedup_target"], path)
        if len(point["runs"]) > len(mine["runs"]):
          target["points"][method] = {**point, "source": path}
    merged["sources"][path] = frontier_lib.timing_host(report)
  return merged


def _check_same_run(first_path: str, first: dict[str, Any], path: str,
                    report: dict[str, Any]) -> None:
  """Refuses to pool `report` with `first` unless they are of one task, teacher, table and
  recipe (a key either report predates is not compared)."""
  wanted = {"task": (first["task"], report["task"]),
            "teacher metric": (first["teacher"]["metric"], report["teacher"]["metric"]),
            "targets": ([t["fraction"] for t in first["targets"]],
                        [t["fraction"] for t in report["targets"]]),
            **{key: (first.get(key), report.get(key)) for key in (*_SHARED, "table_sha256")}}
  if diff := [f"{key}: {a!r} vs {b!r}" for key, (a, b) in wanted.items()
              if a is not None and b is not None and a != b]:
    raise ValueError(f"{path} is not of the same run as {first_path}, so their points cannot "
                     "be pooled:\n  " + "\n  ".join(diff))


def _check_same_point(mine: dict[str, Any], theirs: dict[str, Any], method: str,
                      speedup: float, path: str) -> None:
  """Refuses two points of one method at one target that disagree on the arch or on a seed."""
  where = f"{method} at {speedup:.0f}x in {path} and {mine['source']}"
  if mine["arch"] != theirs["arch"]:
    raise ValueError(f"{where} have different archs: {theirs['arch']} vs {mine['arch']}.")
  scores = {run["seed"]: run["metrics"] for run in mine["runs"]}
  for run in theirs["runs"]:
    if run["seed"] in scores and scores[run["seed"]] != run["metrics"]:
      raise ValueError(f"{where} give seed {run['seed']} different dev metrics: "
                       f"{run['metrics']} vs {scores[run['seed']]}.")


def row(result: dict[str, Any], index: int) -> dict[str, Any]:
  """The overview of one task at its index-th target: ours searched once (the default) and the
  best of ours' variants, each with the other methods it loses to (outside its std), the best
  other method (by mean), and the best of ours' points below the teacher."""
  target = result["targets"][index]
  points = {m: p for m, p in target["points"].items() if p["mean"] is not None}
  ours = {m: p for m, p in points.items() if m in OURS}
  others = frontier_lib.other_methods(points)
  best_ours = max(ours, key=lambda m: ours[m]["mean"], default=None)
  best_other = max(others, key=lambda m: others[m]["mean"], default=None)
  mine = ours.get(best_ours)
  lost = None if mine is None else result["teacher"]["metric"] - mine["mean"]
  cofi = frontier_lib.COFI_BARS.get(round(target["speedup_target"]))
  return {
      "target": target["speedup_target"], "points": points, "best_ours": best_ours,
      "best_other": best_other, "loses_to": _loses_to(mine, others),
      "search_once_loses_to": _loses_to(points.get("differentiable"), others),
      "gap": None if mine is None or best_other is None
             else mine["mean"] - others[best_other]["mean"],
      "below_teacher": lost, "cofi_bar": cofi,
      "within_cofi_bar": None if lost is None or cofi is None else lost <= cofi}


def _loses_to(mine: dict[str, Any] | None, others: dict[str, Any]) -> list[str] | None:
  """The other methods `mine` does not tie or beat (frontier_lib.ties_or_beats)."""
  if mine is None:
    return None
  return [m for m, p in others.items() if not frontier_lib.ties_or_beats(mine, p)]


def _speedup(point: dict[str, Any] | None) -> str:
  return "" if not point or point.get("speedup") is None else f", {point['speedup']:.2f}x"


def _verdict(loses_to: list[str] | None) -> str:
  if loses_to is None:
    return "n/a"
  return "NO: " + ", ".join(m.replace("_", " ") for m in loses_to) if loses_to else "yes"


def write_overview(results: Sequence[dict[str, Any]], path: pathlib.Path, command: str) -> None:
  """Writes the overview table of the merged task results to `path` (markdown)."""
  lines = [
      "# The frontier across GLUE: the best of ours against the anchors' methods", "",
      f"- command: `{command}`",
      "- ours: search once at 2x and discretize to every target (`differentiable`, the default); "
      "its variants held-out selection, one search per target and layer distillation. The best "
      "of ours is picked on dev among the variants a task ran: an optimistic pick, so the "
      "default's score stands beside it.",
      "- others: HAT-style evolution, random search, layer-drop, uniform width; all on the same "
      "teacher, table, supernet and retraining recipe as ours (see each report).",
      "- dev metric mean +- std (seeds), x base measured in the point's own report's timing; "
      "'ties or beats' is ours' mean >= each other method's mean minus ours' std (the reports' "
      "rule); NO names the methods above it.", "",
      "| task (metric) | target | teacher | majority class | ours, search once | ties or beats "
      "every other | best of ours | ties or beats every other | best other | best of ours - "
      "best other | teacher - best of ours | CoFi bar |", "|" + "---|" * 12]
  for result in results:
    name = f"{frontier_lib.display_name(result['task'])} ({result['main_metric']})"
    for index in range(len(result["targets"])):
      r = row(result, index)
      points = r["points"]
      best = lambda m: "n/a" if m is None else (
          f"{m.replace('_', ' ')} {mean_std(points[m])}{_speedup(points[m])}")
      within = {None: "", True: " (within)", False: " (missed)"}[r["within_cofi_bar"]]
      lines.append(
          f"| {name} | {r['target']:.0f}x | {result['teacher']['metric']:.2f} | "
          f"{fmt(result.get('majority_class'))} | {mean_std(points.get('differentiable'))} | "
          f"{_verdict(r['search_once_loses_to'])} | {best(r['best_ours'])} | "
          f"{_verdict(r['loses_to'])} | {best(r['best_other'])} | {fmt(r['gap'], '+.2f')} | "
          f"{fmt(r['below_teacher'])}{within} | {fmt(r['cofi_bar'], '.1f')} |")
  lines += ["", "Reports (each timed on the host named: CPU family/model, SIMD):", ""]
  for result in results:
    lines += [f"- {frontier_lib.display_name(result['task'])}: " + ", ".join(
        f"`{source}` ({host})" for source, host in result["sources"].items())]
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text("\n".join(lines) + "\n")


def load(paths: Sequence[str]) -> list[dict[str, Any]]:
  """The reports in `paths`, merged task by task in the order tasks first appear."""
  by_task: dict[str, list[tuple[str, dict[str, Any]]]] = collections.defaultdict(list)
  for path in paths:
    try:
      report = json.loads(pathlib.Path(path).read_text())
      by_task[report["task"]].append((path, report))
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as error:
      raise ValueError(f"--reports: {path} is not a bench.frontier report: {error!r}") from None
  return [merge(reports) for reports in by_task.values()]


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not _REPORTS.value:
    raise app.UsageError("--reports is required: the frontier reports (<task>.json) to table.")
  command = shlex.join(["python", "-m", "bench.frontier_overview", *sys.argv[1:]])
  write_overview(load(_REPORTS.value), pathlib.Path(_OUT.value), command)
  print(pathlib.Path(_OUT.value).read_text())


if __name__ == "__main__":
  app.run(main)
