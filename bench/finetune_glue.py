"""Fine-tunes the MiniLM checkpoint on GLUE tasks and records dev metrics, wall time and speed.

  GLUE_DIR=../shared/data/glue .venv/bin/python -m bench.finetune_glue \
      --tasks=sst2,mrpc --workdir=runs/bench_finetune \
      --task_flags=sst2:--config.optim.num_epochs=1

Each task runs `python -m darts.train` exactly as a user would (the command is recorded with
the result) and writes bench/results/finetune_glue.{json,md}.
"""

import datetime
import json
import os
import pathlib
import shlex
import subprocess
import sys
import time

from absl import app, flags

from bench.machine import code_version, machine_facts
from darts.training import finetune

_TASKS = flags.DEFINE_list("tasks", ["sst2", "mrpc"], "GLUE tasks to fine-tune.")
_WORKDIR = flags.DEFINE_string("workdir", "runs/bench_finetune", "Parent of the task workdirs.")
_TASK_FLAGS = flags.DEFINE_multi_string(
    "task_flags", [], "task:--flag=value, extra darts.train flags for one task.")
_OUT = flags.DEFINE_string("out", "bench/results/finetune_glue", "Result path without suffix.")

# Published dev results of MiniLM-L6-H384 (Wang et al., 2020, Table 3 / the model card).
ANCHORS = {"sst2": ("accuracy", 0.915), "mrpc": ("accuracy", 0.889)}
GOALS = {"sst2": ("accuracy", 0.89), "mrpc": ("f1", 0.85)}


def run_task(task: str, extra: list[str]) -> dict:
  workdir = pathlib.Path(_WORKDIR.value) / task
  command = [sys.executable, "-m", "darts.train", f"--config=configs/finetune.py:task={task}",
             f"--workdir={workdir}", *extra]
  start = time.perf_counter()
  subprocess.run(command, check=True)
  wall = time.perf_counter() - start
  summary = json.loads((workdir / finetune.EVAL_FILE).read_text())
  if summary["resumed_from_step"]:
    raise RuntimeError(f"{workdir} held an earlier run; use a fresh --workdir to benchmark.")
  return {"task": task, "command": shlex.join(["python", *command[1:]]), "wall_seconds": wall,
          "metrics": summary["metrics"], "train_examples_per_sec":
          summary["train_examples_per_sec"], "num_train_examples": summary["num_train_examples"],
          "num_train_steps": summary["num_train_steps"], "epochs": summary["epochs"],
          "anchor": ANCHORS.get(task), "goal": GOALS.get(task)}


def write_markdown(path: pathlib.Path, report: dict) -> None:
  lines = [f"# Fine-tuning MiniLM-L6-H384 (all-MiniLM-L6-v2) on GLUE, {report['date']}", "",
           f"Machine: {report['machine']['cpu']}, {report['machine']['cores']} cores, "
           f"JAX {report['machine']['jax']} on {report['machine']['jax_devices']}.",
           f"GLUE files: {report['glue_dir']}.", "",
           "| task | dev metrics | published anchor | goal | epochs (steps) | wall | "
           "train examples/s |", "|---|---|---|---|---|---|---|"]
  for r in report["results"]:
    metric_text = ", ".join(f"{k} {100 * v:.2f}" for k, v in r["metrics"].items())
    anchor = f"{r['anchor'][0]} {100 * r['anchor'][1]:.1f}" if r["anchor"] else "-"
    goal = f"{r['goal'][0]} >= {100 * r['goal'][1]:.0f}" if r["goal"] else "-"
    lines.append(f"| {r['task']} | {metric_text} | {anchor} | {goal} | {r['epochs']:.2f} "
                 f"({r['num_train_steps']}) | {r['wall_seconds'] / 60:.1f} min | "
                 f"{r['train_examples_per_sec']:.1f} |")
  lines += ["", "Commands:", ""] + [f"    {r['command']}" for r in report["results"]]
  path.write_text("\n".join(lines) + "\n")


def main(argv):
  del argv
  extra = {task: [] for task in _TASKS.value}
  for item in _TASK_FLAGS.value:
    task, _, flag = item.partition(":")
    extra.setdefault(task, []).append(flag)
  results = [run_task(task, extra[task]) for task in _TASKS.value]
  report = {"date": datetime.date.today().isoformat(), "machine": machine_facts(),
            "code": code_version(),
            "glue_dir": os.environ.get("GLUE_DIR", ""), "results": results,
            "bench_command": shlex.join(["python", "-m", "bench.finetune_glue", *sys.argv[1:]])}
  out = pathlib.Path(_OUT.value)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
  write_markdown(out.with_suffix(".md"), report)
  print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
  app.run(main)
