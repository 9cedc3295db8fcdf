"""Tests of `python -m mirrorgan_jax.pretrained` (checkpoint -> artifact), in-process.

State dicts are written as .npz with PyTorch names and shapes taken from the
PyTorch layout rules (nn.Embedding [V, E], nn.LSTM weight_ih_l0 [4H, in],
Conv2d [out, in, kh, kw], Linear [out, in]) and from the independent torchvision
tables of tests/inception_test.py and tests/resnet_test.py. The big backbones
are zeros except for a few entries filled with random numbers, which are
checked after the round trip through the artifact. Torch is not needed; one
.pth round trip runs when torch happens to be importable.
"""

import importlib.util
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import cub
from mirrorgan_jax import artifacts
from mirrorgan_jax import vocab as vocab_lib
from mirrorgan_jax.models import factory
from mirrorgan_jax.pretrained import __main__ as pretrained_cli
from mirrorgan_jax.pretrained import converters
from tests.inception_test import torchvision_inception_shapes
from tests.resnet_test import torchvision_resnet_shapes

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / 'configs' / 'cub.py') + ':smoke'
WORDS = ['<end>', 'this', 'bird', 'has', 'a', 'red', 'crown', 'and', 'white',
         'belly', 'small', 'beak']
V, E, H = len(WORDS), 16, 8  # Smoke text encoder: embedding 16, 8 units / direction.
D = 2 * H  # DAMSM feature size.
F, CE, CH = 16, 16, 16  # Smoke captioner: feature, embedding, LSTM sizes.
DAMSM_FLAGS = ['--config.model.image_encoder.backbone=inception_v3',
               '--config.model.image_encoder.input_size=299']
STREAM_FLAGS = ['--config.model.captioner.backbone=resnet152']
HAS_TORCH = importlib.util.find_spec('torch') is not None


def _config(*overrides):
  c = cub.get_config('smoke')
  for flag in overrides:
    key, value = flag.removeprefix('--config.').split('=')
    *path, last = key.split('.')
    section = c
    for p in path:
      section = section[p]
    section[last] = type(section[last])(value)
  return c


def _lstm(prefix, inputs, hidden, rng, suffix=''):
  """nn.LSTM(inputs, hidden) entries: weights [4H, in] / [4H, H], biases [4H]."""
  return {f'{prefix}.weight_ih_l0{suffix}': rng.normal(size=(4 * hidden, inputs)),
          f'{prefix}.weight_hh_l0{suffix}': rng.normal(size=(4 * hidden, hidden)),
          f'{prefix}.bias_ih_l0{suffix}': rng.normal(size=(4 * hidden,)),
          f'{prefix}.bias_hh_l0{suffix}': rng.normal(size=(4 * hidden,))}


def _f32(sd):
  return {k: np.asarray(v, np.float32) for k, v in sd.items()}


def text_encoder_sd(vocab_size=V, seed=0):
  """AttnGAN RNN_ENCODER: encoder (Embedding) + bidirectional rnn (LSTM)."""
  rng = np.random.default_rng(seed)
  sd = {'encoder.weight': rng.normal(size=(vocab_size, E))}
  sd.update(_lstm('rnn', E, H, rng))
  sd.update(_lstm('rnn', E, H, rng, '_reverse'))
  return _f32(sd)


def _zeros_except(shapes, random_names, seed):
  rng = np.random.default_rng(seed)
  return {k: (rng.normal(size=s) if k in random_names else np.zeros(s)).astype(np.float32)
          for k, s in shapes.items()}


INCEPTION_CHECKED = ('Conv2d_1a_3x3.conv.weight', 'Mixed_7c.branch_pool.bn.running_mean',
                     'Mixed_6e.branch7x7_2.conv.weight', 'fc.weight')


@pytest.fixture(scope='module')
def inception_sd():
  """torchvision Inception-v3 with a 1008-class fc (pytorch-fid), AuxLogits included."""
  shapes = torchvision_inception_shapes(fc=False, aux=True)
  shapes.update({'fc.weight': (1008, 2048), 'fc.bias': (1008,)})
  return _zeros_except(shapes, INCEPTION_CHECKED, seed=1)


