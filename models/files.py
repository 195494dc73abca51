"""Result files that readers never see half-written, and the hashes that identify inputs."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import tempfile
from typing import Callable


def default_file_mode() -> int:
  """The mode `open()` gives a new file: 0o666 less the umask (usually 0o644)."""
  umask = os.umask(0o022)  # The only way to read it is to set it; put it back at once.
  os.umask(umask)
  return 0o666 & ~umask


def atomic_write(path: pathlib.Path, write: Callable[[str], object]) -> None:
  """Calls `write(temporary_path)`, then renames it to `path`, readable as `open()` would make
  it (mkstemp's private 0600 would follow the file to its final name)."""
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
  os.close(fd)
  try:
    write(tmp)
    os.chmod(tmp, default_file_mode())
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def write_json_atomically(path: pathlib.Path, payload: dict) -> None:
  """Writes JSON under a temporary name, then renames: readers never see a partial file."""
  text = json.dumps(payload, indent=2, sort_keys=True)
  atomic_write(path, lambda tmp: pathlib.Path(tmp).write_text(text))


def file_sha256(path: str | pathlib.Path) -> str:
  """Hex SHA-256 of a file's bytes (records which table or model a result came from)."""
  return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()
