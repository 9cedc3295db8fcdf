"""Tests of word attention (paper Eq. 4) and sentence attention (paper Eq. 5)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mirrorgan_jax.models import glam
from mirrorgan_jax.pretrained import gan_from_torch as gan


def test_word_attention_golden(golden_dir):
  data = np.load(golden_dir / 'word_attention.npz')
  state_dict = {'conv_context.weight': data['param/conv_context.weight']}
  h = data['h_code'].transpose(0, 2, 3, 1)  # NCHW -> NHWC.
  words = data['word_embs'].transpose(0, 2, 1)  # [B, E, T] -> [B, T, E].
  module = glam.WordAttention(features=6)
  template = jax.eval_shape(
      lambda: module.init(jax.random.key(0), h, words, data['mask']))
  variables = gan.word_attention_from_torch(state_dict, template=template)
  context, weights = module.apply(variables, h, words, data['mask'])
  np.testing.assert_allclose(
      context, data['weighted_context'].transpose(0, 2, 3, 1), atol=1e-5, rtol=0)
  np.testing.assert_allclose(
      weights, data['word_attn'].transpose(0, 2, 3, 1), atol=1e-5, rtol=0)


def test_word_attention_masks_each_example_with_its_own_mask():
  rng = np.random.default_rng(0)
  lengths = np.array([2, 5, 3])  # Different per example: AttnGAN#93 would mix them.
  mask = np.arange(5)[None, :] >= lengths[:, None]
  h = rng.normal(size=(3, 4, 4, 6)).astype(np.float32)
  words = rng.normal(size=(3, 5, 7)).astype(np.float32)
  module = glam.WordAttention(features=6)
  variables = module.init(jax.random.key(0), h, words, mask)
  context, weights = module.apply(variables, h, words, mask)
  weights = np.asarray(weights)
  assert weights.shape == (3, 4, 4, 5)
  np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-6)
  assert np.all(weights[np.broadcast_to(mask[:, None, None, :], weights.shape)] == 0)
  # Context = sum_t weight_t * U w_t, with U the projection (plain numpy).
  projected = words @ np.asarray(variables['params']['conv_context']['kernel'])
  np.testing.assert_allclose(
      context, np.einsum('bhwt,btm->bhwm', weights, projected), atol=1e-5)
  # Padded words cannot influence anything: change them and nothing moves.
  words2 = np.where(mask[..., None], 100.0, words).astype(np.float32)
  context2, weights2 = module.apply(variables, h, words2, mask)
  np.testing.assert_array_equal(weights, weights2)
  np.testing.assert_allclose(context, context2, atol=1e-6)


def test_masked_softmax_all_masked_row_is_zero_not_nan():
  scores = jnp.array([[1.0, 2.0], [3.0, 4.0]])
  mask = jnp.array([[False, True], [True, True]])
  out = glam.masked_softmax(scores, mask)
  np.testing.assert_array_equal(out, [[1.0, 0.0], [0.0, 0.0]])
  grad = jax.grad(lambda s: jnp.sum(glam.masked_softmax(s, mask) * 3.0))(scores)
  assert np.all(np.isfinite(grad))


def _sentence_inputs():
  """A 2x2 map with 2 channels and a condition giving s' = V c + b = [1, 2]."""
  h = np.zeros((1, 2, 2, 2), np.float32)
  h[0, 0, 1, 0] = math.log(3.0)  # Channel 0: u = 1 * h -> exp = [1, 3, 1, 1].
  h[0, 0, 0, 1] = math.log(2.0) / 2  # Channel 1: u = 2 * h -> exp = [2, 1, 1, 1].
  condition = np.array([[1.0, 0.5]], np.float32)
  linear = {'kernel': np.array([[1.0, 0.0], [0.0, 2.0]], np.float32),
            'bias': np.array([0.0, 1.0], np.float32)}
  return h, condition, linear


def test_sentence_attention_paper_eq5_by_hand():
  h, condition, linear = _sentence_inputs()
  module = glam.SentenceAttention(features=2, variant='paper')
  context, beta = module.apply({'params': {'linear': linear}}, h, condition)
  # Softmax over the 4 positions, per channel (rows: (0,0), (0,1), (1,0), (1,1)).
  want_beta = np.array([[1 / 6, 0.4], [1 / 2, 0.2], [1 / 6, 0.2], [1 / 6, 0.2]])
  want_context = want_beta * np.array([1.0, 2.0])  # s' o beta.
  np.testing.assert_allclose(beta.reshape(4, 2), want_beta, atol=1e-6)
  np.testing.assert_allclose(context.reshape(4, 2), want_context, atol=1e-6)


def test_sentence_attention_reference_softmax_over_channels_by_hand():
  h, condition, linear = _sentence_inputs()
  module = glam.SentenceAttention(features=2, variant='reference')
  params = {'linear': linear,
            'conv_sentence_vis': {'kernel': np.eye(2, dtype=np.float32)}}
  context, beta = module.apply({'params': params}, h, condition)
  # Per pixel, u = (h0 * 1, h1 * 2) and the softmax runs over the 2 channels:
  # (0,0): u = (0, ln 2) -> (1/3, 2/3); (0,1): u = (ln 3, 0) -> (3/4, 1/4);
  # (1,0), (1,1): u = (0, 0) -> (1/2, 1/2).
  want_beta = np.array([[1 / 3, 2 / 3], [3 / 4, 1 / 4], [0.5, 0.5], [0.5, 0.5]])
  np.testing.assert_allclose(beta.reshape(4, 2), want_beta, atol=1e-6)
  np.testing.assert_allclose(context.reshape(4, 2), want_beta * [1.0, 2.0], atol=1e-6)


def test_sentence_attention_parameters_per_variant():
  h, condition = jnp.zeros((2, 3, 3, 4)), jnp.zeros((2, 5))
  for variant, names in (('paper', {'linear'}),
                         ('reference', {'linear', 'conv_sentence_vis'})):
    module = glam.SentenceAttention(features=4, variant=variant)
    params = module.init(jax.random.key(0), h, condition)['params']
    assert set(params) == names
    np.testing.assert_array_equal(params['linear']['bias'], 0.0)  # Ref init.
  with pytest.raises(ValueError, match='variant'):
    glam.SentenceAttention(4, 'channels').init(jax.random.key(0), h, condition)


def test_bfloat16_attention_runs():
  h = jnp.ones((1, 2, 2, 4), jnp.bfloat16)
  words, mask = jnp.ones((1, 3, 5)), jnp.array([[False, False, True]])
  word = glam.WordAttention(4, dtype=jnp.bfloat16)
  v = word.init(jax.random.key(0), h, words, mask)
  _, weights = word.apply(v, h, words, mask)
  np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-6)
  sent = glam.SentenceAttention(4, dtype=jnp.bfloat16)
  v = sent.init(jax.random.key(0), h, jnp.ones((1, 3)))
  context, _ = sent.apply(v, h, jnp.ones((1, 3)))
  assert context.dtype == jnp.bfloat16
  assert np.all(np.isfinite(np.asarray(context, np.float32)))


def test_word_attention_bad_shapes():
  module = glam.WordAttention(features=6)
  with pytest.raises(ValueError, match='mask'):
    module.init(jax.random.key(0), jnp.zeros((2, 3, 3, 6)), jnp.zeros((2, 4, 5)),
                jnp.zeros((2, 5), bool))
  with pytest.raises(ValueError, match='h must be'):
    module.init(jax.random.key(0), jnp.zeros((2, 3, 3, 5)), jnp.zeros((2, 4, 5)),
                jnp.zeros((2, 4), bool))
