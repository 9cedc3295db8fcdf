"""Tests of models/captioner.py (STREAM) and `captioner_from_torch`.

Independent checks: parameter counts from spec section 12 arithmetic
(encoder head 2048*256 + 256 + 2*256 = 525,056; LSTM 4*512*(256 + 512) +
2*4*512 = 1,576,960; embedding + output layer 256V + 512V + V = 769V); a numpy
forward (torchvision ResNet from resnet_test, BatchNorm1d, an LSTM cell loop)
of the converted PyTorch weights; decoding checked against the model's own
teacher-forced log-probabilities, including an exhaustive search.
"""

import functools
import itertools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mirrorgan_jax.models import captioner
from mirrorgan_jax.models import image_encoder
from mirrorgan_jax.pretrained import vision_from_torch as vision
from tests.image_encoder_test import random_variables
from tests.resnet_test import count_flax
from tests.resnet_test import flax_location as resnet_flax_location
from tests.resnet_test import np_resnet
from tests.resnet_test import random_state_dict
from tests.resnet_test import torchvision_resnet_shapes

V_CUB = 5450
# Tiny captioner with a converted 4-stage ResNet (CAPTION_CNN needs 4 stages).
TINY = dict(vocab_size=11, feature_dim=6, embed_dim=6, hidden_size=5,
            resnet_stages=(1, 1, 1, 1), resnet_width=2, input_size=32)
# Small-CNN captioner for decoding tests.
DEC = dict(vocab_size=6, feature_dim=8, embed_dim=8, hidden_size=16,
           backbone='small_cnn', input_size=16, small_cnn_features=(4, 8))
MAX_LEN = 7  # One decode length for all tests, so compiled decoders are reused.
SIGMOID = lambda x: 1.0 / (1.0 + np.exp(-x))


def _images(n, size, seed=0):
  return jnp.asarray(np.random.default_rng(seed).uniform(-1, 1, (n, size, size, 3)),
                     jnp.float32)


def _decoder_vars(seed=0, **kw):
  model = captioner.Captioner(**{**DEC, **kw})
  variables = random_variables(model, jnp.zeros((1, 16, 16, 3)),
                               jnp.ones((1, 2), jnp.int32), jnp.ones((1,), jnp.int32),
                               seed=seed)
  return model, variables


def sequence_log_prob(model, variables, images, ids, lengths):
  """Sum over t < lengths of log p(ids[t] | image, ids[:t]), by teacher forcing."""
  logits = jax.jit(model.apply)(variables, images, ids, lengths)
  logp = jax.nn.log_softmax(logits, axis=-1)
  picked = jnp.take_along_axis(logp, ids[..., None], axis=-1)[..., 0]
  valid = jnp.arange(ids.shape[1])[None] < lengths[:, None]
  return np.asarray(jnp.sum(jnp.where(valid, picked, 0.0), axis=1))


def _with_end(lengths, max_len):
  """Tokens scored for a decoded caption: its words plus <end> if it fit."""
  return jnp.minimum(lengths + 1, max_len)


# ------------------------------------------------------------ PyTorch layout
def _caption_cnn_name(torchvision_name):
  name = re.sub(r'^conv1\.', 'resnet.0.', torchvision_name)
  name = re.sub(r'^bn1\.', 'resnet.1.', name)
  return re.sub(r'^layer(\d)\.', lambda m: f'resnet.{int(m[1]) + 3}.', name)


