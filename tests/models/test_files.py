"""Result files: atomic, and readable like any file the user's shell would create."""

import os
import stat

from models import files


def test_atomic_writes_get_the_mode_of_a_plain_open(tmp_path):
  files.write_json_atomically(tmp_path / "result.json", {"a": 1})
  (tmp_path / "plain.txt").write_text("x")
  mode = lambda name: stat.S_IMODE(os.stat(tmp_path / name).st_mode)
  assert mode("result.json") == mode("plain.txt") == files.default_file_mode()
  old = os.umask(0o027)
  try:
    files.write_json_atomically(tmp_path / "group.json", {"a": 1})
  finally:
    os.umask(old)
  assert mode("group.json") == 0o640
  assert not list(tmp_path.glob(".*"))  # No temporary file left behind.
