"""Tests of runtime_env: the environment main, sample and benchmark set before JAX starts."""

import os
import subprocess
import sys

from mirrorgan_jax.infra import runtime_env

# Compiles the weight gradient of a small 3x3 convolution (the kind YNNPACK ran
# slowly in the GAN step); prints whether XLA:CPU made a YNNPACK fusion of it and
# whether JAX's persistent compilation cache is on.
_PROBE = r'''
from mirrorgan_jax.infra import runtime_env
runtime_env.set_defaults()
import jax, jax.numpy as jnp
import jax._src.compilation_cache as cc
def loss(w, x):
  y = jax.lax.conv_general_dilated(x, w, (1, 1), 'SAME',
                                   dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  return jnp.sum(y * y)
x = jnp.ones((8, 16, 16, 24)); w = jnp.ones((3, 3, 24, 48))
text = jax.jit(jax.grad(loss)).lower(w, x).compile().as_text()
print('YNN' if '__ynn_fusion' in text else 'NO-YNN')
print('cached' if cc.is_initialized() else 'off')
'''


_RUNTIME_KEYS = ('XLA_FLAGS', 'JAX_DISABLE_MOST_OPTIMIZATIONS', 'JAX_COMPILATION_CACHE_DIR',
                 'JAX_COMPILATION_CACHE_MAX_SIZE', 'MIRRORGAN_XLA_DEFAULTS')


def test_sets_defaults_in_an_empty_environment():
  env = {'XDG_CACHE_HOME': '/cache'}
  runtime_env.set_defaults(env)
  assert env == {'XDG_CACHE_HOME': '/cache', 'TF_CPP_MIN_LOG_LEVEL': '2',
                 'OPENBLAS_NUM_THREADS': '1',
                 'JAX_COMPILATION_CACHE_DIR': '/cache/mirrorgan_jax/xla',
                 'JAX_COMPILATION_CACHE_MAX_SIZE': str(2 * 2**30),
                 'XLA_FLAGS': '--xla_cpu_experimental_ynn_fusion_type='}


def test_keeps_the_users_flags_and_values():
  env = {'XLA_FLAGS': '--xla_force_host_platform_device_count=8',
         'TF_CPP_MIN_LOG_LEVEL': '0', 'JAX_COMPILATION_CACHE_DIR': '',
         'OPENBLAS_NUM_THREADS': '2'}
  runtime_env.set_defaults(env)
  assert env['JAX_COMPILATION_CACHE_DIR'] == ''  # Turned off by the user.
  assert env['XLA_FLAGS'].split() == ['--xla_force_host_platform_device_count=8',
                                      '--xla_cpu_experimental_ynn_fusion_type=']
  assert env['TF_CPP_MIN_LOG_LEVEL'] == '0'
  assert env['OPENBLAS_NUM_THREADS'] == '2'
  own = {'XLA_FLAGS': '--xla_cpu_experimental_ynn_fusion_type=individual_dot'}
  runtime_env.set_defaults(own)
  assert own['XLA_FLAGS'] == '--xla_cpu_experimental_ynn_fusion_type=individual_dot'


def test_opt_out_leaves_xla_flags_alone():
  env = {'MIRRORGAN_XLA_DEFAULTS': '0', 'XLA_FLAGS': '--xla_dump_to=/tmp/x'}
  runtime_env.set_defaults(env)
  assert env['XLA_FLAGS'] == '--xla_dump_to=/tmp/x'


def _run(script: str, **extra_env) -> str:
  """stdout of `script` in a fresh interpreter with the optimising XLA pipeline."""
  # Without what this test process inherited or had set by an in-process CLI test.
  env = {k: v for k, v in os.environ.items() if k not in _RUNTIME_KEYS}
  env.update(extra_env)
  out = subprocess.run([sys.executable, '-c', script], env=env, capture_output=True,
                       text=True, timeout=120, check=True)
  return out.stdout


def _probe(**extra_env) -> tuple[str, str]:
  """(YNN or NO-YNN, cached or off) printed by the probe."""
  ynn, cache = _run(_PROBE, **extra_env).split()[-2:]
  return (ynn, cache)


def test_the_flag_takes_ynnpack_off_convolutions():
  """With the defaults XLA:CPU emits no YNNPACK fusion; XLA's own default does."""
  assert _probe()[0] == 'NO-YNN'
  assert _probe(MIRRORGAN_XLA_DEFAULTS='0')[0] == 'YNN'


def test_a_second_process_loads_its_programs_from_the_cache(tmp_path):
  """The first run writes the compiled probe to the cache; the second reads it."""
  env = {'XDG_CACHE_HOME': str(tmp_path),
         'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS': '0'}
  cache = tmp_path / 'mirrorgan_jax' / 'xla'

  def programs():  # Compiled programs (the '-atime' files only track use).
    return {p.name: p.stat().st_mtime_ns for p in cache.glob('*-cache')}
  _probe(**env)
  first = programs()
  assert any(name.startswith('jit_loss') for name in first)
  assert _probe(**env)[1] == 'cached'
  assert programs() == first  # Nothing compiled and written again.
