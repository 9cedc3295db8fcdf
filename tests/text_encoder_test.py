"""Tests of the STEM text encoder and its PyTorch converter."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mirrorgan_jax.models import text_encoder
from mirrorgan_jax.pretrained import gan_from_torch as gan


def _golden(golden_dir):
  data = np.load(golden_dir / 'text_encoder.npz')
  state_dict = {k[len('param/'):]: data[k] for k in data.files
                if k.startswith('param/')}
  return state_dict, data


def _init(model, tokens, lengths):
  return model.init(jax.random.key(0), tokens, lengths)


def test_golden_words_and_sentence(golden_dir):
  state_dict, data = _golden(golden_dir)
  model = text_encoder.TextEncoder(vocab_size=50, embedding_dim=16, hidden_size=8)
  tokens, lengths = jnp.asarray(data['captions']), jnp.asarray(data['cap_lens'])
  template = jax.eval_shape(lambda: _init(model, tokens, lengths))
  variables = gan.text_encoder_from_torch(state_dict, template=template)
  words, sentence = model.apply(variables, tokens, lengths)
  want_words = data['words_emb'].transpose(0, 2, 1)  # [B, 2H, T] -> [B, T, 2H]
  assert words.shape == want_words.shape
  # If this fails by ~0.2 everywhere, check that models/lstm.py uses its stored
  # parameters as the weights (no shift applied at call time).
  np.testing.assert_allclose(words, want_words, atol=1e-5, rtol=0)
  np.testing.assert_allclose(sentence, data['sent_emb'], atol=1e-5, rtol=0)
  pad = np.arange(tokens.shape[1])[None, :] >= data['cap_lens'][:, None]
  assert np.all(np.asarray(words)[pad] == 0.0)


def test_padded_batch_equals_each_caption_alone():
  model = text_encoder.TextEncoder(vocab_size=30, embedding_dim=6, hidden_size=5)
  lengths = np.array([4, 1, 7])
  tokens = np.random.default_rng(0).integers(1, 30, size=(3, 7))  # Junk past lengths.
  variables = _init(model, jnp.asarray(tokens), jnp.asarray(lengths))
  words, sentence = model.apply(variables, tokens, lengths)
  for b, length in enumerate(lengths):
    alone_w, alone_s = model.apply(variables, tokens[b:b + 1, :length],
                                   lengths[b:b + 1])
    np.testing.assert_allclose(words[b, :length], alone_w[0], atol=1e-6)
    np.testing.assert_allclose(sentence[b], alone_s[0], atol=1e-6)
    assert np.all(np.asarray(words[b, length:]) == 0.0)
  # Backward half of the sentence = backward state at token 0; forward half =
  # forward state at the last real token.
  np.testing.assert_allclose(sentence[:, 5:], words[:, 0, 5:], atol=1e-6)
  last = np.asarray(words)[np.arange(3), lengths - 1, :5]
  np.testing.assert_allclose(sentence[:, :5], last, atol=1e-6)


def test_dropout_only_in_training():
  model = text_encoder.TextEncoder(vocab_size=30, embedding_dim=6, hidden_size=5)
  tokens, lengths = jnp.ones((2, 3), jnp.int32), jnp.array([3, 2])
  variables = _init(model, tokens, lengths)
  eval_a = model.apply(variables, tokens, lengths)
  eval_b = model.apply(variables, tokens, lengths, train=False)
  train = model.apply(variables, tokens, lengths, train=True,
                      rngs={'dropout': jax.random.key(1)})
  np.testing.assert_array_equal(eval_a[1], eval_b[1])
  assert not np.allclose(train[1], eval_a[1])


def test_parameter_count_cub():
  model = text_encoder.TextEncoder(vocab_size=5450)
  shapes = jax.eval_shape(
      lambda: _init(model, jnp.zeros((2, 18), jnp.int32), jnp.full((2,), 18)))
  count = sum(np.prod(x.shape) for x in jax.tree.leaves(shapes))
  # 5450 * 300 embedding + 2 * (4 * 128 * (300 + 128) + 2 * 512) LSTM.
  assert count == 2_075_320


def test_bfloat16_compute_keeps_float32_params():
  model = text_encoder.TextEncoder(30, 6, 5, dtype=jnp.bfloat16)
  tokens, lengths = jnp.ones((2, 3), jnp.int32), jnp.array([3, 1])
  variables = _init(model, tokens, lengths)
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(variables))
  words, sentence = model.apply(variables, tokens, lengths)
  assert np.all(np.isfinite(np.asarray(words, np.float32)))
  assert sentence.shape == (2, 10)


def test_converter_errors(golden_dir):
  state_dict, data = _golden(golden_dir)
  missing = {k: v for k, v in state_dict.items() if k != 'rnn.bias_hh_l0_reverse'}
  with pytest.raises(KeyError, match='rnn.bias_hh_l0_reverse'):
    gan.text_encoder_from_torch(missing)
  with pytest.raises(ValueError, match='decoder.weight'):
    gan.text_encoder_from_torch({**state_dict, 'decoder.weight': np.zeros(3)})
  bigger_vocab = text_encoder.TextEncoder(53, 16, 8)
  template = jax.eval_shape(lambda: _init(
      bigger_vocab, jnp.asarray(data['captions']), jnp.asarray(data['cap_lens'])))
  with pytest.raises(ValueError, 
                     match=r"\['embedding'\]\['embedding'\]: \(50, 16\) instead"):
    gan.text_encoder_from_torch(state_dict, template=template)


def test_bad_inputs():
  model = text_encoder.TextEncoder(30, 6, 5)
  with pytest.raises(ValueError, match='tokens'):
    _init(model, jnp.ones((2, 3, 1), jnp.int32), jnp.array([1, 1]))
  with pytest.raises(ValueError, match='integers'):
    _init(model, jnp.ones((2, 3)), jnp.array([1, 1]))
