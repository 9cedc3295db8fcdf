"""Sampling: images from any sentence, their attention maps and STREAM redescriptions.

`generate` is the pure generation function shared by the GAN phase's sample
grids, evaluation and the benchmark. For notebooks and the sample CLI:

  trained = trained_model.load(workdir)
  result = sampling.sample(trained, ['a small red star left of a blue circle'],
                           num_samples=8, seed=0)
  result.images[-1]         # [N captions, 8, S, S, 3] in [-1, 1]
  result.redescriptions[0]  # 8 STREAM captions of the final images of caption 0

Captions are encoded by `encode_texts` with the run's vocabulary: text is
tokenized as the training captions are; unknown words are an error
(`UnknownWordsError` names them and the closest vocabulary words) unless
`drop_unknown`, which leaves them out and reports them. A caption longer than
`data.words_num` tokens keeps its first `words_num` tokens (the rest is reported
and logged); training instead drops random words, which would make samples
depend on chance.

Everything runs in one jitted function per batch of a FIXED size (padded with
copies of a real row) and a fixed caption length (`words_num`), so captions of
any length, any number of captions and any number of samples reuse one
compilation. The noise of sample j is drawn from `fold_in(PRNGKey(seed), j)`:
the same seed gives the same noise for every caption, so a caption's samples do
not depend on which other captions share the call, and the captions of one call
can be compared sample by sample.
"""

import dataclasses
import functools
from typing import Any, Sequence

from absl import logging
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mirrorgan_jax.infra import padded_batches
from mirrorgan_jax import tokenizer
from mirrorgan_jax import vocab as vocab_lib
from mirrorgan_jax.models import captioner as captioner_lib

_MAX_SEED = 2**31 - 1  # Seeds are traced as int32.


@functools.partial(jax.jit, static_argnames=('generator', 'text_encoder'))
def generate(generator: nn.Module, text_encoder: nn.Module, g_variables, text_variables,
             ids: jax.Array, lengths: jax.Array, z: jax.Array, eps: jax.Array) -> dict:
  """Generates every stage's image for captions (inference mode, BN running stats).

  Args:
    generator: the G module; `g_variables` its {'params', 'batch_stats'}
      (pass the EMA parameters for samples and evaluation).
    text_encoder: the frozen STEM text encoder; `text_variables` its variables.
    ids: token ids [B, T] (0 = padding); lengths [B].
    z: noise [B, z_dim]; eps: conditioning-augmentation noise [B, condition_dim].
  Returns:
    {'images': list per stage of [B, S, S, 3] in [-1, 1], 'attention': list per
    refinement stage of word-attention maps [B, H, W, T], 'sentence_attention':
    list per refinement stage of `sentence_attention_map`s [B, H, W] (empty for
    the 'word_only' GLAM)}.
  """
  words, sentence = text_encoder.apply(text_variables, ids, lengths, train=False)
  out = generator.apply(g_variables, z, sentence, words, lengths=lengths, train=False,
                        eps=eps)
  return {'images': out['images'], 'attention': out['attention'],
          'sentence_attention': [sentence_attention_map(beta, generator.glam)
                                 for beta in out['sentence_attention']]}


def sentence_attention_map(beta: jax.Array, glam: str) -> jax.Array:
  """One map over the image of the sentence attention beta [B, H, W, M] -> [B, H, W].

  'paper' GLAM: beta is a softmax over the H x W positions per channel, so the mean
  over channels is a distribution over the image (sums to 1): where the sentence
  code goes. 'reference': beta is a softmax over channels at each pixel (every
  channel mean is 1/M), so the map is the largest channel weight per pixel: where
  the sentence code is concentrated on few channels.
  """
  return beta.mean(axis=-1) if glam == 'paper' else beta.max(axis=-1)


# ----------------------------------------------------------------- captions
class CaptionError(ValueError):
  """A caption that cannot be encoded; the message names the caption and why."""


@dataclasses.dataclass(frozen=True)
class CaptionReport:
  """How one caption was encoded.

  Attributes:
    text: the caption as given.
    words: the tokens fed to the model (at most `words_num`).
    dropped: unknown words left out, as typed (only with `drop_unknown`).
    truncated: known tokens past `words_num`, left out.
    unreadable: characters left out for having no ASCII form (emoji, CJK).
  """
  text: str
  words: list[str]
  dropped: list[str]
  truncated: list[str]
  unreadable: list[str] = dataclasses.field(default_factory=list)


