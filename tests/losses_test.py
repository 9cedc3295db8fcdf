"""Tests of mirrorgan_jax.phases.losses against golden tensors, a numpy loop and hand numbers.

The numpy oracle below re-implements the reference DAMSM word loss literally (a loop
over captions and images, each caption sliced to its own length, float64), so it is
independent of the vectorised, masked JAX version; it is itself checked against the
golden tensors of the authors' PyTorch code.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mirrorgan_jax.phases import losses

LN2, LN3 = math.log(2.0), math.log(3.0)
GAMMAS = dict(gamma1=4.0, gamma2=5.0, gamma3=10.0)  # Reference values (and golden).


# ------------------------------------------------------------------ numpy oracle
def _np_softmax(x, axis):
  e = np.exp(x - np.max(x, axis=axis, keepdims=True))
  return e / np.sum(e, axis=axis, keepdims=True)


def _np_cross_entropy_diag(logits):
  """Mean over rows of -log softmax(row)[row index]; -inf entries allowed."""
  m = np.max(logits, axis=1, keepdims=True)
  lse = m[:, 0] + np.log(np.sum(np.exp(logits - m), axis=1))
  return float(np.mean(lse - np.diagonal(logits)))


def _np_class_mask(logits, class_ids):
  logits = logits.copy()
  if class_ids is not None:
    for j in range(len(class_ids)):
      for i in range(len(class_ids)):
        if j != i and class_ids[j] == class_ids[i]:
          logits[j, i] = -np.inf
  return logits


def _np_word_loss(regions_nhwc, words, lengths, class_ids, gamma1, gamma2, gamma3):
  """Reference algorithm, one (caption i, image j) pair at a time."""
  b, h, w, d = regions_nhwc.shape
  regions = regions_nhwc.reshape(b, h * w, d).astype(np.float64)
  sims = np.zeros((b, b))
  own_maps = []
  for i in range(b):
    e = words[i, :lengths[i]].astype(np.float64)  # [L, D]
    for j in range(b):
      v = regions[j]  # [R, D]
      s_bar = _np_softmax(e @ v.T, axis=0)  # Softmax over words.
      alpha = _np_softmax(gamma1 * s_bar, axis=1)  # Over regions.
      c = alpha @ v
      norms = np.linalg.norm(c, axis=1) * np.linalg.norm(e, axis=1)
      rel = np.sum(c * e, axis=1) / np.maximum(norms, 1e-8)
      sims[j, i] = np.log(np.sum(np.exp(gamma2 * rel)))
      if i == j:
        own_maps.append(alpha.reshape(-1, h, w))
  logits = _np_class_mask(gamma3 * sims, class_ids)
  return _np_cross_entropy_diag(logits), _np_cross_entropy_diag(logits.T), own_maps


def _np_sentence_loss(image_code, sentence, class_ids, gamma3):
  x = image_code.astype(np.float64)
  y = sentence.astype(np.float64)
  norms = np.linalg.norm(x, axis=1)[:, None] * np.linalg.norm(y, axis=1)[None, :]
  logits = _np_class_mask(gamma3 * (x @ y.T) / np.maximum(norms, 1e-8), class_ids)
  return _np_cross_entropy_diag(logits), _np_cross_entropy_diag(logits.T)


def _random_damsm_inputs(seed, b=5, hw=4, d=6, t=5, lengths=(5, 3, 4, 1, 2)):
  rng = np.random.default_rng(seed)
  regions = rng.normal(size=(b, hw, hw, d)).astype(np.float32)
  words = rng.normal(size=(b, t, d)).astype(np.float32)
  return regions, words, np.array(lengths, np.int32)


# ------------------------------------------------------------------ golden
@pytest.fixture(scope='module')
def golden(golden_dir):
  path = golden_dir / 'damsm_losses.npz'
  if not path.is_file():
    pytest.fail(f'missing golden file {path}')
  g = dict(np.load(path))
  g['regions'] = g['img_features'].transpose(0, 2, 3, 1)  # NCHW -> NHWC.
  g['words'] = g['words_emb'].transpose(0, 2, 1)  # [B, D, T] -> [B, T, D].
  return g


def test_word_loss_matches_golden(golden):
  loss0, loss1, maps = jax.jit(losses.damsm_word_loss)(
      golden['regions'], golden['words'], golden['cap_lens'], golden['class_ids'],
      **GAMMAS)
  np.testing.assert_allclose(loss0, golden['words_loss0'], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(loss1, golden['words_loss1'], rtol=1e-5, atol=1e-5)
  assert maps.shape == (4, 6, 17, 17)


def test_sentence_loss_matches_golden(golden):
  loss0, loss1 = jax.jit(losses.damsm_sentence_loss)(
      golden['cnn_code'], golden['rnn_code'], golden['class_ids'], GAMMAS['gamma3'])
  np.testing.assert_allclose(loss0, golden['sent_loss0'], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(loss1, golden['sent_loss1'], rtol=1e-5, atol=1e-5)


def test_numpy_oracles_match_golden(golden):
  """Validates the test's own oracles, so the comparisons below mean something."""
  loss0, loss1, _ = _np_word_loss(golden['regions'], golden['words'],
                                  golden['cap_lens'], golden['class_ids'], **GAMMAS)
  np.testing.assert_allclose([loss0, loss1],
                             [golden['words_loss0'], golden['words_loss1']], rtol=1e-5)
  s0, s1 = _np_sentence_loss(golden['cnn_code'], golden['rnn_code'],
                             golden['class_ids'], GAMMAS['gamma3'])
  np.testing.assert_allclose([s0, s1], [golden['sent_loss0'], golden['sent_loss1']],
                             rtol=1e-5)


