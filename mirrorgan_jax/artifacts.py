"""The frozen networks on disk: where each artifact lives, how it is written, read and checked.

The pretraining phases leave an artifact that later phases, sampling and
evaluation load frozen; the weight converters (`pretrained/`) write the same
artifacts from the authors' PyTorch checkpoints, and Inception-v3 for FID / IS:

| kind   | directory                 | variables                                 | config it must match |
|--------|---------------------------|-------------------------------------------|----------------------|
| DAMSM  | `<workdir>/damsm/artifact`  | {'text_encoder', 'image_encoder'}       | model.text_encoder / model.image_encoder |
| STREAM | `<workdir>/stream/artifact` | {'captioner'}                           | model.captioner |
| oracle | `<workdir>/oracle/artifact` | {'oracle'}                              | oracle |
| classifier | `<workdir>/classifier/artifact` | {'oracle'}                      | oracle |
| Inception-v3 | `eval.inception_path`     | {'params', 'batch_stats'}               | (converted; FID / IS) |

An artifact directory holds `variables/` (Orbax), `meta.json` (the config
sections of its networks, under the same dotted path as in the config, plus
what the phase measured) and `vocab.json` (the vocabulary; not for the oracle,
which reads no text). This module is all inference needs: it imports no
training code. `read` checks a directory once for completeness, kind and
architecture; `check_tree` checks variables against a model's template.
"""

import dataclasses
import json
import os
from typing import Any

from absl import logging
from etils import epath
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from mirrorgan_jax import vocab as vocab_lib
from mirrorgan_jax.infra import checkpointing
from mirrorgan_jax.models import factory
from mirrorgan_jax.models import image_encoder as image_encoder_lib
from mirrorgan_jax.models import oracle as oracle_lib

VOCAB_FILE = 'vocab.json'
META_FILE = 'meta.json'
_MAX_PROBLEMS = 20  # Mismatches listed in an error before "... and N more".
# Config fields added after the first artifacts were written, with the value they
# had before they existed: an artifact (or a config.json) without one used it.
ADDED_FIELD_DEFAULTS = {'small_cnn_pooling': 'mean', 'small_cnn_downsample': 'stride',
                        'image_every_step': False}


@dataclasses.dataclass(frozen=True)
class Kind:
  """One kind of artifact.

  Attributes:
    name: for messages, e.g. 'DAMSM'.
    phase: the phase that writes it; its directory is `<workdir>/<phase>/artifact`.
    keys: top-level keys of its variables.
    architecture: {dotted config section: fields that shape the weights or the
      features}; the others (dropout, train_backbone, ...) may differ between
      the artifact and the run that loads it. `small_cnn_*` fields count only
      when the section's backbone is 'small_cnn'.
    has_vocab: whether it reads text (and so stores its vocabulary).
    made_by: the command that writes one (for messages).
  """
  name: str
  phase: str
  keys: tuple[str, ...]
  architecture: dict[str, tuple[str, ...]]
  has_vocab: bool = True
  made_by: str = ''

  def __post_init__(self):
    if not self.made_by:
      object.__setattr__(self, 'made_by',
                         f'python -m mirrorgan_jax.main --mode {self.phase} ...')

  @property
  def a_name(self) -> str:
    """'a DAMSM', 'an oracle' (for messages)."""
    return ('an ' if self.name[0].lower() in 'aeiou' else 'a ') + self.name


TEXT, IMAGE, CAPTIONER, ORACLE_KEY = 'text_encoder', 'image_encoder', 'captioner', 'oracle'
DAMSM = Kind('DAMSM', 'damsm', (TEXT, IMAGE), {
    f'model.{TEXT}': ('embedding_dim', 'hidden_size'),
    f'model.{IMAGE}': ('backbone', 'input_size', 'small_cnn_features',
                       'small_cnn_pooling', 'small_cnn_downsample')})
STREAM = Kind('STREAM', 'stream', (CAPTIONER,), {
    f'model.{CAPTIONER}': ('backbone', 'input_size', 'small_cnn_features',
                           'small_cnn_pooling', 'small_cnn_downsample', 'feature_dim',
                           'embed_dim', 'hidden_size', 'image_every_step')})
ORACLE = Kind('oracle', 'oracle', (ORACLE_KEY,),
              {'oracle': ('image_size', 'features')}, has_vocab=False)
