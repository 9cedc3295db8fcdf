"""The import rules of ARCHITECTURE.md, read from the source with `ast`."""

import ast
import pathlib

from tests.conftest import ROOT

PACKAGE = pathlib.Path(ROOT) / 'mirrorgan_jax'
CLIS = {'main', 'sample_cli', 'benchmark', 'pretrained', 'compare_runs', 'multiprocess_check'}
# Group (top-level module or folder) -> the other groups it may import.
ALLOWED = {
    'tokenizer': set(),
    'vocab': {'tokenizer'},
    'infra': {'models'},  # config_check reads the models' constraints.
    'models': {'infra', 'data'},  # The oracle: class orders, fixed-size batches.
    'data': {'models', 'vocab', 'tokenizer'},
    'artifacts': {'infra', 'models', 'vocab'},
    'trained_model': {'artifacts', 'infra', 'models', 'vocab'},
    'sampling': {'infra', 'models', 'tokenizer', 'vocab'},
    'evaluation': {'artifacts', 'data', 'infra', 'models', 'sampling', 'tokenizer',
                   'trained_model', 'vocab'},
    'demo': {'data', 'infra', 'models', 'sampling', 'trained_model', 'vocab'},
    'phases': {'artifacts', 'data', 'evaluation', 'infra', 'models', 'sampling',
               'trained_model', 'tokenizer', 'vocab'},
}
INFERENCE = ('trained_model', 'sampling', 'evaluation', 'demo')


def _modules() -> dict[str, pathlib.Path]:
  out = {}
  for path in PACKAGE.rglob('*.py'):
    parts = path.relative_to(PACKAGE.parent).with_suffix('').parts
    name = '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)
    out[name] = path
  return out


def _imports(path: pathlib.Path, modules) -> tuple[set[str], set[str]]:
  """(project modules, third-party top-level packages) that `path` imports."""
  ours, theirs = set(), set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.ImportFrom) and node.module:
      if node.module.startswith('mirrorgan_jax'):
        for alias in node.names:
          full = f'{node.module}.{alias.name}'
          ours.add(full if full in modules else node.module)
      else:
        theirs.add(node.module.split('.')[0])
    elif isinstance(node, ast.Import):
      for alias in node.names:
        (ours if alias.name.startswith('mirrorgan_jax') else theirs).add(
            alias.name if alias.name.startswith('mirrorgan_jax') else
            alias.name.split('.')[0])
  return ours & set(modules), theirs


def _group(module: str) -> str:
  parts = module.split('.')
  return parts[1] if len(parts) > 1 else parts[0]


def test_every_group_imports_only_what_it_may():
  modules = _modules()
  wrong = []
  for name, path in modules.items():
    group = _group(name)
    if group in CLIS or group == 'mirrorgan_jax':
      continue
    assert group in ALLOWED, f'{name}: a new group; add it to ARCHITECTURE.md and ALLOWED'
    for target in _imports(path, modules)[0]:
      other = _group(target)
      if other != group and other not in ALLOWED[group]:
        wrong.append(f'{name} -> {target}')
  assert not wrong, wrong


def test_inference_reaches_no_training_code():
  """Nothing `trained_model`, `sampling` or `evaluation/` loads, even indirectly,
  is a phase or uses an optimiser."""
  modules = _modules()
  imports = {name: _imports(path, modules) for name, path in modules.items()}
  for start in (m for m in modules if _group(m) in INFERENCE):
    seen, todo = {start}, [start]
    while todo:
      for target in imports[todo.pop()][0] - seen:
        seen.add(target)
        todo.append(target)
    assert not {m for m in seen if _group(m) == 'phases'}, start
    assert not {m for m in seen if 'optax' in imports[m][1]}, start


def test_only_the_demo_imports_gradio():
  """Gradio is the demo's optional extra: training and inference run without it."""
  modules = _modules()
  users = {name for name, path in modules.items() if 'gradio' in _imports(path, modules)[1]}
  assert users and all(_group(name) == 'demo' for name in users), users


def test_import_parser_sees_both_kinds_of_import(tmp_path):
  modules = _modules()
  source = tmp_path / 'fake.py'
  source.write_text('import optax\nfrom mirrorgan_jax.phases import gan_step\n'
                    'from mirrorgan_jax import artifacts as a\nimport jax.numpy as jnp\n')
  ours, theirs = _imports(source, modules)
  assert ours == {'mirrorgan_jax.phases.gan_step', 'mirrorgan_jax.artifacts'}
  assert theirs == {'optax', 'jax'}
