"""Tests of the per-scale discriminators and their PyTorch converter."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mirrorgan_jax.models import discriminators
from mirrorgan_jax.pretrained import gan_from_torch as gan


def _init(model, batch=2, sentence_dim=16):
  image = jnp.zeros((batch, model.image_size, model.image_size, 3))
  return model.init(jax.random.key(0), image, jnp.zeros((batch, sentence_dim)))


def _template(model, sentence_dim=16):
  return jax.eval_shape(lambda: _init(model, sentence_dim=sentence_dim))


def _count(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def test_d64_golden(golden_dir):
  data = np.load(golden_dir / 'd_net64.npz')
  state_dict = {k[len('param/'):]: data[k] for k in data.files
                if k.startswith('param/')}
  model = discriminators.Discriminator(image_size=64, ndf=4)
  variables = gan.discriminator_from_torch(state_dict, 64, template=_template(model))
  image = data['image'].transpose(0, 2, 3, 1)
  code = model.apply(variables, image, method='encode')
  np.testing.assert_allclose(code, data['h_code'].transpose(0, 2, 3, 1),
                             atol=1e-5, rtol=0)
  logits = model.apply(variables, image, data['sent_emb'])
  np.testing.assert_allclose(jax.nn.sigmoid(logits['uncond']),
                             data['uncond_logits'], atol=1e-5, rtol=0)
  np.testing.assert_allclose(jax.nn.sigmoid(logits['cond']),
                             data['cond_logits'], atol=1e-5, rtol=0)


def test_parameter_counts_cub():
  # Reference spec §4/§12, ndf 64 and 256-d sentences.
  want = {64: 6_313_730, 128: 19_424_002, 256: 71_858_946}
  for size, count in want.items():
    model = discriminators.Discriminator(image_size=size, ndf=64)
    assert _count(_template(model, 256)['params']) == count, size


def test_trunk_layout_small_images():
  ndf = 4
  assert discriminators.trunk_layout(64, ndf) == [
      (4, 4, False), (8, 4, True), (16, 4, True), (32, 4, True)]
  assert discriminators.trunk_layout(32, ndf) == [
      (8, 4, False), (16, 4, True), (32, 4, True)]
  assert discriminators.trunk_layout(16, ndf) == [(16, 4, False), (32, 4, True)]
  assert discriminators.trunk_layout(256, ndf)[4:] == [
      (64, 4, True), (128, 4, True), (64, 3, True), (32, 3, True)]
  for bad in (12, 4, 100):
    with pytest.raises(ValueError, match='image_size'):
      discriminators.trunk_layout(bad, ndf)


@pytest.mark.parametrize('size', [16, 32])
def test_small_discriminators_code_and_reuse(size):
  model = discriminators.Discriminator(image_size=size, ndf=4)
  rng = np.random.default_rng(size)
  image = rng.uniform(-1, 1, (3, size, size, 3)).astype(np.float32)
  sentence = rng.normal(size=(3, 16)).astype(np.float32)
  variables = _init(model, batch=3)
  code = model.apply(variables, image, method='encode')
  assert code.shape == (3, 4, 4, 32)  # 4x4 with 8 ndf channels.
  full = model.apply(variables, image, sentence)
  assert full['uncond'].shape == full['cond'].shape == (3,)
  np.testing.assert_allclose(
      model.apply(variables, code, method='uncond_logits'), full['uncond'],
      atol=1e-6)
  np.testing.assert_allclose(
      model.apply(variables, code, sentence, method='cond_logits'), full['cond'],
      atol=1e-6)
  # A mismatched caption reuses the same code and changes only the cond logit.
  wrong = model.apply(variables, code, sentence[::-1], method='cond_logits')
  assert not np.allclose(wrong, full['cond'])


def test_sentence_rms_rescales_the_sentence_of_the_conditional_head():
  """sentence_rms = r: the cond logit of the raw head fed the sentence scaled to rms r
  by hand, whatever the sentence's scale; the unconditional logit is untouched."""
  rng = np.random.default_rng(3)
  image = rng.uniform(-1, 1, (3, 16, 16, 3)).astype(np.float32)
  sentence = rng.normal(size=(3, 16)).astype(np.float32)
  by_hand = sentence * 2.0 / np.sqrt(np.mean(sentence**2, axis=-1, keepdims=True))
  raw = discriminators.Discriminator(image_size=16, ndf=4)
  variables = _init(raw, batch=3)
  want = raw.apply(variables, image, by_hand)
  for scale in (1.0, 0.05):
    got = raw.clone(sentence_rms=2.0).apply(variables, image, sentence * scale)
    np.testing.assert_allclose(got['cond'], want['cond'], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got['uncond'], want['uncond'], rtol=1e-6)
  assert not np.allclose(raw.apply(variables, image, sentence)['cond'], want['cond'])


def test_gradients_finite_and_nonzero_for_every_parameter():
  model = discriminators.Discriminator(image_size=32, ndf=4)
  rng = np.random.default_rng(0)
  image = rng.uniform(-1, 1, (3, 32, 32, 3)).astype(np.float32)
  sentence = rng.normal(size=(3, 16)).astype(np.float32)
  variables = _init(model, batch=3)

  def loss(params):
    v = {**variables, 'params': params}
    code, _ = model.apply(v, image, True, method='encode', mutable=['batch_stats'])
    uncond = model.apply(v, code, method='uncond_logits')
    cond, _ = model.apply(v, code, sentence, True, method='cond_logits',
                          mutable=['batch_stats'])
    return jnp.sum(jax.nn.log_sigmoid(uncond) * jnp.array([1.0, 2.0, 3.0])
                   + jax.nn.log_sigmoid(-cond))

  grads = jax.grad(loss)(variables['params'])
  for path, g in jax.tree_util.tree_leaves_with_path(grads):
    g = np.asarray(g)
    assert np.all(np.isfinite(g)), path
    assert np.any(g != 0), path


