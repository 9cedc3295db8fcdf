"""Tests of the conditioning augmentation, generator stages and G converters."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import shapes
from mirrorgan_jax.models import conditioning
from mirrorgan_jax.models import generator
from mirrorgan_jax.pretrained import gan_from_torch as gan


def _golden(golden_dir, name):
  data = np.load(golden_dir / f'{name}.npz')
  state_dict = {k[len('param/'):]: data[k] for k in data.files
                if k.startswith('param/')}
  return state_dict, data


def _count(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def _smoke_generator(**overrides):
  fields = dict(shapes.get_config('smoke').model.generator)
  fields.update(overrides)
  return generator.Generator(**fields)


def _inputs(batch=3, steps=5, word_dim=16, sentence_dim=16, z_dim=8, seed=0):
  rng = np.random.default_rng(seed)
  return dict(z=rng.normal(size=(batch, z_dim)).astype(np.float32),
              sentence=rng.normal(size=(batch, sentence_dim)).astype(np.float32),
              words=rng.normal(size=(batch, steps, word_dim)).astype(np.float32),
              lengths=np.array([steps, 2, 3][:batch]))


def _init(model, inputs):
  return model.init({'params': jax.random.key(0), 'noise': jax.random.key(1)},
                    **inputs)


@functools.cache
def _smoke_variables(glam):
  """Variables of the smoke-config G, built once per file (init is slow on CPU)."""
  return _init(_smoke_generator(glam=glam), _inputs())


# ---------------------------------------------------------------- golden


def test_ca_golden(golden_dir):
  state_dict, data = _golden(golden_dir, 'ca_net')
  module = conditioning.ConditioningAugmentation(condition_dim=4)
  template = jax.eval_shape(
      lambda: module.init(jax.random.key(0), data['sent_emb'], data['eps']))
  variables = gan.ca_from_torch(state_dict, template=template)
  c, mu, logvar = module.apply(variables, data['sent_emb'], data['eps'])
  np.testing.assert_allclose(mu, data['mu'], atol=1e-5, rtol=0)
  np.testing.assert_allclose(logvar, data['logvar'], atol=1e-5, rtol=0)
  np.testing.assert_allclose(c, data['c_code'], atol=1e-5, rtol=0)


def test_initial_stage_golden(golden_dir):
  state_dict, data = _golden(golden_dir, 'init_stage_g')
  module = generator.InitialStage(ngf=4, base_size=64)  # Starts at 16 * 4 = 64.
  template = jax.eval_shape(lambda: module.init(
      jax.random.key(0), data['c_code'], data['z_code']))
  variables = gan.init_stage_from_torch(state_dict, template=template)
  h = module.apply(variables, data['c_code'], data['z_code'])
  np.testing.assert_allclose(h, data['h_code'].transpose(0, 2, 3, 1),
                             atol=1e-5, rtol=0)


def test_ca_draws_noise_from_the_noise_rng():
  module = conditioning.ConditioningAugmentation(condition_dim=3)
  sentence = jnp.ones((2, 5))
  v = module.init({'params': jax.random.key(0), 'noise': jax.random.key(0)},
                  sentence)
  c1, mu, logvar = module.apply(v, sentence, rngs={'noise': jax.random.key(1)})
  c2, _, _ = module.apply(v, sentence, rngs={'noise': jax.random.key(2)})
  c0, _, _ = module.apply(v, sentence, jnp.zeros((2, 3)))
  np.testing.assert_allclose(c0, mu)  # eps = 0 gives the mean.
  assert not np.allclose(c1, c2)
  np.testing.assert_array_equal(v['params']['fc']['bias'], 0.0)  # Ref init.


# ---------------------------------------------------------------- sizes


def test_parameter_counts_cub_paper_config():
  kw = dict(ngf=32, z_dim=100, condition_dim=100, num_stages=3, base_size=64,
            num_res_blocks=2)
  inputs = _inputs(batch=2, steps=18, word_dim=256, sentence_dim=256, z_dim=100)

  def counts(glam):
    shapes_ = jax.eval_shape(
        lambda: _init(generator.Generator(glam=glam, **kw), inputs))['params']
    return _count(shapes_), {k: _count(v) for k, v in shapes_.items()}

  total, parts = counts('reference')
  assert parts['ca'] == 102_800  # 256 * 400 + 400.
  assert parts['stage0'] == 6_444_928
  assert parts['stage1'] == parts['stage2'] == 277_536
  assert parts['image0'] == parts['image1'] == parts['image2'] == 864  # 9*32*3.
  assert total == 7_105_392
  total, parts = counts('word_only')
  assert parts['stage1'] == parts['stage2'] == 267_136
  assert total == 7_084_592  # The AttnGAN G (reference spec §12).
  total, parts = counts('paper')
  # 'paper' stage, by hand (ngf 32, words 256, D' 100):
  #   U (1x1, no bias) 256*32 = 8,192; V (linear) 100*32 + 32 = 3,232;
  #   ResBlock(96): conv 9*96*192 = 165,888 + BN 384 + conv 9*96*96 = 82,944
  #   + BN 192 = 249,408, two of them = 498,816;
  #   upBlock(96 -> 32): conv 9*96*64 = 55,296 + BN 128 = 55,424.
  #   Sum 8,192 + 3,232 + 498,816 + 55,424 = 565,664. Versus 'reference': no
  #   1x1 conv before the softmax (-1,024), no 96->64 fusion conv (-6,144), but
  #   residual blocks and upBlock at 96 instead of 64 channels (+295,296).
  assert parts['stage1'] == parts['stage2'] == 565_664
  # G: 102,800 + 6,444,928 + 2 * 565,664 + 3 * 864 = 7,681,648.
  assert total == 7_681_648


def test_smoke_config_shapes_and_ranges():
  inputs = _inputs()
  for glam in generator.GLAM_VARIANTS:
    model = _smoke_generator(glam=glam)
    out = model.apply(_smoke_variables(glam), **inputs,
                      rngs={'noise': jax.random.key(2)})
    assert [x.shape for x in out['images']] == [(3, 16, 16, 3), (3, 32, 32, 3)]
    for image in out['images']:
      assert image.dtype == jnp.float32
      assert np.all(np.abs(np.asarray(image)) <= 1.0)
    assert [a.shape for a in out['attention']] == [(3, 16, 16, 5)]
    att = np.asarray(out['attention'][0])
    np.testing.assert_allclose(att.sum(-1), 1.0, atol=1e-5)
    assert np.all(att[1, ..., 2:] == 0) and np.all(att[2, ..., 3:] == 0)
    want_beta = [] if glam == 'word_only' else [(3, 16, 16, 4)]
    assert [b.shape for b in out['sentence_attention']] == want_beta
    assert out['mu'].shape == out['logvar'].shape == (3, 4)


def test_mask_and_lengths_are_equivalent():
  inputs = _inputs()
  model = _smoke_generator()
  variables = _smoke_variables('paper')
  eps = jnp.zeros((3, 4))
  by_len = model.apply(variables, **inputs, eps=eps)
  lengths = inputs.pop('lengths')
  mask = np.arange(5)[None, :] >= lengths[:, None]
  by_mask = model.apply(variables, **inputs, word_mask=mask, eps=eps)
  np.testing.assert_array_equal(by_len['images'][1], by_mask['images'][1])
  with pytest.raises(ValueError, match='exactly one'):
    model.apply(variables, **inputs, eps=eps)
  with pytest.raises(ValueError, match='z must be'):
    model.apply(variables, **{**inputs, 'z': np.zeros((3, 7))}, word_mask=mask,
                eps=eps)


def test_bfloat16_compute_runs():
  inputs = _inputs()
  model = _smoke_generator(dtype=jnp.bfloat16)
  shapes_ = jax.eval_shape(lambda: _init(model, inputs))
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(shapes_))
  out, _ = model.apply(_smoke_variables('paper'), **inputs, train=True,
                       mutable=['batch_stats'], rngs={'noise': jax.random.key(2)})
  for image in out['images']:
    assert image.dtype == jnp.float32 and np.all(np.isfinite(image))


@pytest.mark.parametrize('glam', ['paper', 'reference'])
def test_gradients_finite_and_nonzero_for_every_parameter(glam):
  inputs = _inputs()
  model = _smoke_generator(glam=glam)
  variables = _smoke_variables(glam)
  weights = [jax.random.normal(jax.random.key(i), (3, s, s, 3))
             for i, s in enumerate((16, 32))]

  def loss(params):
    out, _ = model.apply({**variables, 'params': params}, **inputs, train=True,
                         mutable=['batch_stats'], rngs={'noise': jax.random.key(3)})
    adv = sum(jnp.mean(w * x) for w, x in zip(weights, out['images']))
    return adv + jnp.mean(out['mu'] ** 2 + out['logvar'])

  # Eager on purpose: op-by-op compilations are shared by the tests of this
  # file, whereas each jitted gradient would compile a whole new program.
  grads = jax.grad(loss)(variables['params'])
  for path, g in jax.tree_util.tree_leaves_with_path(grads):
    g = np.asarray(g)
    assert np.all(np.isfinite(g)), path
    assert np.any(g != 0), path


def test_initialisation_follows_reference():
  params = _smoke_variables('reference')['params']
  bn_scale = params['stage0']['fc_bn']['scale']
  assert abs(float(bn_scale.mean()) - 1.0) < 0.01 and float(bn_scale.std()) < 0.05
  # Orthogonal kernels: the flattened [in, out] matrix has orthonormal columns
  # (out <= in) or rows (in < out).
  for kernel in (params['stage1']['upsample']['conv']['kernel'],
                 params['stage0']['fc']['kernel']):
    w = np.asarray(kernel).reshape(-1, kernel.shape[-1])
    gram = w.T @ w if w.shape[0] >= w.shape[1] else w @ w.T
    np.testing.assert_allclose(gram, np.eye(len(gram)), atol=1e-5)


def test_initial_stage_sizes():
  assert generator.num_initial_upsamples(64) == 4
  assert generator.num_initial_upsamples(16) == 2
  with pytest.raises(ValueError, match='base_size'):
    generator.num_initial_upsamples(48)


def test_initial_channels_set_stage0_width():
  """Widths by hand: 4x4 at C, halved per upBlock (>= ngf), the last at ngf."""
  z, c = jnp.zeros((2, 8)), jnp.zeros((2, 4))

  def widths(**kw):
    stage = generator.InitialStage(ngf=8, base_size=32, **kw)
    params = jax.eval_shape(stage.init, jax.random.key(0), c, z)['params']
    # fc: 12 inputs -> C * 16 * 2 (GLU); upBlock i: conv3x3 -> 2 * width (GLU).
    return ([params['fc']['kernel'].shape[-1] // 32]
            + [params[f'upsample{i}']['conv']['kernel'].shape[-1] // 2 for i in (1, 2, 3)])
  assert widths() == [64, 32, 16, 8]  # Reference rule: ngf * 2**3.
  assert widths(initial_channels=96) == [96, 48, 24, 8]
  assert widths(initial_channels=16) == [16, 8, 8, 8]
  with pytest.raises(ValueError, match='initial_channels'):
    generator.InitialStage(ngf=8, base_size=32, initial_channels=4).init(
        jax.random.key(0), c, z)


def test_normalize_sentence_makes_ca_invariant_to_sentence_scale():
  """Unit-rms sentence features: scaling the sentence leaves mu unchanged."""
  g = _smoke_generator(normalize_sentence=True)
  x = _inputs()
  variables = g.init({'params': jax.random.key(0), 'noise': jax.random.key(1)}, **x)
  eps = np.zeros((3, g.condition_dim), np.float32)
  mu = {scale: g.apply(variables, **dict(x, sentence=x['sentence'] * scale), eps=eps)['mu']
        for scale in (1.0, 0.01)}
  np.testing.assert_allclose(mu[0.01], mu[1.0], rtol=1e-4, atol=1e-6)
  plain = _smoke_generator(normalize_sentence=False)
  small = plain.apply(variables, **dict(x, sentence=x['sentence'] * 0.01), eps=eps)['mu']
  assert float(jnp.std(small)) < 0.1 * float(jnp.std(mu[1.0]))


def test_word_rms_rescales_each_word_vector_before_glam():
  """word_rms = r equals raw GLAM fed words scaled by hand to rms r, whatever their scale."""
  x = _inputs()
  scaled = _smoke_generator(word_rms=0.5)
  variables = scaled.init({'params': jax.random.key(0), 'noise': jax.random.key(1)}, **x)
  eps = np.zeros((3, scaled.condition_dim), np.float32)
  words = np.asarray(x['words'], np.float64)
  by_hand = words * 0.5 / np.sqrt(np.mean(words**2, axis=-1, keepdims=True))
  raw = _smoke_generator(word_rms=0.0).apply(
      variables, **dict(x, words=by_hand.astype(np.float32)), eps=eps)['images'][-1]
  for scale in (1.0, 0.1):
    got = scaled.apply(variables, **dict(x, words=x['words'] * scale), eps=eps)['images'][-1]
    np.testing.assert_allclose(got, raw, atol=1e-5)
  unscaled = _smoke_generator(word_rms=0.0).apply(variables, **dict(x, words=x['words'] * 0.1),
                                      eps=eps)['images'][-1]
  assert not np.allclose(unscaled, raw, atol=1e-3)


# ---------------------------------------------------------------- converter


def _reference_g_state_dict(ngf=4, nef=6, ncf=3, nz=5, res=1, stages=2):
  """Random arrays named and shaped as the authors' G_NET (MirrorGAN), by hand."""
  rng = np.random.default_rng(0)
  sd = {}

  def put(name, *shape):
    sd[name] = rng.normal(size=shape).astype(np.float32)

  def bn(name, n):
    for p in ('weight', 'bias', 'running_mean'):
      put(f'{name}.{p}', n)
    sd[f'{name}.running_var'] = np.ones(n, np.float32)
    sd[f'{name}.num_batches_tracked'] = np.array(7)

  put('ca_net.fc.weight', 4 * ncf, nef)
  put('ca_net.fc.bias', 4 * ncf)
  c16 = 16 * ngf
  put('h_net1.fc.0.weight', c16 * 32, ncf + nz)
  bn('h_net1.fc.1', c16 * 32)
  for i in range(1, 5):  # upBlock(c, c / 2): conv c -> 2 * (c / 2) = c.
    c = c16 // 2**(i - 1)
    put(f'h_net1.upsample{i}.1.weight', c, c, 3, 3)
    bn(f'h_net1.upsample{i}.2', c)
  for k in range(2, stages + 1):
    p = f'h_net{k}.'
    put(p + 'att.conv_context.weight', ngf, nef, 1, 1)
    put(p + 'att.conv_sentence_vis.weight', ngf, ngf, 1, 1)
    put(p + 'att.linear.weight', ngf, ncf)
    put(p + 'att.linear.bias', ngf)
    put(p + 'conv.weight', 2 * ngf, 3 * ngf, 1, 1)
    for j in range(res):
      put(f'{p}residual.{j}.block.0.weight', 4 * ngf, 2 * ngf, 3, 3)
      bn(f'{p}residual.{j}.block.1', 4 * ngf)
      put(f'{p}residual.{j}.block.3.weight', 2 * ngf, 2 * ngf, 3, 3)
      bn(f'{p}residual.{j}.block.4', 2 * ngf)
    put(p + 'upsample.1.weight', 2 * ngf, 2 * ngf, 3, 3)
    bn(p + 'upsample.2', 2 * ngf)
  for k in range(1, stages + 1):
    put(f'img_net{k}.img.0.weight', 3, ngf, 3, 3)
  return sd


