"""What a job's log shows: TensorFlow's native chatter off, and its warnings collected.

TensorFlow's C++ code logs two WARNING lines per TFLite conversion ("Ignored output_format",
"Ignored drop_control_dependency") and its start-up INFO lines, hundreds in a table build, which
bury the progress lines. It reads TF_CPP_MIN_LOG_LEVEL once, when it loads: entry points call
`quiet_native_logs()` before importing anything that imports TensorFlow. The job's own warnings
are collected and repeated at the end (`warning_summary`), where a user looks.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import warnings
from typing import Sequence

_VERBOSITY = re.compile(r"^(?:--verbosity|-v)(?:=(-?\d+))?$")


def _verbosity(argv: Sequence[str]) -> int:
  """absl's --verbosity (or -v) in `argv`; 0 when absent."""
  for i, arg in enumerate(argv):
    match = _VERBOSITY.match(arg)
    if match:
      value = match.group(1) or (argv[i + 1] if i + 1 < len(argv) else "0")
      try:
        return int(value)
      except ValueError:
        return 0
  return 0


def quiet_native_logs(argv: Sequence[str] | None = None) -> None:
  """Silences TensorFlow's C++ INFO and WARNING lines unless `--verbosity` >= 1 asks for them
  (an explicit TF_CPP_MIN_LOG_LEVEL wins)."""
  if _verbosity(sys.argv if argv is None else argv) >= 1:
    return
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  # TF's own calibrator still builds the deprecated tf.lite.Interpreter; we use LiteRT's.
  warnings.filterwarnings("ignore", message=r"\s*Warning: tf\.lite\.Interpreter is deprecated",
                          category=UserWarning)


class _Collector(logging.Handler):
  """Keeps every WARNING-or-worse record's message."""

  def __init__(self):
    super().__init__(level=logging.WARNING)
    self.messages: list[str] = []

  def emit(self, record: logging.LogRecord) -> None:
    self.messages.append(record.getMessage())


_COLLECTOR = _Collector()


def collect_warnings() -> None:
  """Starts collecting the warnings logged through Python logging (absl included)."""
  root = logging.getLogger()
  if _COLLECTOR not in root.handlers:
    root.addHandler(_COLLECTOR)


def warning_summary() -> list[str]:
  """The warnings collected so far, each once, in the order first seen."""
  return list(dict.fromkeys(_COLLECTOR.messages))
