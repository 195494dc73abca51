"""Helpers shared by the config files."""

from __future__ import annotations

import ml_collections


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
  """Parses the `:...` part of `--config=configs/x.py:task=sst2,runlocal`.

  Each comma-separated item is `key=value` or a bare `key` (meaning True). Values are cast to the
  type of the key's default, so `parse_arg('steps=5', steps=0).steps == 5`.

  Raises:
    ValueError: for a key without a default, or a value that does not cast.
  """
  parsed = ml_collections.ConfigDict(defaults)
  for item in filter(None, (arg or "").split(",")):
    key, has_value, value = item.partition("=")
    if key not in defaults:
      raise ValueError(f"Unknown config argument {key!r}; expected one of {sorted(defaults)}.")
    default = defaults[key]
    if isinstance(default, bool):
      if has_value and value.lower() not in ("true", "false", "1", "0"):
        raise ValueError(f"Config argument {key!r} takes true/false, got {value!r}.")
      parsed[key] = not has_value or value.lower() in ("true", "1")
    elif not has_value:
      raise ValueError(f"Config argument {key!r} needs a value: {key}=...")
    else:
      try:
        parsed[key] = type(default)(value)
      except ValueError as e:
        raise ValueError(f"Config argument {key}={value!r} is not a {type(default).__name__}.") \
            from e
  return parsed