def image_encoder_sd(inception):
  """AttnGAN CNN_ENCODER: Inception layers (no fc, no AuxLogits) + the two heads."""
  sd = {k: v for k, v in inception.items()
        if not k.startswith(('fc.', 'AuxLogits.'))}
  rng = np.random.default_rng(2)
  sd.update(_f32({'emb_features.weight': rng.normal(size=(D, 768, 1, 1)),
                  'emb_cnn_code.weight': rng.normal(size=(D, 2048)),
                  'emb_cnn_code.bias': rng.normal(size=(D,))}))
  return sd


def _caption_cnn_name(name):
  """torchvision name -> CAPTION_CNN's Sequential index (conv1 0, bn1 1, layerK K+3)."""
  head, rest = name.split('.', 1)
  fixed = {'conv1': 0, 'bn1': 1}
  index = fixed[head] if head in fixed else int(head[len('layer'):]) + 3
  return f'resnet.{index}.{rest}'


def captioner_sds():
  """(CAPTION_CNN on ResNet-152, CAPTION_RNN) state dicts."""
  shapes = {_caption_cnn_name(k): s
            for k, s in torchvision_resnet_shapes((3, 8, 36, 3)).items()}
  encoder = _zeros_except(shapes, ('resnet.0.weight', 'resnet.6.35.conv3.weight'), 3)
  rng = np.random.default_rng(4)
  encoder.update(_f32({
      'linear.weight': rng.normal(size=(F, 2048)), 'linear.bias': rng.normal(size=F),
      'bn.weight': rng.normal(size=F), 'bn.bias': rng.normal(size=F),
      'bn.running_mean': rng.normal(size=F), 'bn.running_var': rng.uniform(1, 2, F)}))
  decoder = {'embed.weight': rng.normal(size=(V, CE)),
             'linear.weight': rng.normal(size=(V, CH)), 'linear.bias': rng.normal(size=V)}
  decoder.update(_lstm('lstm', CE, CH, rng))
  return encoder, _f32(decoder)


def _npz(path, sd):
  np.savez(path, **sd)
  return str(path)


def _run(*args):
  return pretrained_cli.main(['pretrained', *map(str, args)])


@pytest.fixture(scope='module')
def files(tmp_path_factory, inception_sd):
  """Vocabularies and .npz checkpoints on disk."""
  d = tmp_path_factory.mktemp('checkpoints')
  (d / 'vocab.txt').write_text('\n'.join(WORDS) + '\n')
  vocab_lib.Vocabulary(WORDS).save(d / 'vocab.json')
  encoder, decoder = captioner_sds()
  text, image = text_encoder_sd(), image_encoder_sd(inception_sd)
  return {'vocab_txt': str(d / 'vocab.txt'), 'vocab_json': str(d / 'vocab.json'),
          'text': text, 'image': image,
          'text_npz': _npz(d / 'text_encoder200.npz', text),
          'image_npz': _npz(d / 'image_encoder200.npz', image),
          'encoder': encoder, 'decoder': decoder,
          'encoder_npz': _npz(d / 'cnn_encoder.npz', encoder),
          'decoder_npz': _npz(d / 'rnn_decoder.npz', decoder),
          'inception_npz': _npz(d / 'pt_inception.npz', inception_sd)}


def _stream_args(files, out, vocab=None, extra=STREAM_FLAGS):
  return ['stream', '--encoder', files['encoder_npz'], '--decoder', files['decoder_npz'],
          '--vocab', vocab or files['vocab_txt'], '--config', CONFIG, *extra, '--out', out]


def _damsm_args(files, out, text=None, vocab=None, extra=DAMSM_FLAGS):
  return ['damsm', '--text-encoder', text or files['text_npz'],
          '--image-encoder', files['image_npz'], '--vocab', vocab or files['vocab_txt'],
          '--config', CONFIG, *extra, '--out', out]