# ------------------------------------------------------------------ DAMSM word loss
def test_word_loss_ignores_padded_words():
  regions, words, lengths = _random_damsm_inputs(0)
  pad = np.arange(words.shape[1])[None, :] >= lengths[:, None]
  garbage = words.copy()
  garbage[pad] = 1e6 * np.random.default_rng(1).normal(size=garbage[pad].shape)
  nan_garbage = words.copy()
  nan_garbage[pad] = np.nan
  class_ids = np.array([0, 1, 0, 2, 1])
  fn = jax.jit(losses.damsm_word_loss)
  grad_fn = jax.jit(jax.grad(
      lambda r, w: sum(losses.damsm_word_loss(r, w, lengths, class_ids, **GAMMAS)[:2])))
  clean = fn(regions, words, lengths, class_ids, **GAMMAS)
  clean_grad = grad_fn(regions, words)
  for dirty_words in (garbage, nan_garbage):
    dirty = fn(regions, dirty_words, lengths, class_ids, **GAMMAS)
    for a, b in zip(clean, dirty):
      np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(grad_fn(regions, dirty_words), clean_grad,
                               rtol=1e-5, atol=1e-7)
  maps = np.asarray(clean[2])
  assert np.all(maps[pad] == 0)
  np.testing.assert_allclose(maps[~pad].sum(axis=(1, 2)), 1.0, rtol=1e-5)


def test_word_loss_class_masking_matches_numpy_loop():
  regions, words, lengths = _random_damsm_inputs(2)
  class_ids = np.array([0, 1, 0, 2, 1])  # Pairs (0, 2) and (1, 4) are masked.
  fn = jax.jit(losses.damsm_word_loss)
  masked = fn(regions, words, lengths, class_ids, **GAMMAS)
  unmasked = fn(regions, words, lengths, None, **GAMMAS)
  want_masked = _np_word_loss(regions, words, lengths, class_ids, **GAMMAS)
  want_unmasked = _np_word_loss(regions, words, lengths, None, **GAMMAS)
  np.testing.assert_allclose(masked[:2], want_masked[:2], rtol=1e-5)
  np.testing.assert_allclose(unmasked[:2], want_unmasked[:2], rtol=1e-5)
  # Masking must matter in this case, else the comparison above proves little.
  assert abs(want_masked[0] - want_unmasked[0]) > 1e-2
  assert abs(want_masked[1] - want_unmasked[1]) > 1e-2
  # Distinct ids (COCO: class id = index) mask nothing.
  distinct = fn(regions, words, lengths, np.arange(5), **GAMMAS)
  np.testing.assert_allclose(distinct[:2], unmasked[:2], rtol=1e-6)
  for b, want_map in enumerate(want_masked[2]):
    np.testing.assert_allclose(masked[2][b, :lengths[b]], want_map, atol=1e-6)


def test_sentence_loss_class_masking_matches_numpy():
  rng = np.random.default_rng(3)
  image_code = rng.normal(size=(5, 7)).astype(np.float32)
  sentence = rng.normal(size=(5, 7)).astype(np.float32)
  class_ids = np.array([4, 4, 1, 1, 0])
  got = losses.damsm_sentence_loss(image_code, sentence, class_ids, 10.0)
  want = _np_sentence_loss(image_code, sentence, class_ids, 10.0)
  np.testing.assert_allclose(got, want, rtol=1e-5)
  unmasked = _np_sentence_loss(image_code, sentence, None, 10.0)
  assert abs(want[0] - unmasked[0]) > 1e-2


