"""Log hygiene for the jobs: our progress lines stay readable."""

import logging


class _DropChattyLibraries(logging.Filter):
  """Drops INFO/DEBUG records of libraries that log every file they write (orbax)."""

  CHATTY = ("/orbax/",)

  def filter(self, record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING or not any(
        part in record.pathname for part in self.CHATTY)


def quiet_library_logs() -> None:
  """Keeps warnings of chatty libraries but not their INFO lines (call from a job's main)."""
  for handler in logging.getLogger().handlers + logging.getLogger("absl").handlers:
    handler.addFilter(_DropChattyLibraries())