def torch_captioner(seed=5):
  """(encoder_sd, decoder_sd, torchvision-named ResNet sd) for TINY."""
  resnet_sd = random_state_dict(torchvision_resnet_shapes((1, 1, 1, 1), width=2), seed)
  f, e, h, v = (TINY[k] for k in
                ('feature_dim', 'embed_dim', 'hidden_size', 'vocab_size'))
  head = random_state_dict({'linear.weight': (f, 64), 'linear.bias': (f,),
                            'bn.weight': (f,), 'bn.bias': (f,), 'bn.running_mean': (f,),
                            'bn.running_var': (f,)}, seed + 1)
  encoder_sd = {_caption_cnn_name(k): x for k, x in resnet_sd.items()} | head
  decoder_sd = random_state_dict({
      'embed.weight': (v, e), 'lstm.weight_ih_l0': (4 * h, e),
      'lstm.weight_hh_l0': (4 * h, h), 'lstm.bias_ih_l0': (4 * h,),
      'lstm.bias_hh_l0': (4 * h,), 'linear.weight': (v, h), 'linear.bias': (v,)},
                                 seed + 2)
  return encoder_sd, decoder_sd, resnet_sd


def np_captioner_logits(images_nhwc, captions, lengths, encoder_sd, decoder_sd,
                        resnet_sd):
  """Reference STREAM teacher forcing in numpy: [B, T, V], zeros past lengths."""
  d = {k: v.astype(np.float64) for k, v in {**encoder_sd, **resnet_sd}.items()}
  r = {k: v.astype(np.float64) for k, v in decoder_sd.items()}
  x = (np.asarray(images_nhwc, np.float64) + 1.0) / 2.0  # ImageNet normalisation.
  x = ((x - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]).transpose(0, 3, 1, 2)
  feat = np_resnet(x, d, (1, 1, 1, 1)) @ d['linear.weight'].T + d['linear.bias']
  feat = ((feat - d['bn.running_mean']) / np.sqrt(d['bn.running_var'] + 1e-5)
          * d['bn.weight'] + d['bn.bias'])
  b, t = captions.shape
  out = np.zeros((b, t, r['linear.weight'].shape[0]))
  for i in range(b):
    h = c = np.zeros(r['lstm.weight_hh_l0'].shape[1])
    for s in range(lengths[i]):
      x_s = feat[i] if s == 0 else r['embed.weight'][captions[i, s - 1]]
      gates = (r['lstm.weight_ih_l0'] @ x_s + r['lstm.bias_ih_l0']
               + r['lstm.weight_hh_l0'] @ h + r['lstm.bias_hh_l0'])
      gi, gf, gg, go = np.split(gates, 4)
      c = SIGMOID(gf) * c + SIGMOID(gi) * np.tanh(gg)
      h = SIGMOID(go) * np.tanh(c)
      out[i, s] = r['linear.weight'] @ h + r['linear.bias']
  return out


# ------------------------------------------------------------------ tests
def test_reference_param_counts():
  model = captioner.Captioner(vocab_size=V_CUB)
  variables = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 224, 224, 3)),
                             jnp.ones((1, 3), jnp.int32), jnp.ones((1,), jnp.int32))
  enc, dec = variables['params']['encoder'], variables['params']['decoder']
  assert count_flax(enc) - count_flax(enc['backbone']) == 525_056
  assert count_flax(enc['backbone']) == 58_143_808
  assert count_flax(dec['lstm']) == 1_576_960
  assert count_flax(dec) == 1_576_960 + 769 * V_CUB
  assert 'feature_proj' not in dec
  mask = image_encoder.trainable_mask(variables['params'])  # Frozen ResNet.
  trainable = sum(int(np.prod(p.shape)) for p, m in
                  zip(jax.tree.leaves(variables['params']), jax.tree.leaves(mask)) if m)
  assert trainable == 525_056 + 1_576_960 + 769 * V_CUB


