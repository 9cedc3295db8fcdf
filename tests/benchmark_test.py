"""Tests of `python -m mirrorgan_jax.benchmark`: JSON contents, inputs, flag errors.

The CLI runs once, in-process, on `configs/shapes.py:smoke` (2 timed steps,
float32). Timings are never asserted, only that they are positive, finite and
consistent (images/s = batch / median s/step) and that the batch sizes are
the config's.
"""

import json
import math

import jax
import numpy as np
import pytest

from configs import shapes
from mirrorgan_jax.benchmark import __main__ as cli
from mirrorgan_jax.benchmark import train_speed
from tests.conftest import ROOT

SMOKE = str(ROOT / 'configs' / 'shapes.py') + ':smoke'
_MEASUREMENT_KEYS = {
    'name', 'dtype', 'batch_size', 'first_call_s', 'trace_lower_s', 'compile_s',
    'median_step_s', 'min_step_s', 'max_step_s', 'images_per_s', 'steps',
    'peak_host_mib', 'peak_device_mib', 'gflop_per_image', 'gflop_per_s', 'utilisation'}
_TOP_KEYS = {
    'config', 'config_overrides', 'backend', 'device_kind', 'device_count',
    'process_count', 'jax_version', 'python_version', 'cpu_model', 'cpu_cores',
    'load_average_1m', 'load_average_1m_end', 'xla_flags',
    'jax_disable_most_optimizations', 'steps', 'warmup', 'vocab_size', 'dtypes',
    'phases', 'parallel_mode', 'image_sizes', 'batch_sizes', 'peak_host_mib',
    'peak_device_mib', 'peak_flops', 'results'}


@pytest.fixture(scope='module')
def smoke_report(tmp_path_factory):
  out = tmp_path_factory.mktemp('bench') / 'smoke.json'
  code = cli.main(['benchmark', f'--config={SMOKE}', '--steps=2', '--warmup=0',
                   '--dtypes=float32', '--sample_batch_sizes=1,4', f'--out={out}'])
  assert code == 0
  return json.loads(out.read_text())


def _positive_finite(value) -> bool:
  return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_report_has_every_key_and_row(smoke_report):
  assert set(smoke_report) == _TOP_KEYS
  rows = smoke_report['results']
  assert [(r['name'], r['batch_size']) for r in rows] == [
      ('gan_step', 8), ('damsm_step', 8), ('stream_step', 8), ('sampling', 1),
      ('sampling', 4)]  # Smoke config: train / damsm / stream batch 8.
  for row in rows:
    assert set(row) == _MEASUREMENT_KEYS
    assert row['dtype'] == 'float32' and row['steps'] == 2
    for key in ('first_call_s', 'compile_s', 'trace_lower_s', 'median_step_s',
                'min_step_s', 'max_step_s', 'images_per_s', 'peak_host_mib'):
      assert _positive_finite(row[key]), (row['name'], key, row[key])
    assert row['min_step_s'] <= row['median_step_s'] <= row['max_step_s']
    assert row['images_per_s'] == pytest.approx(row['batch_size'] / row['median_step_s'])
    # The first call compiles: it takes longer than XLA's compile time alone.
    assert row['first_call_s'] > row['compile_s']
    assert row['peak_device_mib'] == 'n/a'  # CPU reports no device memory.
    assert _positive_finite(row['gflop_per_image']), row['name']
    assert row['gflop_per_s'] == pytest.approx(
        row['gflop_per_image'] * row['batch_size'] / row['median_step_s'])
    peak = smoke_report['peak_flops']['float32'][0]
    assert peak is None or row['utilisation'] == pytest.approx(row['gflop_per_s'] * 1e9 / peak)
  # FLOPs scale with the batch: sampling costs about the same per image at 1 and
  # 4 (weight-only work, e.g. the text encoder's input projections, is per call).
  assert rows[3]['gflop_per_image'] == pytest.approx(rows[4]['gflop_per_image'], rel=0.05)
  # A train step (forward, backward, update) costs more than G's forward alone.
  assert rows[0]['gflop_per_image'] > 2 * rows[4]['gflop_per_image']


def test_report_describes_the_run(smoke_report):
  r = smoke_report
  assert r['config'] == SMOKE
  assert r['device_count'] == jax.device_count() and r['backend'] == 'cpu'
  assert r['jax_version'] == jax.__version__
  assert r['batch_sizes'] == {'gan': 8, 'damsm': 8, 'stream': 8, 'sampling': [1, 4]}
  assert r['image_sizes'] == [16, 32]
  assert r['vocab_size'] == cli.DEFAULT_VOCAB_SIZES['captioned_shapes']
  assert r['dtypes'] == ['float32'] and r['steps'] == 2
  assert _positive_finite(r['peak_host_mib']) and _positive_finite(r['cpu_cores'])
  assert r['peak_host_mib'] >= max(row['peak_host_mib'] for row in r['results'])