def _reference_template(glam='reference'):
  model = generator.Generator(ngf=4, z_dim=5, condition_dim=3, num_stages=2,
                              base_size=64, num_res_blocks=1, glam=glam)
  inputs = _inputs(batch=2, steps=4, word_dim=6, sentence_dim=6, z_dim=5)
  return model, inputs, jax.eval_shape(lambda: _init(model, inputs))


def test_generator_converter_reference_layout():
  sd = _reference_g_state_dict()
  model, inputs, template = _reference_template()
  variables = gan.generator_from_torch(
      {f'module.{k}': v for k, v in sd.items()}, template=template)  # DataParallel.
  stage = variables['params']['stage1']
  np.testing.assert_array_equal(
      stage['fusion']['kernel'], sd['h_net2.conv.weight'].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(
      stage['sentence_attention']['conv_sentence_vis']['kernel'],
      sd['h_net2.att.conv_sentence_vis.weight'][:, :, 0, 0].T)
  np.testing.assert_array_equal(
      variables['batch_stats']['stage1']['residual0']['bn2']['mean'],
      sd['h_net2.residual.0.block.4.running_mean'])
  out = model.apply(variables, **inputs, eps=jnp.zeros((2, 3)))
  assert out['images'][1].shape == (2, 128, 128, 3)


def test_generator_converter_word_only_and_errors():
  sd = _reference_g_state_dict()
  mirrorgan_only = ('conv_sentence_vis', 'att.linear', 'h_net2.conv.')
  attngan = {k: v for k, v in sd.items()
             if not any(s in k for s in mirrorgan_only)}
  _, _, template = _reference_template('word_only')
  gan.generator_from_torch(attngan, glam='word_only', template=template)
  with pytest.raises(ValueError, match='conv_sentence_vis'):
    gan.generator_from_torch(sd, glam='word_only')  # MirrorGAN weights left over.
  with pytest.raises(KeyError, match='h_net2.att.linear.weight'):
    gan.generator_from_torch(attngan, glam='reference')
  with pytest.raises(ValueError, match='paper'):
    gan.generator_from_torch(sd, glam='paper')
  _, _, template = _reference_template()
  wrong = dict(sd, **{'img_net2.img.0.weight': np.zeros((3, 5, 3, 3), np.float32)})
  with pytest.raises(ValueError, 
                     match=r"\['image1'\]\['conv'\]\['kernel'\]: \(3, 3, 5, 3\) instead"):
    gan.generator_from_torch(wrong, template=template)