def test_converter_places_every_entry():
  encoder_sd, decoder_sd, resnet_sd = torch_captioner()
  variables = vision.captioner_from_torch(encoder_sd, decoder_sd)

  def at(collection, path):
    tree = variables[collection]
    for part in path:
      tree = tree[part]
    return tree
  for name, value in resnet_sd.items():  # Backbone, via torchvision names.
    collection, path, leaf = resnet_flax_location(name)
    want = value.transpose(2, 3, 1, 0) if value.ndim == 4 else value
    np.testing.assert_array_equal(at(collection, ('encoder', 'backbone') + path)[leaf],
                                  want, err_msg=name)
  enc = ('encoder',)
  np.testing.assert_array_equal(at('params', enc + ('linear',))['kernel'],
                                encoder_sd['linear.weight'].T)
  np.testing.assert_array_equal(at('params', enc + ('bn',))['scale'],
                                encoder_sd['bn.weight'])
  np.testing.assert_array_equal(at('batch_stats', enc + ('bn',))['var'],
                                encoder_sd['bn.running_var'])
  dec = variables['params']['decoder']
  np.testing.assert_array_equal(dec['embed']['embedding'], decoder_sd['embed.weight'])
  np.testing.assert_array_equal(dec['lstm']['w_ih'], decoder_sd['lstm.weight_ih_l0'].T)
  np.testing.assert_array_equal(dec['lstm']['w_hh'], decoder_sd['lstm.weight_hh_l0'].T)
  np.testing.assert_array_equal(dec['lstm']['b_hh'], decoder_sd['lstm.bias_hh_l0'])
  np.testing.assert_array_equal(dec['linear']['kernel'], decoder_sd['linear.weight'].T)
  assert len(jax.tree.leaves(variables)) == len(encoder_sd) + len(decoder_sd)


def test_converted_teacher_forcing_matches_numpy():
  encoder_sd, decoder_sd, resnet_sd = torch_captioner()
  variables = vision.captioner_from_torch(encoder_sd, decoder_sd)
  model = captioner.Captioner(**TINY)
  images = _images(2, 32, seed=6)
  captions = np.array([[3, 7, 2, 9], [5, 1, 0, 0]])
  lengths = np.array([4, 2])
  got = jax.jit(model.apply)(variables, images, jnp.asarray(captions),
                             jnp.asarray(lengths))
  want = np_captioner_logits(images, captions, lengths, encoder_sd, decoder_sd, resnet_sd)
  assert got.shape == (2, 4, 11) and got.dtype == jnp.float32
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_padding_does_not_leak():
  model, variables = _decoder_vars()
  images = _images(2, 16)
  lengths = jnp.array([2, 4])
  a = jnp.array([[1, 2, 3, 4], [1, 2, 3, 4]])
  b = jnp.array([[1, 2, 5, 5], [1, 2, 3, 4]])  # Differs only past row 0's length.
  la, lb = (jax.jit(model.apply)(variables, images, c, lengths) for c in (a, b))
  np.testing.assert_array_equal(la, lb)
  np.testing.assert_array_equal(la[0, 2:], 0.0)
  c = a.at[0, 0].set(5)  # w_1 is the input of step 1, inside row 0's length.
  lc = jax.jit(model.apply)(variables, images, c, lengths)
  np.testing.assert_array_equal(lc[0, 0], la[0, 0])  # Step 0 sees only the image.
  assert not np.allclose(lc[0, 1], la[0, 1])


def test_image_every_step_adds_the_image_to_word_inputs():
  """Same weights: the first word's logits agree; later ones see the image again,
  exactly as the reference decoder reading embed(w_t) + image at step t."""
  plain, variables = _decoder_vars(seed=5)
  every = captioner.Captioner(**{**DEC, 'image_every_step': True})
  images = _images(2, 16, seed=5)
  ids, lengths = jnp.array([[1, 2, 3], [4, 5, 0]]), jnp.array([3, 2])
  got = every.apply(variables, images, ids, lengths)
  np.testing.assert_allclose(got[:, 0], plain.apply(variables, images, ids, lengths)[:, 0],
                             rtol=1e-6)
  image = plain.apply(variables, images, method=captioner.Captioner.encode)
  embed = variables['params']['decoder']['embed']['embedding']
  # Reference decoder on inputs [image, embed(w_1) + image, embed(w_2) + image].
  inputs = jnp.concatenate([image[:, None], embed[ids[:, :-1]] + image[:, None]], axis=1)
  hidden, _ = plain.apply(variables, inputs, lengths,
                          method=lambda m, x, n: m.decoder.lstm(x, n))
  want = plain.apply(variables, hidden, method=lambda m, h: m.decoder.linear(h))
  valid = (jnp.arange(3)[None] < lengths[:, None])[..., None]
  np.testing.assert_allclose(got, jnp.where(valid, want, 0.0), rtol=1e-5, atol=1e-6)
  assert not np.allclose(got[:, 1], plain.apply(variables, images, ids, lengths)[:, 1])