def summarize(words: Sequence[str], first: int = 5) -> str:
  """A word list for a message: all of a short one, count and the first few of a long one."""
  if len(words) <= first:
    return repr(list(words))
  return f'{len(words)} words ({", ".join(repr(w) for w in words[:first])}, ...)'


def _hints(vocab: vocab_lib.Vocabulary, pairs: Sequence[tuple[str, str]]) -> str:
  return '; '.join(f'{typed!r} (closest: {", ".join(vocab.closest(token)) or "none"})'
                   for token, typed in dict.fromkeys(pairs))


def _caption_error(index: int, text: str, reason: str) -> CaptionError:
  return CaptionError(f'caption {index + 1} ({text!r}): {reason}')


def encode_texts(vocab: vocab_lib.Vocabulary, texts: Sequence[str], words_num: int,
                 drop_unknown: bool = False
                 ) -> tuple[np.ndarray, np.ndarray, list[CaptionReport]]:
  """Tokenizes captions into fixed-length id rows for the text encoder.

  Args:
    vocab: the run's vocabulary.
    texts: N captions.
    words_num: tokens per row (`config.data.words_num`); longer captions keep
      their first `words_num` tokens (reported in `truncated`, logged).
    drop_unknown: leave words outside the vocabulary out (reported in
      `dropped`, logged) instead of raising.
  Returns:
    ids int32 [N, words_num] (0-padded), lengths int32 [N], a report per caption.
  Raises:
    CaptionError: no caption, an empty caption, or a caption none of whose
      words is in the vocabulary (even with `drop_unknown`).
    vocab.UnknownWordsError: unknown words without `drop_unknown` (names them,
      the closest vocabulary words and `--drop-unknown-words`).
  """
  if isinstance(texts, str):
    raise TypeError('texts must be a sequence of captions, not one string')
  if not texts:
    raise CaptionError('no caption given')
  if words_num < 1:
    raise ValueError(f'words_num must be >= 1, got {words_num}')
  ids = np.zeros((len(texts), words_num), np.int32)
  lengths = np.zeros((len(texts),), np.int32)
  reports = []
  for i, text in enumerate(texts):
    user = tokenizer.user_tokens(text)
    if user.unreadable:
      logging.warning('Caption %d: left out characters without an ASCII form: %s.',
                      i + 1, ' '.join(user.unreadable))
    if not user.tokens:
      unreadable = (f' (left out: {" ".join(user.unreadable)})' if user.unreadable
                    else '')
      raise _caption_error(i, text, f'no words (empty or only punctuation){unreadable}')
    known = [t for t in user.tokens if t in vocab.index]
    unknown = [(t, w) for t, w in zip(user.tokens, user.typed) if t not in vocab.index]
    if not known:
      raise _caption_error(i, text, 'none of its words is in the vocabulary: '
                           f'{_hints(vocab, unknown)}')
    if unknown and not drop_unknown:
      distinct = list(dict.fromkeys(w for _, w in unknown))
      closest = {w: vocab.closest(t) for t, w in unknown}
      error = vocab_lib.UnknownWordsError(distinct, closest)
      error.args = (f'caption {i + 1} ({text!r}): {error}',)  # Which caption, too.
      raise error
    kept, truncated = known[:words_num], known[words_num:]
    dropped = [w for _, w in unknown]
    if dropped:
      logging.warning('Caption %d: dropped unknown words %s.', i + 1, summarize(dropped))
    if truncated:
      logging.warning('Caption %d has %d words; kept the first %d, dropped %s.',
                      i + 1, len(known), words_num, summarize(truncated))
    ids[i, :len(kept)] = [vocab.index[t] for t in kept]
    lengths[i] = len(kept)
    reports.append(CaptionReport(text=text, words=kept, dropped=dropped,
                                 truncated=truncated, unreadable=user.unreadable))
  return ids, lengths, reports


