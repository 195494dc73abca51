"""The runtimes a job can measure on and export for, by the name a user picks (`runtime=`):
each sets `latency_loss.runtime.RuntimeSpec` fields."""

from __future__ import annotations

from typing import Any

# The runtimes by the name a user picks (`runtime=` in the configs): RuntimeSpec fields.
# "openvino" is Intel's compiler plugin and dispatch (they ship in ai-edge-litert) with
# OpenVINO's CPU graph backend, which runs on any x86 CPU; the vendor plugins need their SDKs
# (`pip install ai-edge-litert-sdk-<vendor>`, which downloads them from the vendor) and run on
# their phones.
RUNTIMES = {
    "xnnpack": {"backend": "tflite"},
    "litert_cpu": {"backend": "compiled"},
    "openvino": {"backend": "compiled", "plugin": "intel_openvino", "graph_backend": "cpu",
                 "soc_model": "LNL"},
    "qualcomm": {"backend": "compiled", "plugin": "qualcomm", "soc_model": "SM8650"},
    "mediatek": {"backend": "compiled", "plugin": "mediatek", "soc_model": "MT6989"},
    "google_tensor": {"backend": "compiled", "plugin": "google_tensor", "soc_model": "Tensor_G4"},
    "xla": {"backend": "xla", "xnnpack": False},
    "android": {"backend": "android"},
}
_PLUGIN_FIELDS = ("plugin", "graph_backend", "soc_model")


def runtime_fields(name: str) -> dict[str, Any]:
  """The RuntimeSpec fields of a runtime named in `RUNTIMES` (the plugin fields always set, so
  a preset replaces another's whole).

  Raises:
    ValueError: an unknown name.
  """
  if name not in RUNTIMES:
    raise ValueError(f"runtime='{name}' is not one of {sorted(RUNTIMES)}")
  return {**dict.fromkeys(_PLUGIN_FIELDS, ""), "xnnpack": True, **RUNTIMES[name]}