def test_beam_of_one_is_greedy():
  model, variables = _decoder_vars(seed=1)
  images = _images(8, 16, seed=1)
  ids, lengths = captioner.greedy_decode(model, variables, images, MAX_LEN)
  beam_ids, beam_lengths, _ = captioner.beam_search(model, variables, images, 1, MAX_LEN)
  assert ids.shape == (8, MAX_LEN) and ids.dtype == jnp.int32
  np.testing.assert_array_equal(beam_ids, ids)
  np.testing.assert_array_equal(beam_lengths, lengths)


@pytest.mark.parametrize('image_every_step', [False, True])
def test_beam_scores_are_log_probs_and_beat_greedy(image_every_step):
  """Decoding (carry path) scores equal teacher forcing (sequence path)."""
  model, variables = _decoder_vars(seed=2, image_every_step=image_every_step)
  images = _images(8, 16, seed=2)
  max_len = MAX_LEN
  ids, lengths = captioner.greedy_decode(model, variables, images, max_len)
  greedy = sequence_log_prob(model, variables, images, ids, _with_end(lengths, max_len))
  beam_ids, beam_lengths, scores = captioner.beam_search(model, variables, images, 4,
                                                         max_len)
  recomputed = sequence_log_prob(model, variables, images, beam_ids,
                                 _with_end(beam_lengths, max_len))
  np.testing.assert_allclose(scores, recomputed, rtol=1e-5, atol=1e-5)
  assert np.all(scores >= greedy - 1e-5)
  assert np.any(scores > greedy + 1e-3)  # The wider beam finds better captions here.


def test_wide_beam_is_exhaustive_search():
  # V = 3, 3 steps: 1 + 2 + 4 + 8 = 15 possible captions, so a beam of 16 never
  # prunes and must return the best one under teacher-forced log-probabilities.
  model, variables = _decoder_vars(seed=3, vocab_size=3)
  images = _images(2, 16, seed=3)
  hyps = [(0,)] + [w + (0,) for w in itertools.product((1, 2), repeat=1)]
  hyps += [w + (0,) for w in itertools.product((1, 2), repeat=2)]
  hyps += list(itertools.product((1, 2), repeat=3))
  ids = jnp.array([list(w) + [0] * (3 - len(w)) for w in hyps])
  lens = jnp.array([len(w) for w in hyps])
  best_ids, _, scores = captioner.beam_search(model, variables, images, 16, 3)
  for i in range(2):
    repeated = jnp.repeat(images[i:i + 1], len(hyps), axis=0)
    all_scores = sequence_log_prob(model, variables, repeated, ids, lens)
    np.testing.assert_allclose(scores[i], all_scores.max(), rtol=1e-5)
    np.testing.assert_array_equal(best_ids[i], ids[int(np.argmax(all_scores))])


def _check_stops(ids, lengths, max_len):
  ids = np.asarray(ids)
  for row, n in zip(ids, np.asarray(lengths)):
    zeros = np.flatnonzero(row == 0)
    assert n == (zeros[0] if zeros.size else max_len)
    assert np.all(row[n:] == 0) and np.all(row[:n] != 0)