def test_damsm_losses_stable_and_gradients_finite():
  regions, words, lengths = _random_damsm_inputs(4)
  class_ids = np.array([0, 1, 0, 2, 1])  # -inf entries must not poison gradients.
  words[0, 0] = 0.0  # A zero word: its cosine norm is 0, clamped by eps.

  def total(regions, words):
    l0, l1, _ = losses.damsm_word_loss(regions, words, lengths, class_ids, **GAMMAS)
    s0, s1 = losses.damsm_sentence_loss(regions.mean(axis=(1, 2)), words[:, 0],
                                        class_ids, 10.0)
    return l0 + l1 + s0 + s1

  for scale in (1.0, 1e4):
    value, grads = jax.jit(jax.value_and_grad(total, argnums=(0, 1)))(
        scale * regions, scale * words)
    assert np.isfinite(value)
    for g in grads:
      assert np.all(np.isfinite(g))
  pad = np.arange(words.shape[1])[None, :] >= lengths[:, None]
  assert np.all(np.asarray(grads[1])[pad] == 0)


def test_damsm_shape_errors():
  regions, words, lengths = _random_damsm_inputs(5)
  with pytest.raises(ValueError, match='region_features'):
    losses.damsm_word_loss(regions[0], words, lengths, None, **GAMMAS)
  with pytest.raises(ValueError, match='feature sizes'):
    losses.damsm_word_loss(regions, words[..., :3], lengths, None, **GAMMAS)
  with pytest.raises(ValueError, match='batch sizes'):
    losses.damsm_word_loss(regions, words[:4], lengths, None, **GAMMAS)
  with pytest.raises(ValueError, match='batch sizes'):
    losses.damsm_sentence_loss(np.ones((3, 2)), np.ones((3, 2)), np.arange(4), 10.0)


# ------------------------------------------------------------------ adversarial
# Hand values: sigmoid(ln 3) = 3/4, so BCE(ln 3, 1) = ln(4/3), BCE(ln 3, 0) = ln 4,
# BCE(-ln 3, 0) = ln(4/3), and BCE(0, .) = ln 2.
D_LOGITS = dict(
    real_uncond=np.array([0.0, LN3]),  # BCE(., 1) = (ln 2 + ln 4/3) / 2
    real_cond=np.array([LN3, LN3]),  # ln 4/3
    fake_uncond=np.array([-LN3, 0.0]),  # BCE(., 0) = (ln 4/3 + ln 2) / 2
    fake_cond=np.array([LN3, LN3]),  # ln 4
    wrong_cond=np.array([0.0, -LN3]),  # (ln 2 + ln 4/3) / 2
)
LN43 = math.log(4.0 / 3.0)


@pytest.mark.parametrize('mismatch_term', [True, False])
def test_discriminator_loss_hand_values(mismatch_term):
  real_u = (LN2 + LN43) / 2
  real_c = LN43
  fake_u = (LN43 + LN2) / 2
  fake_c = math.log(4.0)
  wrong_c = (LN2 + LN43) / 2
  if mismatch_term:  # Reference code.
    want = (real_u + real_c) / 2 + (fake_u + fake_c + wrong_c) / 3
  else:  # Paper Eq. 10.
    want = (real_u + fake_u + real_c + fake_c) / 2
  fn = jax.jit(functools.partial(losses.discriminator_loss,
                                 mismatch_term=mismatch_term))
  loss, aux = fn(**D_LOGITS)
  np.testing.assert_allclose(loss, want, rtol=1e-6)
  np.testing.assert_allclose(aux['bce/fake_cond'], fake_c, rtol=1e-6)
  assert ('bce/wrong_cond' in aux) == mismatch_term
  # Correct side of 0: real_u [no, yes], fake_u [yes, no], fake_c [no, no].
  np.testing.assert_allclose(aux['acc/real_uncond'], 0.5)
  np.testing.assert_allclose(aux['acc/real_cond'], 1.0)
  np.testing.assert_allclose(aux['acc/fake_uncond'], 0.5)
  np.testing.assert_allclose(aux['acc/fake_cond'], 0.0)


def test_discriminator_loss_needs_wrong_logits():
  args = {k: v for k, v in D_LOGITS.items() if k != 'wrong_cond'}
  with pytest.raises(ValueError, match='wrong_cond'):
    losses.discriminator_loss(**args)
  loss, _ = losses.discriminator_loss(**args, mismatch_term=False)
  assert np.isfinite(loss)
  with pytest.raises(ValueError, match='real_cond'):
    losses.discriminator_loss(**{**D_LOGITS, 'real_cond': np.zeros((2, 1))})