@pytest.fixture(scope='module')
def damsm_artifact(files, tmp_path_factory):
  out = tmp_path_factory.mktemp('damsm') / 'artifact'
  assert _run(*_damsm_args(files, out)) == 0
  return artifacts.read(out, artifacts.DAMSM)


def test_damsm_text_encoder(files, damsm_artifact):
  variables, _, _ = damsm_artifact
  sd, params = files['text'], variables['text_encoder']['params']
  np.testing.assert_array_equal(params['embedding']['embedding'], sd['encoder.weight'])
  assert params['forward_lstm']['w_ih'].shape == (E, 4 * H)  # Linear layout: [in, out].
  np.testing.assert_array_equal(params['forward_lstm']['w_ih'], sd['rnn.weight_ih_l0'].T)
  np.testing.assert_array_equal(params['backward_lstm']['w_hh'],
                                sd['rnn.weight_hh_l0_reverse'].T)
  np.testing.assert_array_equal(params['backward_lstm']['b_ih'],
                                sd['rnn.bias_ih_l0_reverse'])


def test_damsm_image_encoder(files, damsm_artifact):
  variables, _, _ = damsm_artifact
  sd, image = files['image'], variables['image_encoder']
  conv = image['params']['backbone']['Conv2d_1a_3x3']['conv']['kernel']
  assert conv.shape == (3, 3, 3, 32)  # [out, in, kh, kw] -> [kh, kw, in, out].
  np.testing.assert_array_equal(conv[1, 2, 0, 5],
                                sd['Conv2d_1a_3x3.conv.weight'][5, 0, 1, 2])
  row = image['params']['backbone']['Mixed_6e']['branch7x7_2']['conv']['kernel']
  assert row.shape == (1, 7, 192, 192)  # Mixed_6e: c7 = 192, a 1x7 conv.
  np.testing.assert_array_equal(
      row[0, 6, 3, 7], sd['Mixed_6e.branch7x7_2.conv.weight'][7, 3, 0, 6])
  np.testing.assert_array_equal(
      image['batch_stats']['backbone']['Mixed_7c']['branch_pool']['bn']['mean'],
      sd['Mixed_7c.branch_pool.bn.running_mean'])
  np.testing.assert_array_equal(image['params']['emb_cnn_code']['kernel'],
                                sd['emb_cnn_code.weight'].T)
  np.testing.assert_array_equal(image['params']['emb_features']['kernel'][0, 0],
                                sd['emb_features.weight'][:, :, 0, 0].T)


def test_damsm_fits_models_vocab_and_meta(damsm_artifact):
  variables, vocab, meta = damsm_artifact
  assert set(variables) == {'text_encoder', 'image_encoder'}
  config = _config(*DAMSM_FLAGS)
  models = factory.create_models(config, V)
  key, tokens = jax.random.key(0), jnp.ones((1, 3), jnp.int32)
  lengths = jnp.ones(1, jnp.int32)
  artifacts.check_tree(variables['text_encoder'], jax.eval_shape(
      models.text_encoder.init, key, tokens, lengths), 'text encoder')
  artifacts.check_tree(variables['image_encoder'], jax.eval_shape(
      models.image_encoder.init, key, jnp.zeros((1, 299, 299, 3))), 'image encoder')
  assert vocab == vocab_lib.Vocabulary(WORDS)
  model = json.loads(json.dumps({'text_encoder': config.model.text_encoder.to_dict(),
                                 'image_encoder': config.model.image_encoder.to_dict()}))
  assert meta['model'] == model
  assert model['image_encoder']['backbone'] == 'inception_v3'
  assert (meta['phase'], meta['source'], meta['vocab_size']) == ('damsm', 'converted', V)


