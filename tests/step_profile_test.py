"""Tests of `benchmark.step_profile`: parts from op names, FLOPs by hand, a real run."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import shapes
from mirrorgan_jax.benchmark import step_profile


@pytest.mark.parametrize('op_name, part', [
    ('jit(_gan_step)/text_encoder/TextEncoder/forward_lstm/while/body/dot_general',
     'text encoder'),
    ('jit(_gan_step)/D_update/jvp(d64)/jvp(Discriminator.encode)/trunk_1/conv',
     'D64 update (fwd + bwd)'),
    ('jit(_gan_step)/D_update/transpose(jvp(d16))/trunk_0/conv', 'D16 update (fwd + bwd)'),
    ('jit(_gan_step)/G_update/d32/jvp(Discriminator.encode)/trunk_0/conv',
     'D32 in the G loss (fwd + bwd)'),
    ('jit(_gan_step)/G_update/transpose(jvp(STREAM))/Captioner/encoder/conv',
     'STREAM backward (to the image)'),
    ('jit(_gan_step)/G_update/jvp(STREAM)/Captioner/decoder/dot', 'STREAM forward'),
    ('jit(_gan_step)/G_forward/jvp(Generator)/stage2/up/conv', 'G stage 2 forward'),
    ('jit(_gan_step)/G_update/transpose(jvp(Generator))/stage0/fc', 'G stage 0 backward'),
    ('jit(_gan_step)/D_update/adam/mul', 'Adam (D and G)'),
    ('jit(_gan_step)/ema/add', 'EMA'),
    ('jit(_gan_step)/jit(_normal)/erf_inv', step_profile.OTHER),
])
def test_part_of(op_name, part):
  assert step_profile.part_of(op_name) == part


def test_instruction_flops_by_hand():
  shapes = {'x': [4, 10, 10, 3], 'w': [3, 3, 3, 16], 'a': [8, 32], 'b': [32, 5]}
  conv = ('f32[4,8,8,16]{3,2,1,0} convolution(%x, %w), window={size=3x3}, '
          'dim_labels=b01f_01io->b01f, metadata={op_name="c"}')
  assert step_profile.instruction_flops(conv, shapes) == 2 * (4 * 8 * 8 * 16) * 9 * 3
  dot = 'f32[8,5]{1,0} dot(%a, %b), lhs_contracting_dims={1}, rhs_contracting_dims={0}'
  assert step_profile.instruction_flops(dot, shapes) == 2 * 8 * 5 * 32
  assert step_profile.instruction_flops('f32[8,5]{1,0} add(%a, %b)', shapes) == 0


def test_parse_hlo_counts_a_compiled_conv_and_a_loop():
  def f(x, w, m):
    with jax.named_scope('G_forward'), jax.named_scope('Generator'):
      y = jax.lax.conv_general_dilated(x, w, (1, 1), 'VALID',
                                       dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    with jax.named_scope('text_encoder'):
      h = jax.lax.fori_loop(0, 7, lambda i, h: jnp.tanh(h @ m), jnp.ones((2, 16)))
    return y.sum() + h.sum()
  args = (np.ones((2, 9, 9, 4), np.float32), np.ones((3, 3, 4, 8), np.float32),
          np.ones((16, 16), np.float32))
  text = jax.jit(f).lower(*args).compile().as_text()
  _, flops = step_profile.parse_hlo(text)
  assert sum(flops.values()) == pytest.approx(2 * (2 * 7 * 7 * 8) * 9 * 4 + 7 * 2 * 2 * 16 * 16)
  assert flops['text encoder'] == pytest.approx(7 * 2 * 2 * 16 * 16)


def test_profile_of_the_smoke_step(capsys):
  report = step_profile.profile(shapes.get_config('smoke'), vocab_size=40, steps=1)
  parts = {r['part']: r for r in report['parts']}
  assert {'text encoder', 'STREAM forward', 'STREAM backward (to the image)',
          'D16 update (fwd + bwd)', 'D32 update (fwd + bwd)', 'G stage 0 forward',
          'G stage 1 backward', 'Adam (D and G)'} <= set(parts)
  assert sum(r['share'] for r in report['parts']) == pytest.approx(1.0)
  assert sum(r['seconds'] for r in report['parts']) == pytest.approx(report['median_step_s'])
  assert parts['D32 update (fwd + bwd)']['gflop'] > parts['D16 update (fwd + bwd)']['gflop']
  # Counted conv/dot FLOPs are most of XLA's own count of the program.
  assert 0.5 * report['cost_analysis_gflop'] < report['counted_gflop']
  print(step_profile.table(report))
  assert 'step (median)' in capsys.readouterr().out


def test_cli_needs_a_config(capsys):
  assert step_profile.main(['step_profile', '--steps=1']) == 2
  assert '--config is required' in capsys.readouterr().err