# The oracle's architecture trained from another seed: on captioned_shapes the
# pretrained image backbone of DAMSM (what ImageNet training is for the paper's
# Inception-v3), so the judge (the oracle) is not the network STEM learnt from.
CLASSIFIER = Kind('image classifier', 'classifier', (ORACLE_KEY,),
                  {'oracle': ('image_size', 'features')}, has_vocab=False)
# Converted weights for FID / IS (`python -m mirrorgan_jax.pretrained inception`);
# its path is `eval.inception_path`, not a phase's directory.
INCEPTION = Kind('Inception-v3', 'inception', ('params', 'batch_stats'), {},
                 has_vocab=False, made_by='python -m mirrorgan_jax.pretrained inception ...')


def directory(workdir: os.PathLike | str, kind: Kind) -> epath.Path:
  """Where `kind`'s phase writes its artifact: `<workdir>/<phase>/artifact`."""
  return epath.Path(workdir) / kind.phase / 'artifact'


def meta_sections(config: ml_collections.ConfigDict, kind: Kind) -> dict[str, Any]:
  """The config sections `kind` records in its meta.json, nested as in the config."""
  meta: dict[str, Any] = {}
  for section in kind.architecture:
    *parents, leaf = section.split('.')
    node = meta
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = _section(config, section).to_dict()
  return meta


def save(path: os.PathLike | str, variables: Any, vocab: vocab_lib.Vocabulary | None,
         meta: dict) -> None:
  """Writes variables, their vocabulary (None: networks without text) and metadata."""
  path = checkpointing.resolve(path)
  path.mkdir(parents=True, exist_ok=True)
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(path / 'variables', jax.device_get(variables), force=True)
  checkpointer.wait_until_finished()
  if jax.process_index() == 0:
    if vocab is not None:
      vocab.save(path / VOCAB_FILE)
    (path / META_FILE).write_text(json.dumps(meta, indent=1, sort_keys=True))


def _required(kind: Kind) -> tuple[str, ...]:
  return ('variables', META_FILE) + ((VOCAB_FILE,) if kind.has_vocab else ())


def exists(path: os.PathLike | str, kind: Kind) -> bool:
  """Whether `path` holds every file of a `kind` artifact."""
  path = checkpointing.resolve(path)
  return all((path / name).exists() for name in _required(kind))


def read(path: os.PathLike | str, kind: Kind,
         config: ml_collections.ConfigDict | None = None
         ) -> tuple[dict[str, Any], vocab_lib.Vocabulary | None, dict]:
  """Reads a `kind` artifact, each file once.

  Args:
    path: the artifact directory.
    kind: DAMSM, STREAM, ORACLE or CLASSIFIER.
    config: if given, its architecture fields must equal the recorded ones.
  Returns:
    ({key: variables as numpy arrays} for `kind.keys`, vocabulary (None for
    networks without text), metadata).
  Raises:
    FileNotFoundError: a part is missing (names which one).
    ValueError: unreadable weights, another kind of artifact, or a config
      mismatch (names every differing field).
  """
  path = checkpointing.resolve(path)
  for name in _required(kind):
    if not (path / name).exists():
      needed = ', '.join(n + ('/' if n == 'variables' else '') for n in _required(kind))
      raise FileNotFoundError(f'{path / name} is missing: {path} is not a complete '
                              f'{kind.name} artifact (it needs {needed}; `{kind.made_by}` '
                              'writes one).')
  try:
    variables = ocp.StandardCheckpointer().restore(path / 'variables')
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f'cannot read the weights in {path / "variables"}: '
                     f'{type(e).__name__}: {e}') from e
  if not isinstance(variables, dict) or not set(kind.keys) <= set(variables):
    held = sorted(variables) if isinstance(variables, dict) else type(variables).__name__
    raise ValueError(f'{path} holds {held}, not {kind.a_name} artifact (it needs '
                     f'{list(kind.keys)} variables)')
  meta = json.loads((path / META_FILE).read_text())
  if config is not None:
    check_config(meta, config, kind, path)
  vocab = vocab_lib.Vocabulary.load(path / VOCAB_FILE) if kind.has_vocab else None
  return {k: variables[k] for k in kind.keys}, vocab, meta