# ----------------------------------------------------------------- redescription
def redescription_ids(captioner: nn.Module, variables: Any, images: jax.Array,
                      beam_size: int, max_len: int) -> tuple[jax.Array, jax.Array]:
  """STREAM captions of images: beam search if `beam_size` > 1, else greedy (pure).

  Args:
    captioner: the STREAM module; `variables` its {'params', 'batch_stats'}.
    images: [B, H, W, 3] in [-1, 1], any size.
    beam_size: `config.model.captioner.beam_size`.
    max_len: most words (`config.model.captioner.max_decode_len`).
  Returns:
    ids int32 [B, max_len] (0 from <end> on) and lengths int32 [B].
  """
  if beam_size > 1:
    ids, lengths, _ = captioner_lib.beam_search(captioner, variables, images, beam_size,
                                                max_len)
    return ids, lengths
  return captioner_lib.greedy_decode(captioner, variables, images, max_len)


redescribe_batch = jax.jit(redescription_ids,
                           static_argnames=('captioner', 'beam_size', 'max_len'))


def generate_and_redescribe(generator: nn.Module, text_encoder: nn.Module,
                            captioner: nn.Module, variables: dict[str, Any],
                            ids: jax.Array, lengths: jax.Array, z: jax.Array,
                            eps: jax.Array, *, beam_size: int, max_len: int
                            ) -> tuple[dict, jax.Array, jax.Array]:
  """Samples of captions and STREAM's captions of the final-stage samples (pure).

  Args:
    generator, text_encoder, captioner: the modules; `variables` holds their
      variables under 'generator', 'text_encoder' and 'captioner'.
    ids, lengths, z, eps: as `generate`.
    beam_size, max_len: as `redescription_ids`.
  Returns:
    (`generate`'s output with the final stage's images in float32 last,
    redescription ids int32 [B, max_len], their lengths int32 [B]).
  """
  out = generate(generator, text_encoder, variables['generator'],
                 variables['text_encoder'], ids, lengths, z, eps)
  out['images'][-1] = out['images'][-1].astype(jnp.float32)
  words, counts = redescription_ids(captioner, variables['captioner'], out['images'][-1],
                                    beam_size, max_len)
  return out, words, counts


def _batch_size(config, batch_size: int | None) -> int:
  batch_size = config.eval.batch_size if batch_size is None else batch_size
  if batch_size < 1:
    raise ValueError(f'batch_size must be >= 1, got {batch_size}')
  return batch_size


def redescribe(trained: Any, images: np.ndarray, batch_size: int | None = None
               ) -> tuple[np.ndarray, list[str]]:
  """STREAM redescriptions of any images with the run's frozen captioner.

  Args:
    trained: a `trained_model.TrainedModel`.
    images: [N, H, W, 3] in [-1, 1].
    batch_size: images per compiled call (default `config.eval.batch_size`).
  Returns:
    ids int32 [N, max_decode_len] (0 from <end> on) and the N captions as text.
  """
  images = np.asarray(images, np.float32)
  if images.ndim != 4 or images.shape[-1] != 3 or not images.shape[0]:
    raise ValueError(f'expected images [N > 0, H, W, 3], got {images.shape}')
  c = trained.config.model.captioner
  variables = jax.device_put(trained.frozen.captioner)
  out = padded_batches.map_batches(
      lambda batch: redescribe_batch(trained.models.captioner, variables,
                                     batch['images'], beam_size=c.beam_size,
                                     max_len=c.max_decode_len)[0],
      {'images': images}, _batch_size(trained.config, batch_size))
  return out, [trained.vocab.decode(row) for row in out]


# ----------------------------------------------------------------- sampling
@dataclasses.dataclass(frozen=True)
class SampleResult:
  """Samples of N captions, K each (row i, column j: sample j of caption i).

  Attributes:
    captions: how each caption was encoded (words, dropped, truncated).
    ids: int32 [N, words_num] token ids fed to the text encoder; lengths [N].
    images: per stage, float32 [N, K, S, S, 3] in [-1, 1] (S = stage size).
    attention: per refinement stage, word-attention maps [N, K, H, W, words_num]
      (H, W: the previous stage's size; columns past a caption's length are 0).
    sentence_attention: per refinement stage, `sentence_attention_map`s
      [N, K, H, W] (none for the 'word_only' GLAM).
    redescription_ids: int32 [N, K, max_decode_len], STREAM captions of the
      final images (0 from <end> on); redescriptions: the same as text.
    seed: the noise seed; step: the GAN step of the checkpoint.
  """
  captions: list[CaptionReport]
  ids: np.ndarray
  lengths: np.ndarray
  images: list[np.ndarray]
  attention: list[np.ndarray]
  sentence_attention: list[np.ndarray]
  redescription_ids: np.ndarray
  redescriptions: list[list[str]]
  seed: int
  step: int


