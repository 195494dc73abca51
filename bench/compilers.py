"""Cost tables per compiler and precision, their fidelity, and where the compilers differ.

  .venv/bin/python -m bench.compilers --workdir=runs/compilers --out=bench/results/compilers

Builds (resuming) the MiniLM table of each (runtime, precision) of --tables on this host, one
after the other, and validates each on the same random architectures
(`latency_loss.fidelity`, written to OUT/fidelity_<runtime>_<precision>.{json,md,png}; a
finished validation is kept). Then compares the runtimes block by block: the net cost of every
encoder layer on one compiler over the other at the same precision, and at the precisions that
ship (int8 dynamic range on XNNPACK, full int8 on OpenVINO). Writes OUT/tables.{json,md} and
OUT/block_cost_ratio.png. Compiled blocks are cached in WORKDIR/compile_cache. Nothing else
may run on the machine meanwhile.
"""

from models import native_logs

native_logs.quiet_native_logs()  # Before TensorFlow loads (imported below): it reads it once.

import datetime
import json
import os
import pathlib
import shlex
import sys
import time
from typing import Any

from absl import app, flags, logging

from bench.machine import code_version, machine_facts
from configs import cost_table as cost_table_config
from latency_loss import builder, fidelity
from latency_loss.blocks import Block
from latency_loss.table import CostTable, load_table
from models import files

_WORKDIR = flags.DEFINE_string("workdir", "runs/compilers", "Where the tables go.")
_OUT = flags.DEFINE_string("out", "runs/compilers/results", "Results directory "
                           "(bench/results/compilers to commit them).")
_TABLES = flags.DEFINE_list("tables", ["xnnpack:fp32", "xnnpack:int8", "openvino:fp32",
                                       "openvino:int8_full"], "runtime:precision pairs.")
_NUM_ARCHS = flags.DEFINE_integer("num_archs", 50, "Random architectures validated per table.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Validation passes over the architectures.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the architecture sampler (same for all).")

# (numerator, denominator) tables of the block-cost comparison.
COMPARISONS = (("openvino:fp32", "xnnpack:fp32"), ("openvino:int8_full", "xnnpack:int8"))


def build_and_validate(name: str) -> tuple[CostTable, dict[str, Any]]:
  """The table `runtime:precision` (built or resumed) and its fidelity (run or read)."""
  runtime, precision = name.split(":")
  workdir = pathlib.Path(_WORKDIR.value) / f"table_{runtime}_{precision}"
  path = workdir / builder.TABLE_NAME
  if path.exists() and not load_table(str(path)).missing():
    table = load_table(str(path))  # Finished: building again would time its reference again.
  else:
    config = cost_table_config.get_config(
        f"space=minilm,runtime={runtime},precision={precision}")
    table = builder.build_table(config, str(workdir))
  prefix = os.path.join(_OUT.value, f"fidelity_{runtime}_{precision}")
  if not os.path.exists(prefix + ".json"):
    start = time.time()
    result = fidelity.validate(table, _NUM_ARCHS.value, _SEED.value, _ROUNDS.value)
    command = (f"python -m latency_loss.validate --table={path} "
               f"--num_archs={_NUM_ARCHS.value} --rounds={_ROUNDS.value} --out={prefix}")
    fidelity.write_results(result, table, str(path), prefix, command,
                           time.time() - start)
  return table, json.loads(pathlib.Path(prefix + ".json").read_text())


def layer_costs(table: CostTable) -> dict[tuple[int, int, int], float]:
  """Net isolated cost (ms) of every encoder layer (hidden, heads, FFN) of the table."""
  space = table.space
  return {(h, a, f): table.cost_ms(Block("layer", h, a, f), context=False)
          for h in space.hidden_choices for a in space.head_choices for f in space.ffn_choices}