def test_stream_artifact(files, tmp_path):
  out = tmp_path / 'stream'
  assert _run(*_stream_args(files, out, vocab=files['vocab_json'])) == 0
  variables, vocab, meta = artifacts.read(out, artifacts.STREAM)
  enc, dec = files['encoder'], files['decoder']
  params = variables['captioner']['params']
  stats = variables['captioner']['batch_stats']
  assert params['decoder']['linear']['kernel'].shape == (CH, V)
  np.testing.assert_array_equal(params['decoder']['linear']['kernel'],
                                dec['linear.weight'].T)
  np.testing.assert_array_equal(params['decoder']['lstm']['w_hh'],
                                dec['lstm.weight_hh_l0'].T)
  np.testing.assert_array_equal(params['decoder']['embed']['embedding'],
                                dec['embed.weight'])
  backbone = params['encoder']['backbone']
  np.testing.assert_array_equal(backbone['conv1']['kernel'],
                                enc['resnet.0.weight'].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(backbone['layer3_35']['conv3']['kernel'][0, 0],
                                enc['resnet.6.35.conv3.weight'][:, :, 0, 0].T)
  np.testing.assert_array_equal(stats['encoder']['bn']['var'], enc['bn.running_var'])
  np.testing.assert_array_equal(params['encoder']['linear']['bias'], enc['linear.bias'])
  assert vocab == vocab_lib.Vocabulary(WORDS)
  config = _config(*STREAM_FLAGS)
  model = {'captioner': config.model.captioner.to_dict()}
  assert meta['model'] == json.loads(json.dumps(model))
  assert (meta['phase'], meta['source'], meta['vocab_size']) == ('stream', 'converted', V)
  models = factory.create_models(config, V)
  artifacts.check_tree(variables['captioner'], jax.eval_shape(
      models.captioner.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)),
      jnp.ones((1, 2), jnp.int32), jnp.ones(1, jnp.int32)), 'captioner')


def test_inception(files, inception_sd, tmp_path):
  assert _run('inception', '--weights', files['inception_npz'], '--out', tmp_path) == 0
  variables, _, meta = artifacts.read(tmp_path, artifacts.INCEPTION)
  assert meta['num_classes'] == 1008 and meta['variant'] == 'pytorch_fid'
  np.testing.assert_array_equal(variables['params']['fc']['kernel'],
                                inception_sd['fc.weight'].T)
  conv = inception_sd['Conv2d_1a_3x3.conv.weight']
  np.testing.assert_array_equal(variables['params']['Conv2d_1a_3x3']['conv']['kernel'],
                                conv.transpose(2, 3, 1, 0))
  assert 'AuxLogits' not in variables['params']


def test_wrong_vocabulary_size(files, tmp_path, capsys):
  (tmp_path / 'short.txt').write_text('\n'.join(WORDS[:-1]))
  assert _run(*_damsm_args(files, tmp_path / 'out', vocab=tmp_path / 'short.txt')) == 1
  err = capsys.readouterr().err
  assert f'{V - 1} words' in err and f'{V} rows' in err and '5,450' in err
  assert not (tmp_path / 'out').exists()


def test_missing_files(files, tmp_path, capsys):
  missing = tmp_path / 'text_encoder200.pth'
  assert _run(*_damsm_args(files, tmp_path / 'out', text=missing)) == 1
  assert f'text encoder checkpoint not found: {missing}' in capsys.readouterr().err
  assert _run(*_damsm_args(files, tmp_path / 'out', vocab=tmp_path / 'v.json')) == 1
  assert 'vocabulary not found' in capsys.readouterr().err
  assert _run('inception', '--weights', tmp_path / 'w.npz', '--out', tmp_path) == 1
  assert 'Inception-v3 weights not found' in capsys.readouterr().err
  bogus = ['--config.model.bogus=1']
  assert _run(*_damsm_args(files, tmp_path / 'out', extra=bogus)) == 1
  assert 'bad config override' in capsys.readouterr().err
  with pytest.raises(FileNotFoundError, match='not a complete Inception-v3 artifact'):
    artifacts.read(tmp_path, artifacts.INCEPTION)


