"""A retrained model exported at several precisions, each also compiled for OpenVINO, and the
resulting (runtime, precision) models: what bench/deployment and bench/compiler_thesis time."""

import pathlib
from typing import Any

from configs import export as export_config
from configs.runtimes import runtime_fields
from export import exporter
from latency_loss.runtime import RuntimeSpec


def export_all(model_dir: str, workdir: str, precisions: str, glue_dir: str) -> dict[str, Any]:
  """Exports `model_dir` at `precisions` (verified), each compiled for OpenVINO too."""
  config = export_config.get_config()
  config.update(model_dir=model_dir, precisions=precisions, runtime="openvino")
  config.data.glue_dir = glue_dir
  return exporter.export(config, workdir)


def candidates(report: dict[str, Any], out_dir: pathlib.Path, precisions: list[str],
               threads: int) -> dict[str, tuple[RuntimeSpec, bytes, dict[str, Any]]]:
  """'runtime/precision' -> (runtime, model file bytes, its verification result) of an
  `export_all` export in `out_dir`."""
  xnnpack = RuntimeSpec(threads=threads)
  openvino = RuntimeSpec(**runtime_fields("openvino"), threads=threads)
  found = {}
  for precision in precisions:
    result = report["results"][precision]
    found[f"xnnpack/{precision}"] = (xnnpack, (out_dir / f"model_{precision}.tflite").read_bytes(),
                                     result)
    path = out_dir / exporter.compiled_file(precision, openvino)
    if path.exists():
      found[f"openvino/{precision}"] = (openvino, path.read_bytes(), result["compiled"])
  return found
