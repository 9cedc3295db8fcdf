"""Checkpointer: save/restore, fallback from a corrupt newest step, relative paths."""

import jax
import jax.numpy as jnp
import numpy as np

from mirrorgan_jax.infra import checkpointing


def _state(x):
  return {'w': jnp.full((3, 2), x, jnp.float32), 'step': jnp.array(int(x), jnp.int32)}


def test_save_restore_keep_n(tmp_path):
  ckpt = checkpointing.Checkpointer(tmp_path / 'ckpt', max_to_keep=2)
  assert ckpt.restore(jax.eval_shape(lambda: _state(0))) is None
  for step in (1, 2, 3):
    ckpt.save(step, _state(step), {'epoch': step})
  ckpt.wait()
  state, meta, step = ckpt.restore(jax.eval_shape(lambda: _state(0)))
  assert step == 3 and meta == {'epoch': 3}
  np.testing.assert_array_equal(state['w'], np.full((3, 2), 3.0))
  assert sorted(ckpt.manager.all_steps()) == [2, 3]
  ckpt.close()


def test_corrupt_newest_falls_back_to_previous(tmp_path, capsys):
  ckpt = checkpointing.Checkpointer(tmp_path / 'ckpt', max_to_keep=3, asynchronous=False)
  ckpt.save(1, _state(1))
  ckpt.save(2, _state(2))
  ckpt.wait()
  # Corrupt every data file of step 2.
  for f in (tmp_path / 'ckpt' / '2' / 'state').rglob('*'):
    if f.is_file():
      f.write_bytes(b'garbage')
  state, _, step = ckpt.restore(jax.eval_shape(lambda: _state(0)))
  assert step == 1
  np.testing.assert_array_equal(state['w'], np.ones((3, 2)))
  lines = capsys.readouterr().out.splitlines()  # One line each: the bad step, the used one.
  assert lines[0].startswith(f'Checkpoint {tmp_path}/ckpt/2 is unreadable (')
  assert lines[0].endswith('); trying the previous one.')
  assert lines[1] == f'Restored {tmp_path}/ckpt at step 1.'


def test_relative_paths_work(tmp_path, monkeypatch):
  """Orbax needs absolute paths; `runs/x` (the Makefile's default) must still work."""
  monkeypatch.chdir(tmp_path)
  assert checkpointing.resolve('runs/x') == tmp_path / 'runs' / 'x'
  assert str(checkpointing.resolve('gs://bucket/run')) == 'gs://bucket/run'
  variables = {'w': np.arange(3, dtype=np.float32)}
  ckpt = checkpointing.Checkpointer('runs/ckpt', asynchronous=False)
  ckpt.save(1, variables)
  ckpt.wait()
  restored, _, step = ckpt.restore(variables)
  ckpt.close()
  assert step == 1
  np.testing.assert_array_equal(restored['w'], variables['w'])