def _section(tree: Any, dotted: str) -> Any:
  for name in dotted.split('.'):
    tree = tree.get(name) if hasattr(tree, 'get') else None
  return tree


def _field(section: Any, name: str) -> Any:
  return section.get(name, ADDED_FIELD_DEFAULTS.get(name))


def _comparable(value: Any) -> Any:
  """JSON turns tuples into lists; compare both as lists."""
  return list(value) if isinstance(value, (list, tuple)) else value


def check_config(meta: dict, config: ml_collections.ConfigDict, kind: Kind,
                 path: Any) -> None:
  """Raises ValueError naming every architecture field where artifact and config differ."""
  diffs = []
  for section, names in kind.architecture.items():
    recorded = _section(meta, section)
    if not isinstance(recorded, dict):
      raise ValueError(f'{path}/{META_FILE} records no {section} config; it is not '
                       f'{kind.a_name} artifact')
    wanted = _section(config, section)
    for name in names:
      if name.startswith('small_cnn_') and wanted.get('backbone') != 'small_cnn':
        continue
      have, asked = _field(recorded, name), _field(wanted, name)
      if _comparable(have) != _comparable(asked):
        diffs.append(f'{section}.{name}: artifact {have!r}, config {asked!r}')
  if diffs:
    raise ValueError(
        f'the {kind.name} artifact {path} was built with other networks than the config: '
        + '; '.join(diffs) + ". Set these config fields to the artifact's values or "
        f'retrain {kind.name}.')


def tree_mismatches(got: Any, want: Any) -> list[str]:
  """Paths whose presence or shape differs between variables and a template."""
  flat = lambda tree: {jax.tree_util.keystr(p): tuple(np.shape(x))
                       for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}
  got, want = flat(got), flat(want)
  out = [f'{k}: missing' for k in sorted(want.keys() - got.keys())]
  out += [f'{k}: unexpected' for k in sorted(got.keys() - want.keys())]
  out += [f'{k}: {got[k]} instead of {want[k]}'
          for k in sorted(want.keys() & got.keys()) if got[k] != want[k]]
  return out


def check_tree(variables: Any, template: Any, what: str) -> None:
  """Raises ValueError listing where `variables` do not fit `template`.

  Args:
    variables: variables read from disk or converted.
    template: the model's variables or their shapes (e.g. `jax.eval_shape`).
    what: what they are, e.g. 'stream.init_checkpoint runs/x' (for the message).
  """
  problems = tree_mismatches(variables, template)
  if problems:
    more = len(problems) - _MAX_PROBLEMS
    listed = problems[:_MAX_PROBLEMS] + ([f'... and {more} more'] if more > 0 else [])
    raise ValueError(f'{what} does not fit the model:\n  ' + '\n  '.join(listed))


def check_vocab(vocab: vocab_lib.Vocabulary, other: vocab_lib.Vocabulary, what: str
                ) -> None:
  """Raises ValueError unless an artifact's vocabulary equals the run's."""
  if other != vocab:
    raise ValueError(
        f'{what} was trained with a different vocabulary ({len(other)} words) than this '
        f'run ({len(vocab)} words); retrain it or use its vocabulary')


@dataclasses.dataclass(frozen=True)
class Pretrained:
  """The frozen networks of a run, read once: STEM (DAMSM) and STREAM."""
  text_encoder: dict[str, Any]
  image_encoder: dict[str, Any]
  captioner: dict[str, Any]
  vocab: vocab_lib.Vocabulary


def load_pretrained(workdir: os.PathLike | str, config: ml_collections.ConfigDict,
                    vocab: vocab_lib.Vocabulary | None = None) -> Pretrained:
  """The DAMSM and STREAM artifacts of `workdir`, checked against `config` and each other.

  Args:
    workdir: the run directory.
    config: the run's config (architecture fields are compared).
    vocab: the run's vocabulary, if known; default the DAMSM artifact's.
  Raises:
    FileNotFoundError / ValueError as `read`; ValueError when the artifacts'
    vocabularies differ from each other or from `vocab`.
  """
  encoders, damsm_vocab, _ = read(directory(workdir, DAMSM), DAMSM, config)
  stream, stream_vocab, _ = read(directory(workdir, STREAM), STREAM, config)
  vocab = vocab or damsm_vocab
  check_vocab(vocab, damsm_vocab, 'the DAMSM artifact')
  check_vocab(vocab, stream_vocab, 'the STREAM artifact')
  return Pretrained(text_encoder=encoders[TEXT], image_encoder=encoders[IMAGE],
                    captioner=stream[CAPTIONER], vocab=vocab)


