"""The oracle phase and the oracle semantic-accuracy protocol on captioned_shapes.

The oracle (`models/oracle.py`) is a small classifier trained on real
captioned_shapes images to read shape, colour, size and position of the main
object (`objects[0]`), the object count and the background colour. It gives a
ground-truth check of semantic consistency: a generated image is scored on the
attributes its caption states.

Training: Adam with a cosine decay from `oracle.learning_rate` to 0 over the
phase, on the sum over heads of each head's mean cross-entropy, for
`oracle.num_epochs` epochs of the train split (seeded shuffle per epoch,
resumable), images resized to `oracle.image_size` in [-1, 1]. In a two-object
scene nothing in the image says which object is `objects[0]` (the same picture
arises from 'A left of B' and 'B right of A'), so the object heads learn and
are scored on one-object scenes only; `count` and `background` use every scene. Every epoch and at the end, per-attribute accuracy
on the real test split (same rule) goes to TensorBoard as
`eval/accuracy_<attr>`; the artifact `<workdir>/oracle/artifact` holds the
variables, the oracle config and those accuracies (no vocabulary).

Protocol for generated images (used by the evaluator):
  1. `test_records(config)` lists the test split in TFDS file order (the order
     of `input_pipeline`'s eval set): every image's captions and true labels.
  2. Generated image i is made from caption c of test image i.
  3. Attribute a of image i is scored iff `mentioned(c, num_objects[i])[a]`:
     the caption states it (object attributes only in one-object scenes);
     the target is test image i's ground-truth label.
  4. `load_oracle(path, config).predict(images)` gives the oracle's labels and
     `accuracy(predictions, labels, mask)` the per-attribute accuracy;
     `.features(images)` the penultimate features for an "oracle FID".
"""

import functools
from typing import Any, Iterator, NamedTuple, Sequence

from absl import logging
from etils import epath
import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tensorflow as tf
import tensorflow_datasets as tfds

from mirrorgan_jax import checkpointing
from mirrorgan_jax import console
from mirrorgan_jax import fast_init
from mirrorgan_jax import parallel
from mirrorgan_jax import tokenizer
from mirrorgan_jax import training_loop
from mirrorgan_jax.data import input_pipeline
from mirrorgan_jax.data import preprocessing
from mirrorgan_jax.data import shapes_scene
from mirrorgan_jax.models import oracle as oracle_lib

ATTRIBUTES = oracle_lib.ATTRIBUTES
OracleClassifier = oracle_lib.OracleClassifier  # What `load_oracle` returns.
OBJECT_ATTRIBUTES = oracle_lib.OBJECT_ATTRIBUTES
DATASET = 'captioned_shapes'  # The only dataset with ground-truth attributes.
ARTIFACT_KEY = 'oracle'  # The artifact's variables are {ARTIFACT_KEY: {...}}.
ARCHITECTURE_FIELDS = ('image_size', 'features')  # `config.oracle` fields of the weights.
Batch = dict[str, np.ndarray]

# Caption words that state an attribute, from the caption generator's tables.
_SIZE_WORDS = frozenset(w for ws in shapes_scene.SIZE_WORDS.values() for w in ws)
_BACKGROUND_WORDS = frozenset(
    [*shapes_scene.BACKGROUNDS, *(w for ws in shapes_scene.BACKGROUND_WORDS.values()
                                  for w in ws)])


def _position_words() -> frozenset[str]:
  """Words of a position's phrases that no other position's phrases use.

  E.g. 'left' (not 'on', 'the', 'side'); 'top' and 'upper'; 'center' and 'middle'.
  """
  words = {p: {w for phrase in v for w in tokenizer.tokenize(phrase)}
           for p, v in shapes_scene.POSITION_PHRASES.items()}
  return frozenset(w for p, ws in words.items() for w in ws
                   if not any(w in words[q] for q in words if q != p))


_POSITION_WORDS = _position_words()


def artifact_dir(workdir: epath.Path | str) -> epath.Path:
  """Where the oracle phase writes its artifact: `<workdir>/oracle/artifact`."""
  return epath.Path(workdir) / 'oracle' / 'artifact'


# ------------------------------------------------------------------ data


def _labels(ex: dict[str, Any]) -> dict[str, tf.Tensor]:
  """int32 labels of a TFDS example: main object (objects[0]), count, background."""
  objects = ex['objects']
  num = tf.shape(objects['shape'])[0]
  out = {a: tf.cast(objects[a][0], tf.int32) for a in OBJECT_ATTRIBUTES}
  out['count'] = num - 1
  out['background'] = tf.cast(ex['background'], tf.int32)
  out['num_objects'] = num
  return out