def compare(tables: dict[str, CostTable], numerator: str, denominator: str) -> dict[str, Any]:
  """Per-layer cost ratio numerator / denominator, and the non-layer costs of both."""
  top, bottom = layer_costs(tables[numerator]), layer_costs(tables[denominator])
  ratios = {k: top[k] / bottom[k] for k in top if bottom[k] > 0 and top[k] > 0}
  space = tables[numerator].space

  def attention_share(hidden: int, heads: int, ffn: int) -> float:
    """Share of a layer's multiply-adds in attention (QKV and output projections, scores):
    the plot's colour, which kind of work a compiler makes cheap."""
    width = heads * space.head_size
    attention = 4 * hidden * width + 2 * space.seq_len * width
    return attention / (attention + 2 * hidden * ffn)

  values = sorted(ratios.values())
  other = lambda t: {"null_model_ms": t.overhead_ms(),
                     "embeddings_ms": {h: t.cost_ms(Block("embeddings", h), context=False)
                                       for h in t.space.hidden_choices},
                     "head_ms": {h: t.cost_ms(Block("head", h), context=False)
                                 for h in t.space.hidden_choices}}
  return {"numerator": numerator, "denominator": denominator,
          "layers": [{"hidden": h, "heads": a, "ffn": f, "numerator_ms": top[(h, a, f)],
                      "denominator_ms": bottom[(h, a, f)], "ratio": r,
                      "attention_share": attention_share(h, a, f)}
                     for (h, a, f), r in sorted(ratios.items())],
          "ratio_median": values[len(values) // 2], "ratio_min": values[0],
          "ratio_max": values[-1], "base_layer_ratio": ratios.get(max(ratios)),
          numerator: other(tables[numerator]), denominator: other(tables[denominator])}


def plot(comparisons: list[dict[str, Any]], path: str) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(1, len(comparisons), figsize=(6 * len(comparisons), 4.6), squeeze=False)
  for ax, c in zip(axes[0], comparisons):
    layers = c["layers"]
    points = ax.scatter([l["denominator_ms"] for l in layers], [l["ratio"] for l in layers],
                        c=[l["attention_share"] for l in layers], cmap="viridis", s=12)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set(xscale="log", xlabel=f"layer net cost on {c['denominator']} (ms)",
           ylabel=f"{c['numerator']} / {c['denominator']}",
           title=f"median ratio {c['ratio_median']:.2f} "
                 f"({c['ratio_min']:.2f}-{c['ratio_max']:.2f})")
    fig.colorbar(points, ax=ax, label="attention share of the layer's MACs")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def write_markdown(path: pathlib.Path, report: dict[str, Any]) -> None:
  machine = report["machine"]
  rows = ["| runtime | precision | MAPE % | within 5% | within 10% | bias % | Spearman | base "
          "measured ms | build s (timing) | scheduling |", "|---" * 10 + "|"]
  for name, r in report["tables"].items():
    s, runtime, precision = r["summary"], *name.split(":")
    base = r["records"][0]["measured_ms"]  # `fidelity.sample_archs` puts the base first.
    rows.append(f"| {runtime} | {precision} | {s['mape_pct']:.2f} | {s['within_5pct']:.2f} | "
                f"{s['within_10pct']:.2f} | {s['mean_error_pct']:+.2f} | {s['spearman']:.3f} | "
                f"{base:.2f} | {r['host'].get('build_seconds', 0):.0f} | "
                f"{r['host'].get('timing_priority')} |")
  ratios = [f"- {c['numerator']} / {c['denominator']}: per-layer net cost ratio median "
            f"{c['ratio_median']:.2f}, range {c['ratio_min']:.2f}-{c['ratio_max']:.2f}, base "
            f"layer {c['base_layer_ratio']:.2f}; invocation overhead "
            f"{c[c['numerator']]['null_model_ms']:.3f} vs {c[c['denominator']]['null_model_ms']:.3f}"
            f" ms; embeddings (largest hidden) "
            f"{max(c[c['numerator']]['embeddings_ms'].items())[1]:.3f} vs "
            f"{max(c[c['denominator']]['embeddings_ms'].items())[1]:.3f} ms."
            for c in report["comparisons"]]
  lines = [f"# Cost tables per compiler and precision ({report['space']}, 2 threads, batch 1, "
           "seq 128)", "", f"- command: `{report['command']}`", f"- date (UTC): {report['date']}",
           f"- machine: {machine['cpu']}, {machine['cores']} cores, SIMD "
           f"{machine['cpu_identity'].get('simd')}", f"- code: {report['code']}",
           f"- validation: {report['num_archs']} archs (the base + random ones, seed "
           f"{report['seed']}), {report['rounds']} rounds, against each table's reference model.",
           "- tables: `runs/compilers/table_<runtime>_<precision>/cost_table.json`; fidelity "
           "per table: `fidelity_<runtime>_<precision>.md`.", "", *rows, "",
           "Where the compilers differ (net isolated block costs, `block_cost_ratio.png`):",
           *ratios, "", "![ratio](block_cost_ratio.png)", ""]
  path.write_text("\n".join(lines))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  os.environ.setdefault("CANAO_COMPILE_CACHE", os.path.join(_WORKDIR.value, "compile_cache"))
  tables, results = {}, {}
  for name in _TABLES.value:
    tables[name], results[name] = build_and_validate(name)
    logging.info("%s: %s", name, json.dumps(results[name]["summary"]))
  comparisons = [compare(tables, a, b) for a, b in COMPARISONS if a in tables and b in tables]
  out = pathlib.Path(_OUT.value)
  report = {"command": shlex.join(["python", "-m", "bench.compilers", *sys.argv[1:]]),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": machine_facts(), "code": code_version(), "space": "minilm",
            "num_archs": _NUM_ARCHS.value, "seed": _SEED.value, "rounds": _ROUNDS.value,
            "tables": {name: {k: r[k] for k in ("summary", "records", "host", "runtime")}
                       for name, r in results.items()},
            "comparisons": comparisons}
  files.write_json_atomically(out / "tables.json", report)
  if comparisons:
    plot(comparisons, str(out / "block_cost_ratio.png"))
  write_markdown(out / "tables.md", report)
  print((out / "tables.md").read_text())


if __name__ == "__main__":
  app.run(main)