def test_train_mode_updates_batch_stats_and_bfloat16_runs():
  model = discriminators.Discriminator(image_size=16, ndf=4, dtype=jnp.bfloat16)
  variables = _init(model)
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(variables))
  image = jnp.asarray(np.random.default_rng(1).uniform(-1, 1, (2, 16, 16, 3)),
                      jnp.float32)
  out, updates = model.apply(variables, image, jnp.ones((2, 16)), train=True,
                             mutable=['batch_stats'])
  assert out['cond'].dtype == jnp.float32
  assert np.all(np.isfinite(out['uncond'])) and np.all(np.isfinite(out['cond']))
  before = variables['batch_stats']['trunk_1']['bn']['mean']
  assert not np.allclose(updates['batch_stats']['trunk_1']['bn']['mean'], before)


def test_bad_inputs():
  model = discriminators.Discriminator(image_size=16, ndf=4)
  with pytest.raises(ValueError, match='image must be'):
    model.init(jax.random.key(0), jnp.zeros((2, 32, 32, 3)), jnp.zeros((2, 16)))
  with pytest.raises(ValueError, match='sentence must be'):
    model.init(jax.random.key(0), jnp.zeros((2, 16, 16, 3)), jnp.zeros((3, 16)))


def _reference_d_state_dict(size, ndf=2, nef=5):
  """Random arrays named and shaped as the authors' D_NET{64,128,256}, by hand."""
  rng = np.random.default_rng(0)
  sd = {}

  def conv_bn(conv, bn, cin, cout, k):
    sd[f'{conv}.weight'] = rng.normal(size=(cout, cin, k, k)).astype(np.float32)
    if bn:
      for p in ('weight', 'bias', 'running_mean', 'running_var'):
        sd[f'{bn}.{p}'] = rng.uniform(0.5, 1.5, cout).astype(np.float32)
      sd[f'{bn}.num_batches_tracked'] = np.array(3)

  conv_bn('img_code_s16.0', None, 3, ndf, 4)
  conv_bn('img_code_s16.2', 'img_code_s16.3', ndf, 2 * ndf, 4)
  conv_bn('img_code_s16.5', 'img_code_s16.6', 2 * ndf, 4 * ndf, 4)
  conv_bn('img_code_s16.8', 'img_code_s16.9', 4 * ndf, 8 * ndf, 4)
  if size == 128:
    conv_bn('img_code_s32.0', 'img_code_s32.1', 8 * ndf, 16 * ndf, 4)
    conv_bn('img_code_s32_1.0', 'img_code_s32_1.1', 16 * ndf, 8 * ndf, 3)
  if size == 256:
    conv_bn('img_code_s32.0', 'img_code_s32.1', 8 * ndf, 16 * ndf, 4)
    conv_bn('img_code_s64.0', 'img_code_s64.1', 16 * ndf, 32 * ndf, 4)
    conv_bn('img_code_s64_1.0', 'img_code_s64_1.1', 32 * ndf, 16 * ndf, 3)
    conv_bn('img_code_s64_2.0', 'img_code_s64_2.1', 16 * ndf, 8 * ndf, 3)
  conv_bn('COND_DNET.jointConv.0', 'COND_DNET.jointConv.1', 8 * ndf + nef, 8 * ndf, 3)
  for head in ('UNCOND_DNET', 'COND_DNET'):
    conv_bn(f'{head}.outlogits.0', None, 8 * ndf, 1, 4)
    sd[f'{head}.outlogits.0.bias'] = np.array([0.25], np.float32)
  return sd


@pytest.mark.parametrize('size', [128, 256])
def test_converter_larger_discriminators(size):
  sd = _reference_d_state_dict(size)
  model = discriminators.Discriminator(image_size=size, ndf=2)
  variables = gan.discriminator_from_torch(sd, size, template=_template(model, 5))
  last = 'img_code_s32_1' if size == 128 else 'img_code_s64_2'
  trunk = variables['params'][f'trunk_{len(variables["params"]) - 4}']
  np.testing.assert_array_equal(trunk['conv']['kernel'],
                                sd[f'{last}.0.weight'].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(variables['params']['cond_head']['conv']['bias'], [0.25])


def test_converter_errors():
  sd = _reference_d_state_dict(64)
  model = discriminators.Discriminator(image_size=64, ndf=2)
  with pytest.raises(ValueError, match='img_code_s32'):
    gan.discriminator_from_torch(_reference_d_state_dict(128), 64)  # Leftovers.
  with pytest.raises(KeyError, match='UNCOND_DNET.outlogits.0.weight'):
    gan.discriminator_from_torch(
        {k: v for k, v in sd.items() if not k.startswith('UNCOND')}, 64)
  with pytest.raises(ValueError, match='image_size=32'):
    gan.discriminator_from_torch(sd, 32)
  with pytest.raises(ValueError, 
                     match=r"\['joint'\]\['conv'\]\['kernel'\]: \(3, 3, 21, 16\) instead"):
    gan.discriminator_from_torch(sd, 64, template=_template(model, 7))
