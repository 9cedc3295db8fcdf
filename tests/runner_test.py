"""The shared training loop: resume, NaN guard, summaries, profiler traces."""

import signal
import subprocess
import sys

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from mirrorgan_jax import artifacts
from mirrorgan_jax.infra import checkpointing
from mirrorgan_jax.phases import runner
from tests import toy_phase
from tests.conftest import ROOT


def test_resume_equals_uninterrupted(tmp_path):
  full = runner.run(toy_phase.make_phase(7, checkpoint_every=3, log_every=2), tmp_path / 'a')
  runner.run(toy_phase.make_phase(4, checkpoint_every=3, log_every=2), tmp_path / 'b')
  resumed = runner.run(toy_phase.make_phase(7, checkpoint_every=3, log_every=2), tmp_path / 'b')
  np.testing.assert_array_equal(full['w'], resumed['w'])
  assert int(resumed['step']) == 7
  # Summaries were written for TensorBoard.
  assert list((tmp_path / 'a' / 'toy').glob('events.out.tfevents*'))


def test_nan_stops_and_keeps_last_good_checkpoint(tmp_path):
  with pytest.raises(runner.NonFiniteLossError, match='loss at step 5'):
    runner.run(toy_phase.make_phase(10, nan_at=5, checkpoint_every=2, log_every=100), tmp_path)
  ckpt = checkpointing.Checkpointer(tmp_path / 'toy' / 'checkpoints')
  state, _, step = ckpt.restore({'w': jnp.zeros((2,)), 'step': jnp.array(0)})
  assert step == 4 and np.all(np.isfinite(state['w']))


def test_next_step_is_queued_before_the_last_steps_metrics_are_read(tmp_path):
  """Step n's metrics are read after step n + 1 is dispatched, so reading them does
  not stall the host; at log steps and before saves they are read at once."""
  events = []

  class Recorded:  # A device scalar that records when the loop reads it.

    def __init__(self, step):
      self.step = step

    def __array__(self, dtype=None, copy=None):
      del copy
      events.append(f'read {self.step}')
      return np.asarray(1.0, dtype)

  def train_step(state, batch):
    del batch
    n = int(state['step']) + 1
    events.append(f'run {n}')
    return {'step': jnp.array(n)}, {'loss': Recorded(n)}

  runner.run(runner.Phase(
      name='toy', num_steps=7, init_state=lambda: {'step': jnp.array(0)},
      train_step=train_step, batches=lambda start: iter(int, 1), log_every=3,
      checkpoint_every=5), tmp_path)
  assert events == ['run 1', 'run 2', 'read 1', 'run 3', 'read 2', 'read 3',  # log
                    'run 4', 'run 5', 'read 4', 'read 5',  # save
                    'run 6', 'read 6',  # log
                    'run 7', 'read 7']  # the last step: log and save


def test_profiler_writes_a_trace(tmp_path):
  runner.run(toy_phase.make_phase(4, profile_steps=(2, 3)), tmp_path)
  assert list((tmp_path / 'toy' / 'profile').rglob('*.xplane.pb'))


def test_sigterm_saves_then_exits(tmp_path):
  """Preemption: SIGTERM mid-run saves the current step, and exits with 143."""
  proc = subprocess.Popen([sys.executable, '-m', 'tests.toy_phase', str(tmp_path), '1000'],
                          cwd=ROOT, stdout=subprocess.PIPE, text=True)
  for line in proc.stdout:
    if line.strip() == 'batch 5':
      proc.send_signal(signal.SIGTERM)
      break
  proc.stdout.read()
  assert proc.wait(timeout=120) == 143
  ckpt = checkpointing.Checkpointer(tmp_path / 'toy' / 'checkpoints')
  _, meta, step = ckpt.restore({'w': jnp.zeros((2,)), 'step': jnp.array(0)})
  assert step >= 5 and meta['step'] == step


class _CountingHook:
  """Records the steps it is called at; `last` is what `pretrain` returns."""

  def __init__(self):
    self.steps, self.last = [], None

  def __call__(self, state, step, writer):
    del writer
    self.steps.append(step)
    self.last = {'w0': float(state['w'][0])}

  def compute(self, state):
    return {'w0': float(state['w'][0])}, {}


_TOY = artifacts.Kind('toy', 'toy', ('toy',), {}, has_vocab=False)


def test_pretrain_evaluates_every_few_epochs_and_writes_the_artifact(tmp_path):
  toy = toy_phase.make_phase(7)
  config = ml_collections.ConfigDict({'train': {
      'log_every_steps': 100, 'checkpoint_every_steps': 100, 'keep_checkpoints': 1}})
  hook = _CountingHook()
  path, final = runner.pretrain(config, tmp_path, runner.Pretraining(
      kind=_TOY, num_steps=7, steps_per_epoch=2, eval_every_epochs=2,
      init_state=toy.init_state, train_step=toy.train_step, batches=toy.batches,
      hook=hook, parameters=lambda state: {'toy': {'w': state['w']}},
      artifact_variables=lambda state: {'toy': {'w': state['w']}},
      meta=lambda final: {'eval': final, 'note': 'toy'}))
  assert hook.steps == [4, 7]  # Epochs 2 and the last step (epoch 3.5).
  assert path == tmp_path / 'toy' / 'artifact'
  variables, vocab, meta = artifacts.read(path, _TOY)
  assert vocab is None
  # 7 steps of w <- w - 0.2 (w - i) on batches i = 0..6, from w = 0.
  w = 0.0
  for i in range(7):
    w -= 0.2 * (w - i)
  np.testing.assert_allclose(variables['toy']['w'], [w, w], rtol=1e-6)
  assert final == {'w0': pytest.approx(w, rel=1e-6)}
  assert meta == {'phase': 'toy', 'steps': 7, 'eval': final, 'note': 'toy'}
