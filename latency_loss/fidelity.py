"""Fidelity of a cost table: predicted vs measured latency of whole random architectures (the
logic of `python -m latency_loss.validate`).

Each architecture is built end to end (embeddings + all layers + head) as ONE model,
converted and timed with the table's runtime settings and protocol. Writes OUT.json (per-arch
records + summary), OUT.png (scatter) and OUT.md (command, machine, date, summary).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
from typing import Sequence

from absl import logging
import numpy as np
from scipy import stats as scipy_stats

from latency_loss.backends import base as backends
from latency_loss.blocks import space_blocks
from latency_loss.host import contention
from latency_loss.table import CostTable, load_table
from latency_loss.timing import TimingProtocol
from models.search_space import Arch


def sample_archs(table: CostTable, num: int, seed: int) -> list[Arch]:
  """The largest architecture plus `num - 1` random ones (the extremes matter most)."""
  rng = np.random.default_rng(seed)
  return [table.space.largest_arch()] + [table.space.random_arch(rng) for _ in range(num - 1)]


def one_depth_table(table: CostTable) -> CostTable:
  """`table` without its context models below the largest depth: its cost model is then fitted
  on one depth only (the ablation of the two-depth fit)."""
  shallow = {b.key for b in space_blocks(table.space) if b.kind == "context" and b.depth}
  return dataclasses.replace(table, entries={key: entry for key, entry in table.entries.items()
                                             if key not in shallow})


def summarize(predicted: Sequence[float], measured: Sequence[float]) -> dict[str, float]:
  """MAPE, max |error|, share within +-5% / +-10%, Spearman rank correlation."""
  p, m = np.asarray(predicted), np.asarray(measured)
  rel = (p - m) / m
  return {"num_archs": int(p.size), "mape_pct": float(100 * np.mean(np.abs(rel))),
          "max_abs_error_pct": float(100 * np.max(np.abs(rel))),
          "mean_error_pct": float(100 * np.mean(rel)),
          "within_5pct": float(np.mean(np.abs(rel) <= 0.05)),
          "within_10pct": float(np.mean(np.abs(rel) <= 0.10)),
          "spearman": float(scipy_stats.spearmanr(p, m).statistic) if p.size > 1 else 1.0}


def plot(predicted: Sequence[float], measured: Sequence[float], title: str, path: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(5, 5))
  ax.scatter(measured, predicted, s=14)
  lim = [0, 1.05 * max(max(predicted), max(measured))]
  ax.plot(lim, lim, "k-", lw=0.8, label="y = x")
  ax.fill_between(lim, [0.9 * v for v in lim], [1.1 * v for v in lim], alpha=0.15,
                  label="+-10%")
  ax.set(xlim=lim, ylim=lim, xlabel="measured whole model (ms)", ylabel="predicted (ms)",
         title=title)
  ax.legend(loc="upper left")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def validate(table: CostTable, num_archs: int, seed: int, rounds: int = 1) -> dict:
  """Measures `num_archs` whole models in `rounds` passes; returns records and summaries.

  A model's measured latency is the median of its per-pass medians: passes are minutes
  apart, so a burst of other load rarely hits most of them. (Not their minimum: that is
  biased low against the table's single-pass medians.)
  """
  protocol = TimingProtocol(**table.protocol)
  backend = backends.make_backend(table.space, table.runtime, protocol)
  # Timed against the table's own reference, in its units (the VM's speed levels cancel).
  reference = backends.table_reference(table.host, backend)
  archs = sample_archs(table, num_archs, seed)
  medians, raw, loads = ([[] for _ in archs] for _ in range(3))
  for r in range(rounds):
    for i, arch in enumerate(archs):
      stats = backends.measure(backend.arch_call(arch), protocol, reference)
      medians[i].append(stats.value(protocol.statistic))
      raw[i].append(stats.raw_ms or stats.median_ms)
      loads[i].append(stats.other_load)
      logging.info("round %d/%d [%d/%d] predicted %7.3f measured %7.3f ms (%+.1f%%) %s", r + 1,
                   rounds, i + 1, num_archs, table.predict_ms(arch), medians[i][-1],
                   100 * (table.predict_ms(arch) / medians[i][-1] - 1), arch.to_json())
  records = [{"arch": dataclasses.asdict(arch), "predicted_ms": table.predict_ms(arch),
              "predicted_isolated_ms": table.predict_ms(arch, context=False),
              "measured_ms": float(np.median(m)), "round_medians_ms": m,
              "raw_measured_ms": float(np.median(w)), "other_load": max(o)}
             for arch, m, w, o in zip(archs, medians, raw, loads)]
  measured = [r["measured_ms"] for r in records]
  one_depth = one_depth_table(table)
  return {"summary": summarize([r["predicted_ms"] for r in records], measured),
          # The ablations: isolated block costs without the fitted cost model; the cost model
          # fitted on the largest depth only (as before tables had two); timings not against the
          # reference.
          "summary_without_context_factor": summarize(
              [r["predicted_isolated_ms"] for r in records], measured),
          "summary_one_depth": summarize([one_depth.predict_ms(a) for a in archs], measured),
          "summary_raw_timings": summarize([r["predicted_ms"] for r in records],
                                           [r["raw_measured_ms"] for r in records]),
          # Without the rounds: each model's first pass only.
          "summary_first_round_only": summarize([r["predicted_ms"] for r in records],
                                                [m[0] for m in medians]),
          "context_factors": {h: table.context_factor(h) for h in table.space.hidden_choices},
          "against_reference": reference is not None, "rounds": rounds, "records": records}


def write_results(result: dict, table: CostTable, table_path: str, out: str, command: str,
                  seconds: float) -> None:
  """OUT.json, OUT.png and OUT.md (the markdown names command, machine and date)."""
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
  busy = contention()
  result = {**result, "table": table_path, "command": command, "date": date,
            "runtime": table.runtime.to_dict(), "host": table.host, "protocol": table.protocol,
            "contention_at_end": busy, "wall_seconds": seconds}
  with open(out + ".json", "w") as f:
    json.dump(result, f, indent=1)
  records = result["records"]
  s = result["summary"]
  plot([r["predicted_ms"] for r in records], [r["measured_ms"] for r in records],
       f"{table.space.name} / {table.runtime.name} {table.runtime.precision} / "
       f"{table.runtime.threads} threads "
       f"(MAPE {s['mape_pct']:.1f}%)", out + ".png")
  lines = [f"# Latency fidelity: {table.space.name}, {table.runtime.name}, "
           f"{table.runtime.precision}", "",
           f"- command: `{command}`", f"- date (UTC): {date}",
           f"- machine: {table.host.get('cpu_model')}, {table.host.get('cpu_count')} cores",
           f"- contention: table build start {table.host.get('contention_at_start')}, "
           f"end {table.host.get('contention_at_end')}; validation end {busy}",
           f"- runtime: {json.dumps(table.runtime.to_dict())}",
           f"- protocol: {json.dumps(table.protocol)}, seq_len {table.space.seq_len}, "
           f"batch {table.space.batch}", f"- wall time: {seconds:.0f} s", "",
           "| metric | value |", "|---|---|"]
  lines += [f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |"
            for k, v in s.items()]
  lines += [""] + [
      f"- {label}: MAPE {other['mape_pct']:.2f}%, within 10% {other['within_10pct']:.2f}, "
      f"max error {other['max_abs_error_pct']:.1f}%."
      for label, other in (("Isolated blocks, without the fitted cost model",
                            result["summary_without_context_factor"]),
                           ("Cost model fitted on the largest depth only",
                            result["summary_one_depth"]),
                           ("Whole models timed alone, not against the reference",
                            result["summary_raw_timings"]),
                           ("First round only (no median over rounds)",
                            result["summary_first_round_only"]))]
  lines += [f"Measured = median over {result['rounds']} rounds of each model's median.",
            f"Context factors per hidden size: {json.dumps(result['context_factors'])}", "",
            f"![scatter]({os.path.basename(out)}.png)", ""]
  with open(out + ".md", "w") as f:
    f.write("\n".join(lines))
