"""Facts about the machine a benchmark ran on, recorded with every result."""

import os
import platform
import subprocess
import sys

import jax

from latency_loss.host import cpu_identity, cpu_model


def machine_facts() -> dict:
  return {"cpu": cpu_model(), "cpu_identity": cpu_identity(), "cores": os.cpu_count(),
          "python": platform.python_version(),
          "jax": jax.__version__, "jax_devices": [str(d) for d in jax.devices()],
          "load_average": os.getloadavg()}


def code_version() -> dict:
  """The commit the benchmark ran, and whether the work tree had uncommitted changes."""
  git = lambda *args: subprocess.run(["git", *args], capture_output=True, text=True).stdout.strip()
  return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "-uno"))}


def start_hog(seconds: int) -> subprocess.Popen:
  """One CPU-bound process on the last core, ending by itself after `seconds`."""
  core = (os.cpu_count() or 1) - 1
  code = (f"import os, time\nos.sched_setaffinity(0, {{{core}}})\nend = time.time() + {seconds}\n"
          "while time.time() < end: pass")
  return subprocess.Popen([sys.executable, "-c", code])
