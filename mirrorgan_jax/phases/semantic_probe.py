"""A cheap semantic score of the generator while it trains (captioned_shapes).

Every `train.eval_every_steps` the GAN phase asks: do the samples show what
their captions say? `SemanticProbe` generates one image for each of the first
`train.probe_samples` test captions (caption 0 of each test image, fixed noise)
with the EMA generator, and writes to TensorBoard:
- `probe/oracle/<attribute>`: the oracle classifier's accuracy on the samples,
  an attribute scored iff the caption states it (the `--mode eval` protocol);
- `probe/redescription/<attribute>`: the attribute accuracy of the frozen
  STREAM captioner's greedy redescriptions of the samples
  (`evaluation.redescription_attributes`);
- `probe/redescription_real/<attribute>`: the same on the real test images (the
  captioner's ceiling), written once.
It needs the oracle artifact (`--mode oracle`, run before the GAN by
`--mode all`); without it the probe is off and says so once.
"""

from typing import Any

from absl import logging
from etils import epath
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mirrorgan_jax import artifacts
from mirrorgan_jax.infra import console
from mirrorgan_jax.infra import parallel
from mirrorgan_jax import sampling
from mirrorgan_jax import vocab as vocab_lib
from mirrorgan_jax.data import input_pipeline
from mirrorgan_jax.data import shapes_labels
from mirrorgan_jax.data import shapes_scene
from mirrorgan_jax.evaluation import oracle_accuracy
from mirrorgan_jax.evaluation import redescription_attributes
from mirrorgan_jax.models import factory

_generate_and_redescribe = jax.jit(
    sampling.generate_and_redescribe,
    static_argnames=('generator', 'text_encoder', 'captioner', 'beam_size', 'max_len'))


def _decode(vocab: vocab_lib.Vocabulary, ids: np.ndarray, counts: np.ndarray) -> list[str]:
  return [vocab.decode(row[:n]) for row, n in zip(ids, counts)]


class SemanticProbe:
  """Oracle and redescription accuracy of the EMA G on fixed test captions.

  Call as `probe(state, step, writer)` with the GAN state (jit layout, or pmap
  layout when `pmap`).
  """

  def __init__(self, config: ml_collections.ConfigDict, models: factory.Models,
               frozen: Any, vocab: vocab_lib.Vocabulary, workdir: epath.Path,
               eval_batches, pmap: bool = False):
    num = config.train.probe_samples
    self.enabled = num > 0 and config.data.name == shapes_scene.DATASET
    path = artifacts.directory(workdir, artifacts.ORACLE)
    if self.enabled and not path.exists():
      logging.warning('Semantic probe off: no oracle artifact at %s (run --mode oracle).',
                      path)
      self.enabled = False
    if not self.enabled:
      return
    records = shapes_labels.test_records(config)
    num = min(num, len(records.captions))
    self.captions = [c[0] for c in records.captions[:num]]
    self.labels = {a: v[:num] for a, v in records.labels.items()}
    self.num_objects = records.num_objects[:num]
    self.ids, self.lengths, _ = sampling.encode_texts(vocab, self.captions,
                                                      config.data.words_num)
    self.oracle = artifacts.load_oracle(path, config)
    g = config.model.generator
    z_key, eps_key = jax.random.split(jax.random.PRNGKey(config.seed + 2))
    self.z = jax.random.normal(z_key, (num, g.z_dim))
    self.eps = jax.random.normal(eps_key, (num, g.condition_dim))
    self.models, self.frozen, self.vocab, self.pmap = models, frozen, vocab, pmap
    self.max_len = config.model.captioner.max_decode_len
    key = input_pipeline.final_image_key(config)
    self.real_images = self._real_images(eval_batches, key, num)
    self.real_written = False

  @staticmethod
  def _real_images(eval_batches, key: str, num: int) -> np.ndarray:
    """The first `num` real test images (final stage size), in test-record order."""
    images, have = [], 0
    for batch in eval_batches:
      keep = batch[key][batch['mask'].astype(bool)] if 'mask' in batch else batch[key]
      images.append(keep)
      have += len(keep)
      if have >= num:
        break
    return np.concatenate(images)[:num]

  def _accuracies(self, images: np.ndarray, redescriptions: list[str], source) -> dict:
    out = {}
    if source is not None:
      mask = oracle_accuracy.mention_mask(source, self.num_objects)
      predictions = self.oracle.predict(images)
      out.update({f'probe/oracle/{a}': acc for a, (acc, n) in oracle_accuracy.accuracy(
          predictions, self.labels, mask).items() if n})
    prefix = 'probe/redescription' if source is not None else 'probe/redescription_real'
    out.update({f'{prefix}/{a}': acc for a, acc in redescription_attributes.attribute_accuracy(
        redescriptions, self.labels, self.num_objects, source).items() if np.isfinite(acc)})
    return out

  def __call__(self, state, step: int, writer) -> None:
    if not self.enabled:
      return
    state = jax.device_get(parallel.unreplicate(state) if self.pmap else state)
    variables = {'generator': {'params': state.ema_g_params,
                               'batch_stats': state.g_batch_stats},
                 'text_encoder': self.frozen.text_encoder,
                 'captioner': self.frozen.captioner}
    out, ids, counts = jax.device_get(_generate_and_redescribe(
        self.models.generator, self.models.text_encoder, self.models.captioner,
        variables, jnp.asarray(self.ids), jnp.asarray(self.lengths), self.z, self.eps,
        beam_size=1, max_len=self.max_len))
    scalars = self._accuracies(np.asarray(out['images'][-1]),
                               _decode(self.vocab, ids, counts), self.captions)
    if not self.real_written:
      real_ids, real_counts = jax.device_get(sampling.redescribe_batch(
          self.models.captioner, self.frozen.captioner, jnp.asarray(self.real_images),
          beam_size=1, max_len=self.max_len))
      scalars.update(self._accuracies(self.real_images,
                                      _decode(self.vocab, real_ids, real_counts), None))
      self.real_written = True
    writer.write_scalars(step, scalars)
    console.say(f'Semantic probe at step {step}: ' + ', '.join(
        f'{k[len("probe/"):]}={v:.3f}' for k, v in sorted(scalars.items())))
