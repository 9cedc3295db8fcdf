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

The labels and their data pipeline are in `data/shapes_labels.py`; how generated
images are scored is in `evaluation/oracle_accuracy.py`; the artifact is read
by `artifacts.load_oracle`.
"""

import functools
from typing import Any

from etils import epath
import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tensorflow_datasets as tfds

from mirrorgan_jax import artifacts
from mirrorgan_jax.infra import console
from mirrorgan_jax.infra import fast_init
from mirrorgan_jax.infra import parallel
from mirrorgan_jax.phases import runner
from mirrorgan_jax.data import shapes_labels
from mirrorgan_jax.evaluation import oracle_accuracy
from mirrorgan_jax.models import factory
from mirrorgan_jax.models import oracle as oracle_lib

ATTRIBUTES = oracle_lib.ATTRIBUTES
OBJECT_ATTRIBUTES = oracle_lib.OBJECT_ATTRIBUTES


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
  return (runner.apply_gradients(state, tx, grads, batch_stats=batch_stats),
          {'loss': loss, **metrics})


def make_train_step(model: oracle_lib.Oracle, tx: optax.GradientTransformation,
                    mesh: jax.sharding.Mesh):
  """The jitted data-parallel step: (state, host batch) -> (state, metrics).

  Loss: sum over heads of each head's mean cross-entropy (object heads over
  the batch's one-object scenes). A `parallel.CompiledStep`.
  """
  return parallel.compile_step(functools.partial(_train_step, model, tx), mesh)


def _variables(state: OracleState) -> dict[str, Any]:
  return {'params': state.params, 'batch_stats': state.batch_stats}


class AccuracyEvalHook:
  """Per-attribute accuracy on the real eval split (`oracle_accuracy.real_mask`)."""

  def __init__(self, config: ml_collections.ConfigDict,
               classifier: oracle_lib.OracleClassifier, name: str = 'Oracle'):
    self.classifier, self.name = classifier, name  # `name` heads the console line.
    self.dataset = shapes_labels.eval_batches(config, classifier.batch_size)
    self.last: dict[str, tuple[float, int]] | None = None  # Latest result.

  def accuracy(self, variables: Any) -> dict[str, tuple[float, int]]:
    """{attribute: (accuracy, number scored)} of oracle `variables` on the eval split."""
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
    return oracle_accuracy.accuracy(cat(predictions), cat(labels),
                                    oracle_accuracy.real_mask(np.concatenate(num_objects)))

  def compute(self, state: OracleState) -> tuple[dict[str, tuple[float, int]], None]:
    """(`accuracy` of the state's variables, no extras)."""
    return self.accuracy(_variables(state)), None

  def __call__(self, state: OracleState, step: int, writer) -> None:
    """Evaluates and writes `eval/accuracy_<attr>` (training-loop hook)."""
    self.last, _ = self.compute(state)
    console.say(f'{self.name} eval at step {step}: '
                f'{oracle_accuracy.format_accuracy(self.last)}')
    writer.write_scalars(step, {f'eval/accuracy_{a}': acc
                                for a, (acc, _) in self.last.items()})


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: epath.Path | str,
                       kind: artifacts.Kind = artifacts.ORACLE) -> epath.Path:
  """Trains the oracle to `oracle.num_epochs` (resuming) and writes its artifact.

  Args:
    config: experiment config (`oracle`, `data`, `seed`, `train` cadences,
      `eval.batch_size`).
    workdir: run directory; the phase uses `<workdir>/<kind.phase>`.
    kind: ORACLE, or CLASSIFIER: the same network and training from seed
      `config.seed + 1` (other weights, another data order), DAMSM's pretrained
      image backbone (`damsm.pretrained_backbone`).
  Returns:
    The artifact directory, `artifacts.directory(workdir, kind)`.
  """
  if kind not in (artifacts.ORACLE, artifacts.CLASSIFIER):
    raise ValueError(f'the oracle phase writes an oracle or a classifier, not {kind.a_name}')
  if kind is artifacts.CLASSIFIER:
    config = config.copy_and_resolve_references()
    config.seed += 1
  mesh = parallel.create_mesh()
  model = factory.create_oracle(config)
  steps = shapes_labels.steps_per_epoch(config)
  num_steps = config.oracle.num_epochs * steps
  tx = optax.adam(optax.cosine_decay_schedule(config.oracle.learning_rate, num_steps))
  train_step = make_train_step(model, tx, mesh)
  name = kind.name.capitalize()
  hook = AccuracyEvalHook(config, oracle_lib.OracleClassifier(
      model, None, image_size=config.oracle.image_size,
      batch_size=config.eval.batch_size), name)

  def init_state():
    variables = fast_init.run(lambda key: model.init(key, factory.oracle_inputs(config)),
                              jax.random.PRNGKey(config.seed))
    return train_step.place_state(OracleState(
        step=jnp.zeros((), jnp.int32), params=variables['params'],
        batch_stats=variables['batch_stats'], opt_state=tx.init(variables['params'])))

  path, final = runner.pretrain(config, workdir, runner.Pretraining(
      kind=kind, num_steps=num_steps, steps_per_epoch=steps,
      eval_every_epochs=1, init_state=init_state, train_step=train_step,
      batches=functools.partial(shapes_labels.train_batches, config), hook=hook,
      parameters=lambda state: {'oracle': state.params},
      artifact_variables=lambda state: {artifacts.ORACLE_KEY: _variables(state)},
      meta=lambda final: {
          'hidden': model.hidden,
          'dataset': f'{config.data.name}/{config.data.builder_config}',
          'eval_split': config.data.eval_split,
          'eval': {'accuracy': {a: acc for a, (acc, _) in final.items()},
                   'count': {a: n for a, (_, n) in final.items()}}}))
  console.say(f'{name} artifact written to {path}; real {config.data.eval_split} '
              f'accuracy: {oracle_accuracy.format_accuracy(final)}')
  return path