def test_synthetic_batch_matches_pipeline_layout():
  config = shapes.get_config('smoke')
  batch = train_speed.synthetic_batch(config, 5, vocab_size=7, seed=3)
  t = config.data.words_num
  assert set(batch) == {'image_16', 'image_32', 'caption_ids', 'caption_len',
                        'mismatch_ids', 'mismatch_len', 'class_id'}
  for size in (16, 32):
    image = batch[f'image_{size}']
    assert image.shape == (5, size, size, 3) and image.dtype == np.float32
    assert image.min() >= -1 and image.max() <= 1 and image.std() > 0.4  # U(-1,1): 0.577.
  ids, lengths = batch['caption_ids'], batch['caption_len']
  assert ids.shape == (5, t) and ids.dtype == lengths.dtype == np.int32
  assert np.all((lengths >= 1) & (lengths <= t))
  for row, n in zip(ids, lengths):
    assert np.all((row[:n] >= 1) & (row[:n] < 7)) and not row[n:].any()
  np.testing.assert_array_equal(batch['mismatch_ids'][1], ids[0])
  np.testing.assert_array_equal(batch['class_id'], np.arange(5))


def test_compile_clock_sees_compiles_only():
  f = jax.jit(lambda x: jax.numpy.tanh(x) * 3.0 + 1.0)
  x = np.ones((7, 5), np.float32)
  with train_speed.CompileClock() as first:
    jax.block_until_ready(f(x))
  with train_speed.CompileClock() as cached:
    jax.block_until_ready(f(x))
  assert first.compile_s > 0 and first.trace_lower_s > 0
  assert cached.compile_s == 0 and cached.trace_lower_s == 0


def test_program_flops_of_a_matmul_by_hand():
  lowered = jax.jit(lambda a, b: a @ b).lower(np.ones((4, 8), np.float32),
                                              np.ones((8, 16), np.float32))
  assert train_speed.program_flops(lowered) == 2 * 4 * 8 * 16
  assert train_speed.program_flops(lowered, copies=3) == 3 * 2 * 4 * 8 * 16


def test_table_and_config_name():
  row = train_speed.Measurement('gan_step', 'bfloat16', 32, 12.5, 1.0, 10.0, 0.25, 0.2,
                                0.3, 128.0, 10, 2048.0, 'n/a')
  lines = cli.table([row]).splitlines()
  assert lines[0].split()[:3] == ['measurement', 'dtype', 'batch']
  assert lines[2].split() == ['gan_step', 'bfloat16', '32', '12.50', '10.00', '0.2500',
                              '128.00', 'n/a', 'n/a', 'n/a', '2,048.00', 'n/a']
  assert cli.config_name('configs/shapes.py:smoke') == 'shapes_smoke'
  assert cli.config_name('configs/cub.py') == 'cub'


@pytest.mark.parametrize('args, message', [
    ([f'--config={SMOKE}', '--dtypes=float16'], '--dtypes'),
    ([f'--config={SMOKE}', '--phases=gan,dance'], '--phases'),
    ([f'--config={SMOKE}', '--steps=0'], 'steps'),
    ([f'--config={SMOKE}', '--sample_batch_sizes=1,0'], '--sample_batch_sizes'),
    ([f'--config={SMOKE}', '--config.train.batch_sizes=3'], 'batch_sizes'),
    ([f'--config={SMOKE}', '--config.train.batch_size=0'], 'train.batch_size'),
    (['--steps=2'], '--config is required'),
    ([f'--config={ROOT}/configs/missing.py'], 'missing.py'),
])
def test_bad_flags_give_clear_errors(capsys, tmp_path, args, message):
  out = tmp_path / 'never.json'
  assert cli.main(['benchmark', *args, f'--out={out}']) == 2
  assert message in capsys.readouterr().err
  assert not out.exists()


def test_batch_must_split_over_devices():
  config = shapes.get_config('smoke')  # Batches of 8.
  train_speed.check_batch_sizes(config, ('gan', 'damsm', 'stream'), 4)
  with pytest.raises(ValueError, match='damsm.batch_size = 8 .* 3 device'):
    train_speed.check_batch_sizes(config, ('damsm',), 3)
  train_speed.check_batch_sizes(config, ('sampling',), 3)  # Sampling runs on one device.
