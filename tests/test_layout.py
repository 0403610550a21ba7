"""The house rules of BUILD.md's "Layout", checked on the source: each
stage imports only the stages before it and the shared core, and no
module imports in a circle."""

import ast
import os

TAGGER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))), "tagger")

# The stages in the order data flows; the core (tagger/*.py) comes first.
ORDER = ("core", "audio", "shards", "input", "model", "train", "infer",
         "recipe", "api", "datasets", "lab", "cli")


def _modules():
  """{dotted module: path} of the package."""
  found = {}
  for root, _, files in os.walk(TAGGER):
    for name in files:
      if name.endswith(".py"):
        path = os.path.join(root, name)
        rel = os.path.relpath(path, os.path.dirname(TAGGER))[:-3]
        found[rel.replace(os.sep, ".").removesuffix(".__init__")] = path
  return found


def _stage(module: str) -> str:
  parts = module.split(".")
  if len(parts) == 1 or (len(parts) == 2 and parts[1] not in ORDER):
    return "core"
  return parts[1]


def _imports(modules):
  """{module: set of tagger modules it imports (anywhere in the file)}."""
  graph = {}
  for module, path in modules.items():
    targets = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
      if isinstance(node, ast.ImportFrom) and node.module and (
          node.module == "tagger" or node.module.startswith("tagger.")):
        for alias in node.names:
          full = f"{node.module}.{alias.name}"
          targets.add(full if full in modules else node.module)
      elif isinstance(node, ast.Import):
        targets.update(a.name for a in node.names
                       if a.name.startswith("tagger"))
    targets.discard(module)
    graph[module] = targets
  return graph


def test_no_stage_imports_a_later_one():
  graph = _imports(_modules())
  upward = [(a, b) for a, targets in graph.items() for b in targets
            if ORDER.index(_stage(b)) > ORDER.index(_stage(a))]
  assert not upward, upward


def test_the_import_graph_has_no_cycle():
  graph = _imports(_modules())
  state, cycles = {}, []

  def visit(node, path):
    state[node] = "open"
    for target in graph.get(node, ()):
      if state.get(target) == "open":
        cycles.append(path[path.index(target):] + [target])
      elif target not in state:
        visit(target, path + [target])
    state[node] = "done"

  for node in graph:
    if node not in state:
      visit(node, [node])
  # The package itself (tagger/__init__.py) is imported by everything and
  # imports nothing of tagger, so it closes no circle.
  assert not [c for c in cycles if "tagger" not in c], cycles


def test_every_stage_is_a_folder_with_a_docstring():
  for stage in ORDER[1:]:
    if stage in ("api", "recipe"):   # one module each, above the stages
      assert os.path.isfile(os.path.join(TAGGER, f"{stage}.py"))
      continue
    init = os.path.join(TAGGER, stage, "__init__.py")
    assert ast.get_docstring(ast.parse(open(init).read())), init
