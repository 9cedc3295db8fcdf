r"""Parameter overview of every MirrorGAN network of a config (shapes only).

  python -m mirrorgan_jax.models --config configs/cub.py [--vocab_size 5450] \
      [--compact] [--max_lines N] [--config.model.generator.glam=reference]

Prints, for each network (text encoder, DAMSM image encoder, generator, the
discriminators, the STREAM captioner), a table of its parameters, then a summary
with per-module totals (image encoder and captioner split into trainable head
and backbone, the generator into its stages) and the image shape of every
generator stage. `--compact` prints the summary only. Shapes come from
`jax.eval_shape`, so even the paper config allocates and compiles nothing.
`--vocab_size` defaults to 5,450, the CUB vocabulary of AttnGAN's encoders.
"""

import sys
from typing import Any, Sequence

from absl import flags
from clu import parameter_overview
import jax
import jax.numpy as jnp
from ml_collections import config_flags
import numpy as np

from mirrorgan_jax.data import cub
from mirrorgan_jax.models import factory
from mirrorgan_jax.models import image_encoder

_CAPTION_STEPS = 4  # Any caption length gives the same parameter shapes.


def abstract_variables(config, models: factory.Models) -> dict[str, Any]:
  """Variables of every network as `jax.ShapeDtypeStruct` trees (no allocation).

  Args:
    config: experiment config (`model` section).
    models: `factory.create_models(config, vocab_size)`.
  Returns:
    {'text_encoder', 'image_encoder', 'generator', 'd<size>'..., 'captioner'}
    -> {'params': ..., 'batch_stats'?: ...}.
  """
  m = config.model
  key = jax.random.key(0)
  tokens = jnp.ones((1, _CAPTION_STEPS), jnp.int32)
  lengths = jnp.full((1,), _CAPTION_STEPS, jnp.int32)
  text_dim = 2 * m.text_encoder.hidden_size
  sentence = jnp.zeros((1, text_dim))

  def shapes(module, *args, **kwargs):
    rngs = {'params': key, 'noise': key, 'dropout': key}
    return jax.eval_shape(lambda: module.init(rngs, *args, **kwargs))

  out = {
      'text_encoder': shapes(models.text_encoder, tokens, lengths),
      'image_encoder': shapes(models.image_encoder, jnp.zeros(
          (1, m.image_encoder.input_size, m.image_encoder.input_size, 3))),
      'generator': shapes(
          models.generator, jnp.zeros((1, m.generator.z_dim)), sentence,
          jnp.zeros((1, _CAPTION_STEPS, text_dim)), lengths=lengths),
  }
  for name, d in models.discriminators.items():
    out[name] = shapes(d, jnp.zeros((1, d.image_size, d.image_size, 3)), sentence)
  size = m.captioner.input_size
  out['captioner'] = shapes(models.captioner, jnp.zeros((1, size, size, 3)),
                            tokens, lengths)
  return out


def stage_shapes(config, models: factory.Models,
                 generator_variables: Any) -> list[tuple[int, ...]]:
  """[H, W, C] of the image each generator stage outputs (via `jax.eval_shape`)."""
  g = config.model.generator
  text_dim = 2 * config.model.text_encoder.hidden_size
  lengths = jnp.full((1,), _CAPTION_STEPS, jnp.int32)
  out = jax.eval_shape(
      lambda v: models.generator.apply(
          v, jnp.zeros((1, g.z_dim)), jnp.zeros((1, text_dim)),
          jnp.zeros((1, _CAPTION_STEPS, text_dim)), lengths=lengths,
          eps=jnp.zeros((1, g.condition_dim))),
      generator_variables)
  return [tuple(image.shape[1:]) for image in out['images']]


def _split(tree: dict, name: str) -> tuple[dict, dict]:
  """(tree without the subtree `name`, the subtree `name` or {})."""
  return {k: v for k, v in tree.items() if k != name}, tree.get(name, {})