def test_generator_adversarial_loss_hand_values():
  # Paper Eq. 7: 1/2 BCE(u, 1) + 1/2 BCE(c, 1).
  loss = losses.generator_adversarial_loss(np.array([0.0, LN3]), np.array([-LN3, -LN3]))
  want = 0.5 * (LN2 + LN43) / 2 + 0.5 * math.log(4.0)
  np.testing.assert_allclose(loss, want, rtol=1e-6)


def test_adversarial_losses_stable_with_huge_logits():
  big = np.array([1e4, -1e4, 3e38, -3e38], np.float32)
  loss, aux = losses.discriminator_loss(big, big, big, big, big)
  assert np.isfinite(loss)
  # BCE(-1e4, 1) is 1e4, not clamped at 100 as torch's BCELoss would.
  np.testing.assert_allclose(aux['bce/real_cond'], (1e4 + 3e38) / 4, rtol=1e-6)

  def total(x):
    d, _ = losses.discriminator_loss(x, x, x, x, x)
    return d + losses.generator_adversarial_loss(x, x)

  grad = jax.grad(total)(big)
  assert np.all(np.isfinite(grad))


# ------------------------------------------------------------------ KL
def test_kl_loss_zero_at_standard_normal():
  np.testing.assert_allclose(losses.kl_loss(np.zeros((3, 4)), np.zeros((3, 4))), 0.0)


def test_kl_loss_hand_value():
  # Elements: (1 + 0 - 1 - 1) = -1 and (1 + ln 2 - 0 - 2) = ln 2 - 1.
  # KL = -0.5 * mean = -0.5 * (ln 2 - 2) / 2.
  got = losses.kl_loss(np.array([[1.0, 0.0]]), np.array([[0.0, LN2]]))
  np.testing.assert_allclose(got, (2 - LN2) / 4, rtol=1e-6)
  with pytest.raises(ValueError, match='logvar'):
    losses.kl_loss(np.zeros((2, 3)), np.zeros((2, 4)))


# ------------------------------------------------------------------ caption loss
CAPTION_LOGITS = np.array([
    [[1.0, 2.0, 0.5, -1.0], [0.0, 0.0, 3.0, 1.0], [2.0, -2.0, 0.0, 1.0]],
    [[0.5, 0.5, 0.5, 2.0], [-1.0, 4.0, 0.0, 0.0], [-1e4, 1e4, 7.0, 0.0]],  # Last: pad.
], np.float32)
CAPTION_TARGETS = np.array([[1, 2, 0], [3, 1, 99]])  # 99: a padding id outside V.
CAPTION_LENGTHS = np.array([3, 2])


def _hand_nll():
  """Negative log-likelihoods of the five real tokens, numpy log-softmax."""
  x = CAPTION_LOGITS.astype(np.float64)
  log_probs = x - np.log(np.sum(np.exp(x - x.max(-1, keepdims=True)), -1,
                                keepdims=True)) - x.max(-1, keepdims=True)
  row0 = [-log_probs[0, 0, 1], -log_probs[0, 1, 2], -log_probs[0, 2, 0]]
  row1 = [-log_probs[1, 0, 3], -log_probs[1, 1, 1]]
  return row0, row1


@pytest.mark.parametrize('reduction', ['token_mean', 'sentence_sum'])
def test_caption_loss_hand_values(reduction):
  row0, row1 = _hand_nll()
  if reduction == 'token_mean':  # Reference code: mean over the 5 real tokens.
    want = (sum(row0) + sum(row1)) / 5
  else:  # Paper Eq. 8: per-sentence sums, averaged over the batch.
    want = (sum(row0) + sum(row1)) / 2
  fn = jax.jit(functools.partial(losses.caption_loss, reduction=reduction))
  got = fn(CAPTION_LOGITS, CAPTION_TARGETS, CAPTION_LENGTHS)
  np.testing.assert_allclose(got, want, rtol=1e-6)
  grad = jax.grad(fn)(CAPTION_LOGITS, CAPTION_TARGETS, CAPTION_LENGTHS)
  assert np.all(np.isfinite(grad))
  assert np.all(np.asarray(grad)[1, 2] == 0)  # The padded position has no say.