def test_decoding_stops_at_end_token():
  model, variables = _decoder_vars(seed=4)
  images = _images(8, 16, seed=4)
  ids, lengths = captioner.greedy_decode(model, variables, images, MAX_LEN)
  _check_stops(ids, lengths, MAX_LEN)
  beam_ids, beam_lengths, _ = captioner.beam_search(model, variables, images, 4, MAX_LEN)
  _check_stops(beam_ids, beam_lengths, MAX_LEN)
  assert np.any(np.asarray(lengths) < MAX_LEN)  # Some captions did end early.

  def with_end_bias(bias):
    params = jax.tree.map(lambda x: x, variables['params'])
    linear = params['decoder']['linear']
    linear['bias'] = linear['bias'].at[0].set(bias)
    return {**variables, 'params': params}
  always_end = with_end_bias(30.0)
  ids, lengths = captioner.greedy_decode(model, always_end, images, MAX_LEN)
  assert np.all(np.asarray(ids) == 0) and np.all(np.asarray(lengths) == 0)
  _, lengths, scores = captioner.beam_search(model, always_end, images, 4, MAX_LEN)
  assert np.all(np.asarray(lengths) == 0)
  np.testing.assert_allclose(scores, 0.0, atol=1e-3)  # log p(<end>) ~ 0.
  never_end = with_end_bias(-30.0)
  for out in (captioner.greedy_decode(model, never_end, images, MAX_LEN),
              captioner.beam_search(model, never_end, images, 4, MAX_LEN)):
    assert np.all(np.asarray(out[1]) == MAX_LEN) and np.all(np.asarray(out[0]) != 0)


def test_bfloat16_compute_runs():
  model, variables = _decoder_vars(seed=5)
  bf16 = captioner.Captioner(**DEC, dtype=jnp.bfloat16)
  images = _images(2, 20, seed=5)
  captions, lengths = jnp.array([[1, 2, 3]] * 2), jnp.array([3, 2])
  want = jax.jit(model.apply)(variables, images, captions, lengths)
  got = jax.jit(bf16.apply)(variables, images, captions, lengths)
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(got, want, rtol=0.1, atol=0.1 * float(jnp.abs(want).max()))
  # Decoding shares the step functions checked above; greedy runs them in bf16.
  ids, lengths = captioner.greedy_decode(bf16, variables, images, MAX_LEN)
  assert ids.shape == (2, MAX_LEN) and np.all(np.asarray(lengths) <= MAX_LEN)


def test_feature_projection_when_sizes_differ():
  model, variables = _decoder_vars(feature_dim=8, embed_dim=4)
  assert variables['params']['decoder']['feature_proj']['kernel'].shape == (8, 4)
  assert variables['params']['decoder']['lstm']['w_ih'].shape == (4, 64)
  logits = jax.jit(model.apply)(variables, _images(2, 16), jnp.ones((2, 3), jnp.int32),
                                jnp.array([3, 1]))
  assert logits.shape == (2, 3, 6)


def test_bad_input():
  model, variables = _decoder_vars()
  with pytest.raises(ValueError, match='lengths'):
    model.apply(variables, _images(2, 16), jnp.ones((2, 3), jnp.int32),
                jnp.ones((3,), jnp.int32))
  with pytest.raises(ValueError, match='max_len'):
    captioner.greedy_decode(model, variables, _images(2, 16), 0)
  with pytest.raises(ValueError, match='unknown captioner backbone'):
    vgg = captioner.Captioner(vocab_size=5, backbone='vgg')
    jax.eval_shape(functools.partial(vgg.init, jax.random.key(0)),
                   jnp.zeros((1, 16, 16, 3)), jnp.ones((1, 2), jnp.int32),
                   jnp.ones((1,), jnp.int32))
  encoder_sd, decoder_sd, _ = torch_captioner()
  with pytest.raises(KeyError, match=r'lstm\.bias_hh_l0'):
    vision.captioner_from_torch(encoder_sd, {k: v for k, v in decoder_sd.items()
                                             if k != 'lstm.bias_hh_l0'})
  bad = dict(encoder_sd, **{'resnet.5.0.conv2.weight': np.zeros((4, 4, 1, 1),
                                                                 np.float32)})
  with pytest.raises(ValueError, match=r'resnet\.5\.0\.conv2\.weight'):
    vision.captioner_from_torch(bad, decoder_sd)