def module_groups(variables: dict[str, Any]) -> list[tuple[str, list[tuple[str, Any]]]]:
  """Per-network parameter groups for the overview.

  Args:
    variables: the output of `abstract_variables`.
  Returns:
    [(network, [(part, params subtree), ...]), ...]; parts split the image
    encoder and captioner into head and backbone and the generator into CA and
    stages (stage i with its image head `image{i}`).
  """
  groups = [('text_encoder', [('', variables['text_encoder']['params'])])]
  head, backbone = _split(variables['image_encoder']['params'], image_encoder.BACKBONE)
  groups.append(('image_encoder', [('head', head), ('backbone', backbone)]))
  g = variables['generator']['params']
  stages = [('ca', g['ca'])]
  i = 0
  while f'stage{i}' in g:
    stage = {f'stage{i}': g[f'stage{i}'], f'image{i}': g[f'image{i}']}
    stages.append((f'stage{i}', stage))
    i += 1
  groups.append(('generator', stages))
  groups += [(name, [('', v['params'])]) for name, v in variables.items()
             if name.startswith('d') and name[1:].isdigit()]
  cap = variables['captioner']['params']
  enc_head, enc_backbone = _split(cap['encoder'], image_encoder.BACKBONE)
  groups.append(('captioner', [('encoder_head', enc_head), ('backbone', enc_backbone),
                               ('decoder', cap['decoder'])]))
  return groups


def _count(tree: Any) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def summary(groups, variables: dict[str, Any], shapes: Sequence[tuple[int, ...]]) -> str:
  """The per-module totals table and the generator stage shapes, as text."""
  rows = [('module', 'parameters', 'bn statistics')]
  for network, parts in groups:
    stats = _count(variables[network].get('batch_stats', {}))
    rows.append((network, f'{sum(_count(p) for _, p in parts):,}', f'{stats:,}'))
    if len(parts) > 1:
      for part, params in parts:
        label = part
        if part.startswith('stage'):
          h, w, c = shapes[int(part[len('stage'):])]
          label = f'{part} ({h}x{w}x{c})'
        rows.append((f'  {label}', f'{_count(params):,}', ''))
  total = sum(_count(v['params']) for v in variables.values())
  total_stats = sum(_count(v.get('batch_stats', {})) for v in variables.values())
  rows.append(('total', f'{total:,}', f'{total_stats:,}'))
  widths = [max(len(r[i]) for r in rows) for i in range(3)]
  lines = [f'{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:>{widths[2]}}'.rstrip()
           for r in rows]
  lines.insert(1, '-' * len(lines[0]))
  lines.insert(len(lines) - 1, '-' * len(lines[0]))
  lines.append('generator stages: ' + ', '.join('x'.join(map(str, s)) for s in shapes))
  return '\n'.join(lines)


def _define_flags(argv: Sequence[str]) -> flags.FlagValues:
  """A private flag set (no clash with other entry points' global flags)."""
  fv = flags.FlagValues()
  config_flags.DEFINE_config_file(
      'config', None, 'Experiment config, e.g. configs/cub.py, configs/shapes.py:smoke.',
      flag_values=fv, lock_config=True, sys_argv=list(argv))
  flags.DEFINE_integer('vocab_size', cub.VOCAB_SIZE,
                       'Vocabulary size (CUB: 5450, AttnGAN encoders).', flag_values=fv)
  flags.DEFINE_boolean('compact', False, 'Print only the per-module totals.',
                       flag_values=fv)
  flags.DEFINE_integer('max_lines', None, 'Rows per parameter table (default: all).',
                       flag_values=fv)
  return fv


def main(argv: Sequence[str]) -> int:
  """Runs the CLI. Args: argv with the program name first. Returns: exit code."""
  fv = _define_flags(argv)
  if any(a in ('-h', '--help', '-help') for a in argv[1:]):
    print(__doc__ + '\n' + fv.get_help())
    return 0
  try:
    rest = fv(list(argv))
    if len(rest) > 1:
      raise flags.Error(f'unexpected arguments: {rest[1:]}')
    if fv.config is None:
      raise flags.Error('--config is required, e.g. --config configs/cub.py')
    _ = fv.config.model  # A config file that failed to load raises only when read.
  except (flags.Error, AttributeError, KeyError, OSError) as e:  # Bad flag or config.
    print(f'error: {e}\n{__doc__}', file=sys.stderr)
    return 2
  config = fv.config
  models = factory.create_models(config, fv.vocab_size)
  variables = abstract_variables(config, models)
  shapes = stage_shapes(config, models, variables['generator'])
  groups = module_groups(variables)
  if not fv.compact:
    for network, parts in groups:
      for part, params in parts:
        print(f'{network} {part}'.strip())
        print(parameter_overview.get_parameter_overview(
            params, include_stats=False, max_lines=fv.max_lines))
        print()
  print(summary(groups, variables, shapes))
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv))