def test_caption_loss_stable_and_checked():
  huge = np.zeros((1, 2, 3), np.float32)
  huge[0, :, 0] = 1e30  # Target 1 then has log-probability -1e30.
  got = losses.caption_loss(huge, np.array([[1, 0]]), np.array([2]))
  np.testing.assert_allclose(got, 0.5e30, rtol=1e-6)
  with pytest.raises(ValueError, match='reduction'):
    losses.caption_loss(CAPTION_LOGITS, CAPTION_TARGETS, CAPTION_LENGTHS, 'sum')
  with pytest.raises(ValueError, match='do not match'):
    losses.caption_loss(CAPTION_LOGITS[:, :2], CAPTION_TARGETS, CAPTION_LENGTHS)


# ------------------------------------------------------------------ total G loss
def test_generator_loss_composition():
  total, aux = jax.jit(losses.generator_loss)(
      [1.0, 2.0, 3.0], 0.5, 0.25, stream_weight=20.0, kl_weight=2.0)
  np.testing.assert_allclose(total, 6.0 + 20.0 * 0.5 + 2.0 * 0.25)
  np.testing.assert_allclose(aux['adv'], 6.0)
  np.testing.assert_allclose(aux['weighted_stream'], 10.0)
  np.testing.assert_allclose(aux['weighted_kl'], 0.5)
  assert 'color_consistency' not in aux
  total, aux = losses.generator_loss([1.0, 2.0, 3.0], 0.5, 0.25, stream_weight=20.0,
                                     kl_weight=2.0, color=0.75, color_weight=2.0)
  np.testing.assert_allclose(total, 6.0 + 20.0 * 0.5 + 2.0 * 0.25 + 2.0 * 0.75)
  np.testing.assert_allclose(aux['weighted_color'], 1.5)
  total, aux = losses.generator_loss([1.0, 2.0, 3.0], 0.5, 0.25, stream_weight=20.0,
                                     kl_weight=2.0, lower_caption_ce=[0.75, 1.25],
                                     lower_stream_weight=4.0)
  np.testing.assert_allclose(total, 6.0 + 20.0 * 0.5 + 2.0 * 0.25 + 4.0 * (0.75 + 1.25))
  np.testing.assert_allclose(aux['weighted_lower_stream'], 8.0)
  with pytest.raises(ValueError, match='adv_losses'):
    losses.generator_loss([], 0.5, 0.25, 20.0, 1.0)


def test_generator_pipeline_gradients_finite():
  """The G-side losses composed as in the train step, differentiated end to end."""
  rng = np.random.default_rng(6)
  mu, logvar = rng.normal(size=(2, 2, 4)).astype(np.float32)

  def total(fake_logits, cap_logits, mu, logvar):
    adv = [losses.generator_adversarial_loss(f[0], f[1]) for f in fake_logits]
    ce = losses.caption_loss(cap_logits, CAPTION_TARGETS, CAPTION_LENGTHS)
    loss, _ = losses.generator_loss(adv, ce, losses.kl_loss(mu, logvar), 20.0, 1.0)
    return loss

  fake_logits = rng.normal(size=(3, 2, 2)).astype(np.float32)
  grads = jax.jit(jax.grad(total, argnums=(0, 1, 2, 3)))(
      fake_logits, jnp.asarray(CAPTION_LOGITS, jnp.bfloat16), mu, logvar)
  for g in grads:
    assert np.all(np.isfinite(np.asarray(g, np.float32)))


# ------------------------------------------------------------ colour consistency
def test_color_consistency_hand_values():
  # Mean term: uniform -0.5 vs uniform 0.5 in 3 channels -> 3 * 1^2, any sizes.
  low, high = np.full((2, 4, 4, 3), -0.5, np.float32), np.full((2, 8, 8, 3), 0.5, np.float32)
  np.testing.assert_allclose(losses.color_consistency([low, high]), 3.0, rtol=1e-6)
  # Covariance term: channel 0 half 0, half 1 (mean 0.5, variance 0.25) vs uniform
  # 0.5: same means, covariances differ by 0.25 in one entry -> 5 * 0.25^2.
  split = np.zeros((1, 2, 2, 3), np.float32)
  split[0, 0, :, 0] = 1.0
  split[0, :, :, 1:] = 0.5
  flat = np.full((1, 4, 4, 3), 0.5, np.float32)
  np.testing.assert_allclose(losses.color_consistency([split, flat]), 5 * 0.25**2, rtol=1e-6)
  np.testing.assert_allclose(
      losses.color_consistency([split, flat], mean_weight=0.0, cov_weight=1.0), 0.25**2,
      rtol=1e-6)
  # Pairs add up; a single stage costs nothing.
  np.testing.assert_allclose(losses.color_consistency([low, high, low]), 6.0, rtol=1e-6)
  assert float(losses.color_consistency([low])) == 0.0
  with pytest.raises(ValueError, match='batch or channels'):
    losses.color_consistency([low, high[:1]])
