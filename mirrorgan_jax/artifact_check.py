"""Checks that a pretrained artifact was built with the networks a config asks for.

Artifacts record the config sections of the networks they hold (`meta.json`,
`model.<net>`); loading one into a run with other architecture fields would fail
deep inside Flax, so loaders compare the fields first and name every mismatch.
"""

from typing import Any, Iterable

import ml_collections


# Fields added after the first artifacts were written, with the value they had
# before they existed: an artifact (or a config.json) without one used it.
ADDED_FIELD_DEFAULTS = {'small_cnn_pooling': 'mean', 'small_cnn_downsample': 'stride',
                        'image_every_step': False}


def _field(section: Any, name: str) -> Any:
  return section.get(name, ADDED_FIELD_DEFAULTS.get(name))


def _comparable(value: Any) -> Any:
  """JSON turns tuples into lists; compare both as lists."""
  return list(value) if isinstance(value, (list, tuple)) else value


def check_architecture(meta: dict, config: ml_collections.ConfigDict,
                       fields: dict[str, Iterable[str]], path: Any, kind: str) -> None:
  """Raises ValueError naming every field where the artifact and config differ.

  Args:
    meta: the artifact's metadata; `meta['model'][net]` records each network.
    config: the run's config; `config.model[net]` is compared.
    fields: {net: architecture field names}; the `small_cnn_*` fields count
      only when the config's backbone is 'small_cnn'.
    path: the artifact (for messages).
    kind: what the artifact is, e.g. 'DAMSM' (for messages).
  """
  recorded = meta.get('model') or {}
  diffs = []
  for net, names in fields.items():
    if not isinstance(recorded.get(net), dict):
      raise ValueError(f'{path}/meta.json records no model.{net} config; it is not a '
                       f'{kind} artifact')
    want = config.model[net]
    for name in names:
      if name.startswith('small_cnn_') and want.get('backbone') != 'small_cnn':
        continue
      have, asked = _field(recorded[net], name), _field(want, name)
      if _comparable(have) != _comparable(asked):
        diffs.append(f'model.{net}.{name}: artifact {have!r}, config {asked!r}')
  if diffs:
    raise ValueError(
        f'the {kind} artifact {path} was built with other networks than the config: '
        + '; '.join(diffs) + f". Set these config fields to the artifact's values or "
        f'retrain {kind}.')
