"""What an app needs next to an exported .tflite: a JSON record, sidecar and embedded copy.

`tflite_support`'s metadata writers are not available here, so the record is plain JSON, written
both as `<model>.json` beside the model and into the flatbuffer's own `metadata` table under
`METADATA_NAME` (the table TFLite reserves for such key -> buffer entries; the interpreter ignores
unknown names), so a model copied alone still says what it is.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

import numpy as np
from tensorflow.lite.python import schema_py_generated as schema_fb
from tensorflow.lite.python import util as tflite_util

METADATA_NAME = "canao_metadata"
FORMAT_VERSION = 1


def embed(model: bytes, record: Mapping[str, Any]) -> bytes:
  """Returns `model` with `record` (JSON) stored in its metadata table as `METADATA_NAME`.

  An existing entry of that name is replaced, so embedding twice keeps one record.
  """
  obj = tflite_util._convert_model_from_bytearray_to_object(model)  # pylint: disable=protected-access
  obj.metadata = [m for m in (obj.metadata or []) if m.name != METADATA_NAME.encode()]
  buffer = schema_fb.BufferT()
  buffer.data = np.frombuffer(json.dumps(record, sort_keys=True).encode(), np.uint8)
  obj.buffers.append(buffer)
  entry = schema_fb.MetadataT()
  entry.name = METADATA_NAME
  entry.buffer = len(obj.buffers) - 1
  obj.metadata.append(entry)
  return tflite_util._convert_model_from_object_to_bytearray(obj)  # pylint: disable=protected-access


def read(model: bytes) -> dict[str, Any]:
  """The record `embed` stored in `model`.

  Raises:
    KeyError: the model carries no canao metadata.
  """
  root = schema_fb.Model.GetRootAs(model, 0)
  for i in range(root.MetadataLength()):
    entry = root.Metadata(i)
    if entry.Name().decode() == METADATA_NAME:
      return json.loads(root.Buffers(entry.Buffer()).DataAsNumpy().tobytes())
  raise KeyError(f"the model has no '{METADATA_NAME}' metadata entry")