@functools.partial(jax.jit, static_argnames=('generator', 'text_encoder', 'captioner',
                                             'beam_size', 'max_len'))
def _sample_batch(generator: nn.Module, text_encoder: nn.Module, captioner: nn.Module,
                  beam_size: int, max_len: int, variables: dict[str, Any],
                  seed: jax.Array, batch: dict[str, jax.Array]) -> dict[str, Any]:
  """Images, attention and redescriptions of one fixed-size batch of rows."""
  key = jax.random.PRNGKey(seed)

  def noise(sample_index):
    z_key, eps_key = jax.random.split(jax.random.fold_in(key, sample_index))
    return (jax.random.normal(z_key, (generator.z_dim,)),
            jax.random.normal(eps_key, (generator.condition_dim,)))

  z, eps = jax.vmap(noise)(batch['sample'])
  out, ids, _ = generate_and_redescribe(generator, text_encoder, captioner, variables,
                                        batch['ids'], batch['lengths'], z, eps,
                                        beam_size=beam_size, max_len=max_len)
  return {**out, 'redescription_ids': ids}


def sample(trained: Any, texts: Sequence[str], num_samples: int = 8, seed: int = 0,
           drop_unknown: bool = False, batch_size: int | None = None) -> SampleResult:
  """Generates `num_samples` images per caption with the EMA generator.

  Args:
    trained: a `trained_model.TrainedModel` (`trained_model.load(workdir)`).
    texts: N captions (see `encode_texts` for unknown and surplus words).
    num_samples: K, samples per caption; sample j uses the noise of
      `fold_in(PRNGKey(seed), j)` whatever the caption.
    seed: noise seed, 0 <= seed < 2**31.
    drop_unknown: leave unknown words out instead of raising.
    batch_size: rows (caption x sample) per compiled call; default
      `config.eval.batch_size`. The last batch is padded, so any N and K reuse
      one compilation.
  Returns:
    A `SampleResult`.
  Raises:
    CaptionError / vocab.UnknownWordsError: see `encode_texts`.
    ValueError: num_samples < 1, a seed out of range, batch_size < 1.
  """
  if num_samples < 1:
    raise ValueError(f'num_samples must be >= 1, got {num_samples}')
  if not 0 <= seed <= _MAX_SEED:
    raise ValueError(f'seed must be in [0, {_MAX_SEED}], got {seed}')
  config, models = trained.config, trained.models
  batch_size = _batch_size(config, batch_size)
  ids, lengths, reports = encode_texts(trained.vocab, texts, config.data.words_num,
                                       drop_unknown)
  n, k = len(reports), num_samples
  rows = {'ids': np.repeat(ids, k, axis=0), 'lengths': np.repeat(lengths, k),
          'sample': np.tile(np.arange(k, dtype=np.int32), n)}
  variables = jax.device_put({'generator': trained.g_variables,
                              'text_encoder': trained.frozen.text_encoder,
                              'captioner': trained.frozen.captioner})
  c = config.model.captioner
  step = functools.partial(
      _sample_batch, models.generator, models.text_encoder, models.captioner,
      beam_size=c.beam_size, max_len=c.max_decode_len, variables=variables,
      seed=np.int32(seed))
  out = padded_batches.map_batches(lambda batch: step(batch=batch), rows, batch_size)
  out = jax.tree.map(lambda x: x.reshape((n, k) + x.shape[1:]), out)
  return SampleResult(
      captions=reports, ids=ids, lengths=lengths, images=out['images'],
      attention=out['attention'], sentence_attention=out['sentence_attention'],
      redescription_ids=out['redescription_ids'],
      redescriptions=[[trained.vocab.decode(r) for r in caption]
                      for caption in out['redescription_ids']],
      seed=seed, step=trained.step)
