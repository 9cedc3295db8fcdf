"""End to end: `--mode all` on the smoke config, re-run skipping, and resume after SIGKILL."""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

from etils import epath
import jax
import numpy as np
import pytest

from configs import shapes
from mirrorgan_jax import artifacts
from mirrorgan_jax.infra import checkpointing
from mirrorgan_jax.phases import gan_step
from mirrorgan_jax import main
from mirrorgan_jax import vocab as vocab_lib
from mirrorgan_jax.models import factory
from tests import conftest
from tests.conftest import ROOT


def _config(data_dir, **train):
  c = shapes.get_config('smoke')
  c.data.data_dir = str(data_dir)
  for k, v in train.items():
    c.train[k] = v
  return c


def test_all_phases_write_their_outputs(smoke_run):
  workdir = smoke_run.workdir
  # The default DAMSM and STREAM take the classifier's backbone: it is trained first.
  for kind in (artifacts.CLASSIFIER, artifacts.DAMSM, artifacts.STREAM, artifacts.ORACLE):
    assert artifacts.exists(artifacts.directory(workdir, kind), kind), kind.name
  for kind in (artifacts.DAMSM, artifacts.STREAM):
    meta = json.loads((artifacts.directory(workdir, kind) / 'meta.json').read_text())
    assert meta['pretrained_backbone'] == 'classifier', kind.name
  assert (workdir / 'vocab.json').exists() and (workdir / 'config.json').exists()
  for phase in ('damsm', 'stream', 'oracle', 'gan'):
    assert list((workdir / phase).glob('events.out.tfevents*')), phase
    assert list((workdir / phase / 'checkpoints').iterdir()), phase
  assert (workdir / 'eval' / 'results.json').exists()  # Contents: evaluator_test.py.
  assert list((workdir / 'gan' / 'samples').glob('*_ema.png'))
  assert list(pathlib.Path(workdir / 'gan' / 'profile').rglob('*.xplane.pb'))


def test_gan_curves_show_learning_diagnostics(smoke_run):
  """TensorBoard of the GAN phase: D accuracies, CA rms, STREAM CE on real and fake,
  and the semantic probe (oracle + redescription accuracy) at every eval step."""
  scalars = conftest.logged_scalars(smoke_run.workdir / 'gan')
  tags = {tag for _, tag in scalars}
  for tag in ('train/acc/real_uncond/d16', 'train/acc/fake_cond/d32',
              'train/acc/wrong_cond/d16', 'train/ca/mu_rms', 'train/ca/sigma_rms',
              'train/caption_ce', 'train/caption_ce_real'):
    assert tag in tags, tag
  eval_every = smoke_run.config.train.eval_every_steps
  for attribute in ('color', 'shape', 'background'):
    steps = sorted(s for s, t in scalars if t == f'probe/oracle/{attribute}')
    assert steps and all(s % eval_every == 0 for s in steps), attribute
    assert 0 <= scalars[(steps[-1], f'probe/oracle/{attribute}')] <= 1
    assert (steps[-1], f'probe/redescription/{attribute}') in scalars
  assert [t for _, t in scalars if t.startswith('probe/redescription_real/')]


def test_mode_classifier_trains_it_even_if_the_config_does_not_use_it(smoke_run, tmp_path,
                                                                       capsys):
  """`--mode classifier` trains it even when neither DAMSM nor STREAM uses it."""
  config = shapes.get_config('scratch_backbones,smoke')
  config.data.data_dir = smoke_run.config.data.data_dir
  assert not config.damsm.pretrained_backbone and not config.stream.pretrained_backbone
  workdir = epath.Path(tmp_path)
  main.run(config, workdir, 'classifier')
  assert artifacts.exists(artifacts.directory(workdir, artifacts.CLASSIFIER),
                          artifacts.CLASSIFIER)
  assert not (workdir / 'damsm').exists() and not (workdir / 'oracle').exists()
  out = capsys.readouterr().out
  assert 'Image classifier eval at step' in out and 'Oracle eval' not in out


def test_rerun_skips_finished_phases(smoke_run, capsys):
  workdir = smoke_run.workdir
  main.run(smoke_run.config, workdir, 'all')
  out = capsys.readouterr().out
  assert 'damsm: artifact exists' in out
  assert 'stream: artifact exists' in out
  assert 'oracle: artifact exists' in out
  assert 'scores the newest checkpoint, skipping' in out  # eval


def _final_gan_params(workdir, config):
  vocab = vocab_lib.Vocabulary.load(workdir / 'vocab.json')
  models = factory.create_models(config, len(vocab))
  template = jax.eval_shape(
      lambda: gan_step.create_state(config, models, jax.random.PRNGKey(0)))
  state, _, step = checkpointing.Checkpointer(workdir / 'gan' / 'checkpoints').restore(
      template)
  return jax.device_get(state), step


# `make test-slow`: in CI, tests/multiprocess_test.py kills, restarts and compares a GAN
# run (as 2 processes; the same runner and checkpoints).
@pytest.mark.slow
def test_resume_after_sigkill_matches_uninterrupted(smoke_run, tmp_path):
  """Kill -9 after a checkpoint, restart: same final parameters as one run."""
  data_dir, pretrained = smoke_run.data_dir, smoke_run.workdir
  overrides = dict(num_epochs=4, checkpoint_every_steps=10, eval_every_steps=10_000,
                   log_every_steps=10)
  dirs = {}
  for name in ('uninterrupted', 'killed'):
    dirs[name] = tmp_path / name
    for part in ('damsm', 'stream'):
      shutil.copytree(pretrained / part / 'artifact', dirs[name] / part / 'artifact')
    shutil.copy(pretrained / 'vocab.json', dirs[name] / 'vocab.json')
  main.run(_config(data_dir, **overrides), epath.Path(dirs['uninterrupted']), 'gan')

  command = [sys.executable, '-m', 'mirrorgan_jax.main', '--config=configs/shapes.py:smoke',
             f'--workdir={dirs["killed"]}', '--mode=gan',
             f'--config.data.data_dir={data_dir}'] + [
                 f'--config.train.{k}={v}' for k, v in overrides.items()]
  # The restart reads the first process's programs from a compilation cache.
  env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(tmp_path / 'compilation_cache'),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0')
  proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  ckpts = dirs['killed'] / 'gan' / 'checkpoints'
  deadline = time.time() + 300
  while not (ckpts / '20').exists() and proc.poll() is None and time.time() < deadline:
    time.sleep(0.02)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  config = _config(data_dir, **overrides)
  _, killed_at = _final_gan_params(dirs['killed'], config)
  total = 4 * 12  # 96 tiny-train images / batch 8 = 12 steps per epoch.
  assert 20 <= killed_at < total, killed_at
  subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True)
  want, want_step = _final_gan_params(dirs['uninterrupted'], config)
  got, got_step = _final_gan_params(dirs['killed'], config)
  assert want_step == got_step == total
  for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(got)):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
