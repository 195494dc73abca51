"""Imports point one way: models < latency_loss < darts (data < training < nas) < export < the
orchestrators (pipeline, report, the job entry points) < bench. Parsed, never executed."""

import ast
import pathlib

import pytest

REPO = pathlib.Path(__file__).parents[1]
# Lowest first. A module may import its own layer and the layers below, never one above.
LAYERS = (
    ("models", "configs"),
    ("latency_loss",),
    ("darts.data",),
    ("darts.training",),
    ("darts.nas",),
    ("export",),
    ("darts.pipeline", "darts.stages", "darts.layout", "darts.report", "darts.train",
     "darts.search"),
    ("bench",),
)
PACKAGES = ("models", "configs", "latency_loss", "darts", "export", "bench")


def layer_of(module: str) -> int | None:
  """The layer of a dotted module name (longest matching prefix), None if not ours."""
  matches = [(len(prefix), i) for i, layer in enumerate(LAYERS) for prefix in layer
             if module == prefix or module.startswith(prefix + ".")]
  return max(matches)[1] if matches else None


def module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(REPO).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: pathlib.Path) -> list[tuple[int, str]]:
  """(line, module) of every import in the file, including the lazy ones inside functions."""
  found = []
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.Import):
      found += [(node.lineno, alias.name) for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      # `from darts import report` imports the module darts.report.
      found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
  return found


def sources() -> list[pathlib.Path]:
  return sorted(p for package in PACKAGES for p in (REPO / package).rglob("*.py"))


def test_every_module_is_in_a_layer():
  assert [module_name(p) for p in sources() if layer_of(module_name(p)) is None
          and module_name(p) != "darts"] == []


def test_imports_never_point_up():
  upward = []
  for path in sources():
    here = layer_of(module_name(path))
    for line, module in imported_modules(path):
      there = layer_of(module)
      if here is not None and there is not None and there > here:
        upward.append(f"{path.relative_to(REPO)}:{line} imports {module}")
  assert upward == []


@pytest.mark.parametrize("module, layer", [("models.tf_bert", 0), ("darts.nas.discretize", 4),
                                           ("darts.report", 6), ("darts", None)])
def test_layer_of(module, layer):
  assert layer_of(module) == layer


def test_an_upward_import_is_found(tmp_path):
  bad = tmp_path / "bad.py"
  bad.write_text("def f():\n  from export import exporter\n")
  assert imported_modules(bad) == [(2, "export.exporter")]
  assert layer_of("export.exporter") > layer_of("latency_loss.table")
