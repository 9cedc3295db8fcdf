"""The shared training loop: resume, NaN guard, summaries, profiler traces."""

import signal
import subprocess
import sys

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from mirrorgan_jax import checkpointing
from mirrorgan_jax import training_loop
from tests import toy_phase
from tests.conftest import ROOT


def test_resume_equals_uninterrupted(tmp_path):
  full = training_loop.run(toy_phase.make_phase(7, checkpoint_every=3, log_every=2), tmp_path / 'a')
  training_loop.run(toy_phase.make_phase(4, checkpoint_every=3, log_every=2), tmp_path / 'b')
  resumed = training_loop.run(toy_phase.make_phase(7, checkpoint_every=3, log_every=2), tmp_path / 'b')
  np.testing.assert_array_equal(full['w'], resumed['w'])
  assert int(resumed['step']) == 7
  # Summaries were written for TensorBoard.
  assert list((tmp_path / 'a' / 'toy').glob('events.out.tfevents*'))


def test_nan_stops_and_keeps_last_good_checkpoint(tmp_path):
  with pytest.raises(training_loop.NonFiniteLossError, match='loss at step 5'):
    training_loop.run(toy_phase.make_phase(10, nan_at=5, checkpoint_every=2, log_every=100), tmp_path)
  ckpt = checkpointing.Checkpointer(tmp_path / 'toy' / 'checkpoints')
  state, _, step = ckpt.restore({'w': jnp.zeros((2,)), 'step': jnp.array(0)})
  assert step == 4 and np.all(np.isfinite(state['w']))


def test_profiler_writes_a_trace(tmp_path):
  training_loop.run(toy_phase.make_phase(4, profile_steps=(2, 3)), tmp_path)
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


class _CountingEvaluator:
  """Records the steps it is called at; `last` is what run_pretraining returns."""

  def __init__(self):
    self.steps, self.last = [], None

  def __call__(self, state, step, writer):
    del writer
    self.steps.append(step)
    self.last = {'w0': float(state['w'][0])}

  def compute(self, state):
    return {'w0': float(state['w'][0])}, {}


def test_pretraining_evaluates_every_few_epochs_and_at_the_end(tmp_path):
  toy = toy_phase.make_phase(7)
  config = ml_collections.ConfigDict({'train': {
      'log_every_steps': 100, 'checkpoint_every_steps': 100, 'keep_checkpoints': 1}})
  evaluator = _CountingEvaluator()
  state, final = training_loop.run_pretraining(
      'toy', config, tmp_path, num_steps=7, steps_per_epoch=2,
      init_state=toy.init_state, train_step=toy.train_step, batches=toy.batches,
      evaluator=evaluator, eval_every_epochs=2)
  assert evaluator.steps == [4, 7]  # Epochs 2 and the last step (epoch 3.5).
  assert final == {'w0': float(state['w'][0])}