def test_config_mismatches_name_the_override(files, tmp_path, capsys):
  assert _run(*_damsm_args(files, tmp_path, extra=[])) == 1  # Smoke: small_cnn.
  assert '--config.model.image_encoder.backbone=inception_v3' in capsys.readouterr().err
  extra = [*DAMSM_FLAGS, '--config.model.text_encoder.hidden_size=4']
  assert _run(*_damsm_args(files, tmp_path, extra=extra)) == 1
  assert f'--config.model.text_encoder.hidden_size={H}' in capsys.readouterr().err
  extra = [*STREAM_FLAGS, '--config.model.captioner.embed_dim=8']
  assert _run(*_stream_args(files, tmp_path, extra=extra)) == 1
  assert f'--config.model.captioner.embed_dim={CE}' in capsys.readouterr().err


def test_shape_mismatch_is_reported(files, tmp_path, capsys):
  sd = text_encoder_sd()
  sd['rnn.weight_ih_l0'] = np.zeros((4 * H, E + 2), np.float32)  # LSTM input != E.
  text = _npz(tmp_path / 'bad.npz', sd)
  assert _run(*_damsm_args(files, tmp_path / 'out', text=text)) == 1
  err = capsys.readouterr().err
  assert 'the converted text encoder does not fit the model' in err
  assert (f"['params']['forward_lstm']['w_ih']: ({E + 2}, {4 * H}) instead of "
          f'({E}, {4 * H})') in err


def test_vocabulary_files(tmp_path):
  (tmp_path / 'words.txt').write_text('\n'.join(WORDS))
  assert converters.load_vocabulary(tmp_path / 'words.txt') == vocab_lib.Vocabulary(WORDS)
  (tmp_path / 'bad.txt').write_text('\n'.join(WORDS[1:]))
  with pytest.raises(ValueError, match="line 1 must be '<end>'"):
    converters.load_vocabulary(tmp_path / 'bad.txt')
  (tmp_path / 'gap.txt').write_text('<end>\nbird\n\nwing\n')
  with pytest.raises(ValueError, match='line 3 is empty'):
    converters.load_vocabulary(tmp_path / 'gap.txt')


def test_state_dict_npz_and_data_parallel_prefix(tmp_path):
  sd = text_encoder_sd()
  path = _npz(tmp_path / 'dp.npz', {f'module.{k}': v for k, v in sd.items()})
  got = converters.load_state_dict(path)
  assert got.keys() == sd.keys()
  np.testing.assert_array_equal(got['encoder.weight'], sd['encoder.weight'])


@pytest.mark.skipif(HAS_TORCH, reason='torch is installed: no missing-torch error')
def test_pth_without_torch_says_how_to_install(tmp_path, capsys):
  (tmp_path / 'text_encoder200.pth').write_bytes(b'not read')
  with pytest.raises(ImportError, match='pip install torch'):
    converters.load_state_dict(tmp_path / 'text_encoder200.pth')


@pytest.mark.skipif(not HAS_TORCH, reason='torch not installed (optional, conversion only)')
def test_pth_round_trip(files, tmp_path):
  import torch  # pylint: disable=g-import-not-at-top
  sd = {f'module.{k}': torch.from_numpy(v) for k, v in files['text'].items()}
  torch.save(sd, tmp_path / 'text_encoder200.pth')
  got = converters.load_state_dict(tmp_path / 'text_encoder200.pth')
  assert got.keys() == files['text'].keys()
  np.testing.assert_array_equal(got['rnn.weight_hh_l0'],
                                files['text']['rnn.weight_hh_l0'])
  out = tmp_path / 'out'
  assert _run(*_damsm_args(files, out, text=tmp_path / 'text_encoder200.pth')) == 0
  variables, _, _ = artifacts.read(out, artifacts.DAMSM)
  np.testing.assert_array_equal(
      variables['text_encoder']['params']['forward_lstm']['w_hh'],
      files['text']['rnn.weight_hh_l0'].T)