def classifier_backbone(workdir: os.PathLike | str,
                        config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The classifier artifact's conv blocks as small-CNN backbone variables.

  {'params', 'batch_stats'} of its `conv<i>` / `bn<i>` blocks: `Oracle` and
  `SmallCNN(downsample='maxpool')` name and order them alike (`config_check`
  requires the same widths and input size), so they load as the backbone of
  DAMSM's image encoder or STREAM's captioner (`damsm.pretrained_backbone`,
  `stream.pretrained_backbone`; inserted with `with_backbone`).
  Raises:
    FileNotFoundError / ValueError as `read` (no classifier artifact: run
    `--mode classifier` or `--mode all` first).
  """
  variables, _, _ = read(directory(workdir, CLASSIFIER), CLASSIFIER, config)
  blocks = variables[ORACLE_KEY]
  return {collection: {name: value for name, value in blocks[collection].items()
                       if name.startswith(('conv', 'bn'))}
          for collection in ('params', 'batch_stats')}


def pretrained_backbone(workdir: os.PathLike | str, config: ml_collections.ConfigDict,
                        section: str) -> dict[str, Any] | None:
  """The backbone `config.<section>.pretrained_backbone` asks for, or None.

  `section` is one of `config_check.BACKBONE_USERS` ('damsm', 'stream'); the
  only choice is 'classifier' (`classifier_backbone`; config_check refuses others).
  """
  if not config[section].get('pretrained_backbone'):
    return None
  return classifier_backbone(workdir, config)


def with_backbone(variables: dict[str, Any], backbone: dict[str, Any],
                  path: tuple[str, ...], what: str) -> dict[str, Any]:
  """`variables` with the backbone subtree under `path` replaced by `backbone`.

  Args:
    variables: a model's {'params', 'batch_stats'}.
    backbone: {'params', 'batch_stats'} of a backbone (`classifier_backbone`).
    path: the keys above the backbone subtree in each collection, e.g. () for
      DAMSM's image encoder, ('encoder',) for the captioner.
    what: the network, for the error message.
  Raises:
    ValueError: the backbone's variables do not fit the model's.
  """
  out = dict(variables)
  for collection in ('params', 'batch_stats'):
    parents = [out[collection]]
    for key in path:
      parents.append(parents[-1][key])
    check_tree(backbone[collection], parents[-1][image_encoder_lib.BACKBONE],
               f'the pretrained backbone of {what}')
    node = {**parents[-1],
            image_encoder_lib.BACKBONE: jax.tree.map(jnp.asarray, backbone[collection])}
    for parent, key in zip(reversed(parents[:-1]), reversed(path)):
      node = {**parent, key: node}
    out[collection] = node
  return out


def load_oracle(path: os.PathLike | str, config: ml_collections.ConfigDict,
                batch_size: int | None = None) -> oracle_lib.OracleClassifier:
  """The oracle classifier of an oracle artifact, in inference mode.

  Args:
    path: the artifact directory (`directory(workdir, ORACLE)`).
    config: its `oracle.image_size` / `oracle.features` must match the artifact.
    batch_size: images per compiled call (default `config.eval.batch_size`).
  Raises:
    FileNotFoundError / ValueError as `read`; ValueError when the variables do
    not fit the model.
  """
  variables, _, meta = read(path, ORACLE, config)
  model = factory.create_oracle(config, meta.get('hidden'))
  template = jax.eval_shape(
      lambda: model.init(jax.random.PRNGKey(0), factory.oracle_inputs(config)))
  check_tree(variables[ORACLE_KEY], template, f'the oracle artifact {path}')
  logging.info('Oracle loaded from %s (real test accuracy %s).', path,
               (meta.get('eval') or {}).get('accuracy'))
  return oracle_lib.OracleClassifier(
      model, jax.device_put(variables[ORACLE_KEY]), image_size=config.oracle.image_size,
      batch_size=batch_size or config.eval.batch_size)