def _read(config: ml_collections.ConfigDict, split: str, keep: str) -> tf.data.Dataset:
  """{keep: encoded image or captions, labels} of `split` in TFDS file order."""
  builder = input_pipeline.get_builder(config)
  ds = builder.as_dataset(split=split, shuffle_files=False,
                          decoders={'image': tfds.decode.SkipDecoding()},
                          read_config=tfds.ReadConfig(interleave_cycle_length=1))
  return ds.map(lambda ex: {keep: ex[keep], **_labels(ex)})


def _decode(size: int):
  """Encoded image -> float32 [size, size, 3] in [-1, 1] (as `input_pipeline`)."""
  def fn(ex):
    image = tf.io.decode_image(ex['image'], channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    image = preprocessing.image_pyramid(tf.cast(image, tf.float32), (size,))
    return {**ex, 'image': image[preprocessing.image_key(size)]}
  return fn


def _options() -> tf.data.Options:
  options = tf.data.Options()
  options.deterministic = True
  return options


def steps_per_epoch(config: ml_collections.ConfigDict) -> int:
  """Train batches per epoch (a short last batch is dropped)."""
  builder = input_pipeline.get_builder(config)
  num = builder.info.splits[config.data.train_split].num_examples
  steps = num // config.oracle.batch_size
  if steps == 0:
    raise ValueError(f'the train split has {num} examples, fewer than one oracle batch '
                     f'of {config.oracle.batch_size}')
  return steps


def train_batches(config: ml_collections.ConfigDict, start_step: int = 0
                  ) -> Iterator[Batch]:
  """Endless shuffled train batches, this process's share, from batch `start_step`.

  Epoch e is a shuffle of the whole split seeded by (config.seed, e), so
  skipping `start_step` batches (of encoded records, cheap) resumes exactly.

  Returns:
    Iterator of {'image' float32 [b, S, S, 3], attribute labels int32 [b],
    'num_objects' int32 [b]}, b = oracle.batch_size / process count.
  """
  batch, processes = config.oracle.batch_size, jax.process_count()
  if batch % processes:
    raise ValueError(f'oracle.batch_size {batch} is not divisible by {processes} '
                     'processes')
  local, index = batch // processes, jax.process_index()
  steps = steps_per_epoch(config)
  # Cached encoded: decoding comes after the resume skip.
  base = _read(config, config.data.train_split, 'image').cache()

  def epoch_dataset(epoch):
    return base.shuffle(steps * batch + batch, seed=config.seed * 1_000_003 + epoch,
                        reshuffle_each_iteration=False).take(steps * batch)

  start_epoch, offset = divmod(start_step, steps)
  ds = tf.data.Dataset.range(start_epoch, np.iinfo(np.int64).max).flat_map(epoch_dataset)
  ds = ds.skip(offset * batch).enumerate()
  # Every process walks the same order and keeps its rows of each global batch.
  ds = ds.filter(lambda i, _: (i % batch) // local == index).map(lambda _, ex: ex)
  ds = ds.map(_decode(config.oracle.image_size), num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.batch(local, drop_remainder=True).prefetch(2).with_options(_options())
  return iter(tfds.as_numpy(ds))


def eval_batches(config: ml_collections.ConfigDict, batch_size: int) -> tf.data.Dataset:
  """The whole eval split in file order, batches of at most `batch_size`.

  Returns:
    A tf.data.Dataset of {'image', labels, 'num_objects'} (use tfds.as_numpy).
  """
  ds = _read(config, config.data.eval_split, 'image')
  ds = ds.map(_decode(config.oracle.image_size), num_parallel_calls=tf.data.AUTOTUNE)
  return ds.batch(batch_size).prefetch(2).with_options(_options())


# ------------------------------------------------------------------ protocol


class TestRecords(NamedTuple):
  """The eval split in TFDS file order, without images.

  Attributes:
    captions: per image, its caption strings.
    labels: {attribute: int32 [N]} ground truth (object attributes of objects[0]).
    num_objects: int32 [N], 1 or 2.
  """
  captions: list[list[str]]
  labels: dict[str, np.ndarray]
  num_objects: np.ndarray


def test_records(config: ml_collections.ConfigDict) -> TestRecords:
  """Captions and labels of `config.data.eval_split`, in `input_pipeline`'s order."""
  ds = _read(config, config.data.eval_split, 'captions')
  captions, columns = [], {k: [] for k in ATTRIBUTES + ('num_objects',)}
  for batch in tfds.as_numpy(ds.batch(1024)):
    captions.extend([c.decode('utf-8') for c in row] for row in batch['captions'])
    for k, column in columns.items():
      column.append(batch[k])
  if not captions:
    raise ValueError(f'the eval split {config.data.eval_split!r} is empty')
  columns = {k: np.concatenate(v).astype(np.int32) for k, v in columns.items()}
  num_objects = columns.pop('num_objects')
  return TestRecords(captions=captions, labels=columns, num_objects=num_objects)


def mentioned(caption: str, num_objects: int) -> dict[str, bool]:
  """Which attributes `caption` states about its image (so which are scored).

  Args:
    caption: a captioned_shapes caption.
    num_objects: objects in the described scene (1 or 2).
  Returns:
    {attribute: bool}. One-object scenes: shape and colour always (every
    caption names them), size / position iff a size / position word occurs.
    Two-object scenes: no object attribute (which object is objects[0] is
    ambiguous). `count` always; `background` iff a background colour word
    occurs (background colours are never object colours).
  """
  if num_objects not in (1, 2):
    raise ValueError(f'num_objects must be 1 or 2, got {num_objects}')
  words = set(tokenizer.tokenize(caption))
  one = num_objects == 1
  return {'shape': one, 'color': one, 'size': one and bool(words & _SIZE_WORDS),
          'position': one and bool(words & _POSITION_WORDS), 'count': True,
          'background': bool(words & _BACKGROUND_WORDS)}


def mention_mask(captions: Sequence[str], num_objects: Sequence[int]
                 ) -> dict[str, np.ndarray]:
  """`mentioned` of caption i with num_objects[i], as {attribute: bool [N]}."""
  if len(captions) != len(num_objects):
    raise ValueError(f'{len(captions)} captions but {len(num_objects)} object counts')
  rows = [mentioned(c, int(n)) for c, n in zip(captions, num_objects)]
  return {a: np.array([r[a] for r in rows], bool) for a in ATTRIBUTES}


def real_mask(num_objects: np.ndarray) -> dict[str, np.ndarray]:
  """Scored on real images: object attributes of one-object scenes, others always."""
  num_objects = np.asarray(num_objects)
  return {a: (num_objects == 1) if a in OBJECT_ATTRIBUTES
          else np.ones(num_objects.shape, bool) for a in ATTRIBUTES}


def accuracy(predictions: dict[str, Any], labels: dict[str, Any],
             mask: dict[str, Any] | None = None) -> dict[str, tuple[float, int]]:
  """Per-attribute accuracy over the entries where the attribute's mask is True.

  Args:
    predictions: {attribute: int [N]} (e.g. `OracleClassifier.predict`).
    labels: {attribute: int [N]} targets, for every predicted attribute.
    mask: {attribute: bool [N]} entries to score (missing / None: all).
  Returns:
    {attribute: (accuracy, number scored)}; accuracy is NaN when none is.
  """
  out = {}
  for a, pred in predictions.items():
    if a not in labels:
      raise ValueError(f'no labels for attribute {a!r} (labels have {sorted(labels)})')
    pred, label = np.asarray(pred), np.asarray(labels[a])
    keep = np.ones(pred.shape, bool) if mask is None or a not in mask else np.asarray(
        mask[a], bool)
    if not pred.shape == label.shape == keep.shape or pred.ndim != 1:
      raise ValueError(f'{a}: predictions {pred.shape}, labels {label.shape} and mask '
                       f'{keep.shape} must be equal 1-D shapes')
    n = int(keep.sum())
    out[a] = (float(np.mean(pred[keep] == label[keep])) if n else float('nan'), n)
  return out


# ------------------------------------------------------------------ model


def create_model(config: ml_collections.ConfigDict) -> oracle_lib.Oracle:
  """The oracle of `config.oracle` (float32 compute: it is small)."""
  return oracle_lib.Oracle(features=tuple(config.oracle.features))


def _template(config: ml_collections.ConfigDict) -> jax.Array:
  size = config.oracle.image_size
  return jnp.zeros((2, size, size, 3))


# ------------------------------------------------------------------ training


@flax.struct.dataclass
class OracleState:
  """Everything the oracle phase checkpoints."""
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any


def _train_step(model, tx, state: OracleState, batch):
  one_object = batch['num_objects'] == 1

  def loss_fn(params):
    (logits, _), mutated = model.apply(
        {'params': params, 'batch_stats': state.batch_stats}, batch['image'],
        train=True, mutable=['batch_stats'])
    total, metrics = 0.0, {}
    for a in ATTRIBUTES:
      weight = (one_object if a in OBJECT_ATTRIBUTES
                else jnp.ones_like(one_object)).astype(jnp.float32)
      count = jnp.maximum(weight.sum(), 1.0)
      ce = optax.softmax_cross_entropy_with_integer_labels(logits[a], batch[a])
      total += jnp.sum(ce * weight) / count
      hits = (jnp.argmax(logits[a], axis=-1) == batch[a]).astype(jnp.float32)
      metrics[f'accuracy_{a}'] = jnp.sum(hits * weight) / count
    return total, (mutated['batch_stats'], metrics)

  (loss, (batch_stats, metrics)), grads = jax.value_and_grad(
      loss_fn, has_aux=True)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  state = state.replace(step=state.step + 1,
                        params=optax.apply_updates(state.params, updates),
                        batch_stats=batch_stats, opt_state=opt_state)
  return state, {'loss': loss, **metrics}


def make_train_step(model: oracle_lib.Oracle, tx: optax.GradientTransformation,
                    mesh: jax.sharding.Mesh):
  """The jitted data-parallel step: (state, host batch) -> (state, metrics).

  Loss: sum over heads of each head's mean cross-entropy (object heads over
  the batch's one-object scenes). Attributes as `parallel.data_parallel_step`.
  """
  return parallel.data_parallel_step(functools.partial(_train_step, model, tx), mesh)


def _variables(state: OracleState) -> dict[str, Any]:
  return {'params': state.params, 'batch_stats': state.batch_stats}


class Evaluator:
  """Per-attribute accuracy of the oracle on the real eval split (`real_mask`)."""

  def __init__(self, config: ml_collections.ConfigDict, classifier: OracleClassifier):
    self.classifier = classifier
    self.dataset = eval_batches(config, classifier.batch_size)
    self.last: dict[str, tuple[float, int]] | None = None  # Latest result.

  def compute(self, variables: Any) -> dict[str, tuple[float, int]]:
    """{attribute: (accuracy, number scored)} of `variables` on the eval split."""
    self.classifier.variables = variables
    predictions, labels = {a: [] for a in ATTRIBUTES}, {a: [] for a in ATTRIBUTES}
    num_objects = []
    for batch in tfds.as_numpy(self.dataset):
      for a, p in self.classifier.predict(batch['image']).items():
        predictions[a].append(p)
        labels[a].append(batch[a])
      num_objects.append(batch['num_objects'])
    if not num_objects:
      raise ValueError('the eval split gave no example to evaluate the oracle on')
    cat = lambda d: {k: np.concatenate(v) for k, v in d.items()}
    return accuracy(cat(predictions), cat(labels), real_mask(np.concatenate(num_objects)))

  def __call__(self, state: OracleState, step: int, writer) -> None:
    """Evaluates and writes `eval/accuracy_<attr>` (training-loop hook)."""
    self.last = self.compute(_variables(state))
    console.say(f'Oracle eval at step {step}: {format_accuracy(self.last)}')
    writer.write_scalars(step, {f'eval/accuracy_{a}': acc
                                for a, (acc, _) in self.last.items()})


def format_accuracy(result: dict[str, tuple[float, int]]) -> str:
  """'shape 0.9950 (n=1012), ...' for logs."""
  return ', '.join(f'{a} {acc:.4f} (n={n})' for a, (acc, n) in result.items())


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: epath.Path | str) -> epath.Path:
  """Trains the oracle to `oracle.num_epochs` (resuming) and writes its artifact.

  Args:
    config: experiment config (`oracle`, `data`, `seed`, `train` cadences,
      `eval.batch_size`).
    workdir: run directory; the phase uses `<workdir>/oracle`.
  Returns:
    The artifact directory, `artifact_dir(workdir)`.
  """
  mesh = parallel.create_mesh()
  model = create_model(config)
  steps = steps_per_epoch(config)
  num_steps = config.oracle.num_epochs * steps
  tx = optax.adam(optax.cosine_decay_schedule(config.oracle.learning_rate, num_steps))
  train_step = make_train_step(model, tx, mesh)
  evaluator = Evaluator(config, OracleClassifier(
      model, None, image_size=config.oracle.image_size,
      batch_size=config.eval.batch_size))

  def init_state():
    variables = fast_init.run(lambda key: model.init(key, _template(config)),
                              jax.random.PRNGKey(config.seed))
    return train_step.place_state(OracleState(
        step=jnp.zeros((), jnp.int32), params=variables['params'],
        batch_stats=variables['batch_stats'], opt_state=tx.init(variables['params'])))

  phase = training_loop.Phase(
      name='oracle', num_steps=num_steps, init_state=init_state, train_step=train_step,
      batches=functools.partial(train_batches, config), evaluate=evaluator,
      eval_every=steps, log_every=config.train.log_every_steps,
      checkpoint_every=config.train.checkpoint_every_steps,
      keep_checkpoints=config.train.keep_checkpoints)
  state = training_loop.run(phase, workdir)
  final = evaluator.last
  if final is None:  # Resumed after the last step: the loop evaluated nothing.
    final = evaluator.compute(_variables(state))
  meta = {'phase': 'oracle', 'oracle': config.oracle.to_dict(), 'hidden': model.hidden,
          'dataset': f'{config.data.name}/{config.data.builder_config}',
          'steps': num_steps, 'eval_split': config.data.eval_split,
          'eval': {'accuracy': {a: acc for a, (acc, _) in final.items()},
                   'count': {a: n for a, (_, n) in final.items()}}}
  path = artifact_dir(workdir)
  checkpointing.save_artifact(path, {ARTIFACT_KEY: _variables(state)}, None, meta)
  console.say(f'Oracle artifact written to {path}; real {config.data.eval_split} '
              f'accuracy: {format_accuracy(final)}')
  return path


# ------------------------------------------------------------------ loading


def _comparable(value: Any) -> Any:
  return list(value) if isinstance(value, (list, tuple)) else value


def check_config(meta: dict, config: ml_collections.ConfigDict, path: Any) -> None:
  """Raises ValueError naming every architecture field where `meta` and config differ."""
  recorded = meta.get('oracle')
  if meta.get('phase') != 'oracle' or not isinstance(recorded, dict):
    raise ValueError(f'{path}/meta.json is not an oracle artifact\'s (phase '
                     f'{meta.get("phase")!r})')
  diffs = [f'oracle.{f}: artifact {recorded.get(f)!r}, config {config.oracle[f]!r}'
           for f in ARCHITECTURE_FIELDS
           if _comparable(recorded.get(f)) != _comparable(config.oracle[f])]
  if diffs:
    raise ValueError(f'the oracle artifact {path} was built with another oracle than the '
                     'config: ' + '; '.join(diffs) + ". Set these config fields to the "
                     "artifact's values or retrain the oracle.")


def load_oracle(path: epath.Path | str, config: ml_collections.ConfigDict,
                batch_size: int | None = None) -> OracleClassifier:
  """Loads the oracle artifact written by `train_and_evaluate`.

  Args:
    path: artifact directory (`artifact_dir(workdir)`).
    config: its `oracle.image_size` / `oracle.features` must match the artifact.
    batch_size: images per compiled call (default `config.eval.batch_size`).
  Returns:
    An OracleClassifier in inference mode.
  Raises:
    FileNotFoundError: missing or incomplete artifact.
    ValueError: not an oracle artifact, a config mismatch (names the fields) or
      variables that do not fit the model.
  """
  variables, _, meta = checkpointing.load_artifact(path, require_vocab=False)
  check_config(meta, config, path)
  if not isinstance(variables, dict) or ARTIFACT_KEY not in variables:
    raise ValueError(f'{path} holds no {ARTIFACT_KEY!r} variables')
  model = oracle_lib.Oracle(features=tuple(config.oracle.features),
                            hidden=int(meta.get('hidden', oracle_lib.Oracle.hidden)))
  template = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), _template(config)))
  got = {jax.tree_util.keystr(p): np.shape(x) for p, x in
         jax.tree_util.tree_flatten_with_path(variables[ARTIFACT_KEY])[0]}
  want = {jax.tree_util.keystr(p): x.shape for p, x in
          jax.tree_util.tree_flatten_with_path(template)[0]}
  if got != want:
    bad = sorted(k for k in got.keys() | want.keys() if got.get(k) != want.get(k))
    raise ValueError(f'the variables in {path} do not fit the oracle of the config: '
                     + '; '.join(f'{k}: {got.get(k)} vs {want.get(k)}' for k in bad[:8]))
  logging.info('Oracle loaded from %s (real test accuracy %s).', path,
               (meta.get('eval') or {}).get('accuracy'))
  return OracleClassifier(model, jax.device_put(variables[ARTIFACT_KEY]),
                          image_size=config.oracle.image_size,
                          batch_size=batch_size or config.eval.batch_size)
