"""What makes a workdir safe to resume: a manifest of what its results are, and a lock.

Every job (train, search, table, export, pipeline) claims its workdir before it writes anything:
  * `locked` takes an exclusive lock, so a second job on the same workdir is refused with the
    first one's pid and command (the kernel drops the lock when a process dies: a killed job
    never leaves a stale lock behind);
  * `claim` compares the config fields that define the job's result, and the hashes of its
    inputs, with the workdir's `manifest.json`. A workdir holding results of another config is
    refused, naming every differing key with both values; nothing is resumed, mixed, reused or
    overwritten. `fresh_run_dir` is the explicit way out: a new run beside the old one (nothing is
    ever deleted).
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import functools
import json
import os
import pathlib
import shlex
import sys
from typing import Any, Callable, Iterator, Mapping

import jax
import ml_collections
from absl import flags, logging

from models import files

MANIFEST_FILE = "manifest.json"
LOCK_FILE = ".lock"
FRESH_RUN_PREFIX = "run_"
# Config keys added after workdirs were written with the config, each with the value that keeps
# the old behaviour: a manifest without the key matches a config with that value (old workdirs
# resume), and any other value is a difference like any other.
ADDED_KEYS = {"search.selection": "discretize"}
NEW_RUN_HINT = ("pass --new_run to start a fresh run in a new subdirectory of it (nothing is "
                "deleted), or use another --workdir")


class WorkdirMismatchError(ValueError):
  """The workdir holds results of another config or other inputs."""


class WorkdirBusyError(RuntimeError):
  """Another process is running a job in the workdir."""


def config_fields(config: ml_collections.ConfigDict | Mapping[str, Any],
                  exclude: tuple[str, ...] = ()) -> dict[str, Any]:
  """`config` flattened to {"dotted.key": value}, without the keys under any `exclude` prefix.

  Jobs exclude what does not change their result (logging and checkpoint cadence) and the paths
  of inputs whose content they hash instead (a moved file is the same input).
  """
  flat = {}

  def walk(prefix: str, node: Any) -> None:
    if isinstance(node, ml_collections.ConfigDict):
      node = node.to_dict()
    if isinstance(node, Mapping) and node:
      for key, value in node.items():
        walk(f"{prefix}.{key}" if prefix else str(key), value)
    elif not any(prefix == e or prefix.startswith(e + ".") for e in exclude):
      # JSON's view of the value: tuples and lists compare equal after a round trip.
      flat[prefix] = json.loads(json.dumps(node))

  walk("", config)
  return flat


def differences(recorded: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
  """'key: recorded -> wanted' for every key whose value differs (or exists on one side)."""
  missing = object()
  lines = []
  for key in sorted(set(recorded) | set(wanted)):
    old, new = recorded.get(key, missing), wanted.get(key, missing)
    if old != new:
      show = lambda v: "(absent)" if v is missing else json.dumps(v)
      lines.append(f"{key}: {show(old)} in the workdir, {show(new)} now")
  return lines


def claim(workdir: pathlib.Path, job: str, fields: Mapping[str, Any],
          inputs: Callable[[], Mapping[str, str]], has_results: bool) -> None:
  """Checks that `workdir` may hold this job's results, then records the manifest.

  Args:
    workdir: the job's output directory (created if missing).
    job: the job's name, e.g. "train".
    fields: the config fields that define the result (see `config_fields`).
    inputs: returns {input name: content hash}; called only once the fields match, since
      hashing reads whole checkpoints and datasets.
    has_results: whether the workdir already holds this job's checkpoints or outputs. Without
      any, a differing manifest (e.g. of a run that failed before its first checkpoint) is
      simply replaced.

  Raises:
    WorkdirMismatchError: the workdir holds results of another job, config or inputs; the
      message lists each differing key with both values and what to do.
  """
  path = workdir / MANIFEST_FILE
  recorded = read_manifest(path)
  wanted = {"job": job, "fields": dict(fields)}
  if recorded is not None and has_results:
    diff = differences({"job": recorded.get("job"),
                        **_prefixed(_with_added_keys(recorded.get("fields", {}), fields))},
                       {"job": job, **_prefixed(fields)})
    _refuse_if(diff, workdir)
  wanted["inputs"] = dict(inputs())
  if recorded is not None and has_results:
    _refuse_if(differences(_prefixed(recorded.get("inputs", {}), "inputs"),
                           _prefixed(wanted["inputs"], "inputs")), workdir)
  elif recorded is None and has_results:
    logging.warning("%s has results but no %s (an older canao wrote it): resuming without "
                    "checking its config; recording this one.", workdir, MANIFEST_FILE)
  if recorded is None or not has_results:
    workdir.mkdir(parents=True, exist_ok=True)
    files.write_json_atomically(path, {**wanted, "command": command_line(),
                                       "created": _now()})


def check_parts(workdir: pathlib.Path, job: str, wanted: Mapping[str, Mapping[str, Any]],
                has_results: Callable[[str], bool]) -> None:
  """`claim`'s check for a job made of parts, such as the pipeline's stages: every part that
  has results must have been recorded (by `record_part`) with the fields it is wanted with now.

  Raises:
    WorkdirMismatchError: listing every differing key of every such part, both values.
  """
  recorded = read_manifest(workdir / MANIFEST_FILE)
  if recorded is None:
    return
  diff = differences({"job": recorded.get("job")}, {"job": job})
  for part, fields in recorded.get("parts", {}).items():
    if part in wanted and has_results(part):
      diff += differences(_prefixed(_with_added_keys(fields, wanted[part]), part),
                          _prefixed(wanted[part], part))
  _refuse_if(diff, workdir)


def record_part(workdir: pathlib.Path, job: str, part: str, fields: Mapping[str, Any]) -> None:
  """Records the fields a part of `job` runs with (call after `check_parts`, before the part)."""
  path = workdir / MANIFEST_FILE
  manifest = read_manifest(path) or {"job": job, "parts": {}, "created": _now()}
  if manifest["parts"].get(part) != dict(fields):
    manifest["parts"][part] = dict(fields)
    manifest["command"] = command_line()
    files.write_json_atomically(path, manifest)


def _with_added_keys(recorded: Mapping[str, Any], wanted: Mapping[str, Any]) -> dict[str, Any]:
  """`recorded` fields plus, at their old-behaviour value, the `ADDED_KEYS` it predates."""
  return {**{key: value for key, value in ADDED_KEYS.items()
             if key in wanted and key not in recorded}, **recorded}


def _prefixed(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  return {f"{prefix}.{k}" if prefix else k: v for k, v in mapping.items()}


def _refuse_if(diff: list[str], workdir: pathlib.Path) -> None:
  if diff:
    raise WorkdirMismatchError(
        f"{workdir} holds results of another run; refusing to resume or reuse them with "
        f"{len(diff)} different value(s):\n  " + "\n  ".join(diff) + f"\nTo run this config, "
        f"{NEW_RUN_HINT}. To continue the run there, use the values it recorded in "
        f"{workdir / MANIFEST_FILE}.")


def read_manifest(path: pathlib.Path) -> dict[str, Any] | None:
  """The manifest at `path`, None when there is none; a damaged one is an error naming it."""
  if not path.exists():
    return None
  try:
    manifest = json.loads(path.read_text())
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise ValueError(f"{path} is damaged ({e}); it records which config produced the results "
                     f"beside it. Restore it, or {NEW_RUN_HINT}.") from None
  if not isinstance(manifest, dict):
    raise ValueError(f"{path} is not a manifest (a JSON object expected).")
  return manifest


def fresh_run_dir(workdir: str | pathlib.Path) -> pathlib.Path:
  """A new, unused `workdir/run_N` (smallest N >= 1): where --new_run starts a fresh run."""
  root = pathlib.Path(workdir)
  number = 1
  while (root / f"{FRESH_RUN_PREFIX}{number}").exists():
    number += 1
  path = root / f"{FRESH_RUN_PREFIX}{number}"
  logging.info("--new_run: starting a fresh run in %s (resume it with --workdir=%s).", path, path)
  return path


def command_line() -> str:
  return shlex.join([pathlib.Path(sys.executable).name, *sys.argv])


def _now() -> str:
  return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


@contextlib.contextmanager
def locked(workdir: str | pathlib.Path) -> Iterator[pathlib.Path]:
  """Holds an exclusive lock on `workdir` (created if missing) for the duration.

  Raises:
    WorkdirBusyError: another process holds it; the message gives its pid, command and start.
  """
  root = pathlib.Path(workdir)
  root.mkdir(parents=True, exist_ok=True)
  if jax.process_index() > 0:
    # A multi-host job: every host runs the same job on the same workdir; host 0 holds the lock.
    yield root
    return
  lock = root / LOCK_FILE
  handle = open(lock, "a+")
  try:
    try:
      fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      handle.seek(0)
      holder = handle.read().strip() or "(unknown)"
      raise WorkdirBusyError(f"{root} is in use by another job: {holder}. Wait for it to end, "
                             "or use another --workdir.") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}, `{command_line()}`, since {_now()}")
    handle.flush()
    yield root
  finally:
    handle.close()  # Releases the lock.


def define_new_run_flag() -> flags.FlagHolder:
  return flags.DEFINE_bool(
      "new_run", False, "Start a fresh run in a new subdirectory WORKDIR/run_N instead of "
      "resuming WORKDIR (for a config that WORKDIR's manifest.json refuses); deletes nothing.")


# Errors of the machine, not of the job: the whole story fits in one line.
_DISK_ERRORS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
                errno.EROFS: "read-only file system", errno.EACCES: "permission denied"}


def disk_error(error: BaseException) -> OSError | None:
  """The OSError of a full, read-only or forbidden disk behind `error` (or its causes)."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, OSError) and error.errno in _DISK_ERRORS:
      return error
    error = error.__cause__ or error.__context__
  return None


def with_clear_errors(main: Callable[[list[str]], None]) -> Callable[[list[str]], None]:
  """Wraps a job's main: a disk error, or a workdir refusal, ends the job with one clear
  message and exit status 1, without the traceback (hundreds of library lines) that buries it."""

  @functools.wraps(main)
  def wrapped(argv: list[str]) -> None:
    try:
      main(argv)
    except (WorkdirMismatchError, WorkdirBusyError) as e:
      logging.error("%s", e)
      sys.exit(1)
    except Exception as e:  # pylint: disable=broad-except
      cause = disk_error(e)
      if cause is None:
        raise
      where = f" writing {cause.filename}" if cause.filename else ""
      logging.error("Stopped: %s%s (%s). Free space or fix the permissions, then rerun the same "
                    "command: the job resumes from its last checkpoint.",
                    _DISK_ERRORS[cause.errno], where, type(e).__name__)
      sys.exit(1)

  return wrapped
