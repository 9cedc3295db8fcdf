"""Checks that a pretrained artifact was built with the networks a config asks for.

Artifacts record the config sections of the networks they hold (`meta.json`,
`model.<net>`); loading one into a run with other architecture fields would fail
deep inside Flax, so loaders compare the fields first and name every mismatch.
"""

from typing import Any, Iterable

import ml_collections


def _comparable(value: Any) -> Any:
  """JSON turns tuples into lists; compare both as lists."""
  return list(value) if isinstance(value, (list, tuple)) else value


def check_architecture(meta: dict, config: ml_collections.ConfigDict,
                       fields: dict[str, Iterable[str]], path: Any, kind: str) -> None:
  """Raises ValueError naming every field where the artifact and config differ.

  Args:
    meta: the artifact's metadata; `meta['model'][net]` records each network.
    config: the run's config; `config.model[net]` is compared.
    fields: {net: architecture field names}; `small_cnn_features` counts only
      when the config's backbone is 'small_cnn'.
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
      if name == 'small_cnn_features' and want.get('backbone') != 'small_cnn':
        continue
      if _comparable(recorded[net].get(name)) != _comparable(want[name]):
        diffs.append(f'model.{net}.{name}: artifact {recorded[net].get(name)!r}, '
                     f'config {want[name]!r}')
  if diffs:
    raise ValueError(
        f'the {kind} artifact {path} was built with other networks than the config: '
        + '; '.join(diffs) + f". Set these config fields to the artifact's values or "
        f'retrain {kind}.')
