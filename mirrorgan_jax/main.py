r"""MirrorGAN-JAX entry point.

  python -m mirrorgan_jax.main --config configs/coco.py --workdir DIR [--mode all]

Modes: `classifier` (captioned_shapes with `damsm.pretrained_backbone` or
`stream.pretrained_backbone = 'classifier'`: the pretrained image backbone of
DAMSM / STREAM, an attribute classifier),
`damsm` (pretrain STEM), `stream` (pretrain the captioner), `oracle` (train the
attribute classifier that judges samples; captioned_shapes only), `gan` (train
MirrorGAN with both frozen), `eval` (IS, FID, R-precision, BLEU and, on
captioned_shapes, oracle accuracy of the newest GAN checkpoint into
`<workdir>/eval`) and `all`: classifier (if the config uses it) -> damsm ->
stream -> oracle (captioned_shapes only) -> gan -> eval. In `all`, a pretraining
phase or oracle whose artifact exists is skipped, the GAN phase resumes from its
checkpoints, and eval is skipped when `eval/results.json` already scores the
newest checkpoint (`--mode eval` always evaluates).
`--config` takes the ml_collections syntax (`configs/cub.py:smoke`,
`--config.train.batch_size=8`). Multi-host: `--distributed` (or
MIRRORGAN_DISTRIBUTED=1) joins the job (`infra.multihost.join`: at most
`--distributed_timeout` seconds; a dead peer is noticed within
`--heartbeat_timeout`), and every process must have the same config.
"""

import json
import os

from mirrorgan_jax.infra import runtime_env

runtime_env.set_defaults()  # Before TensorFlow and JAX start.

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import app
from absl import flags
from absl import logging
from etils import epath
import jax
from ml_collections import config_flags
import tensorflow as tf

from mirrorgan_jax import artifacts
from mirrorgan_jax.infra import cli_errors
from mirrorgan_jax.infra import config_check
from mirrorgan_jax.infra import console
from mirrorgan_jax.infra import multihost
from mirrorgan_jax.phases import damsm as damsm_phase
from mirrorgan_jax.phases import gan as gan_phase
from mirrorgan_jax.phases import oracle as oracle_phase
from mirrorgan_jax.phases import stream as stream_phase
from mirrorgan_jax import vocab as vocab_lib
from mirrorgan_jax.infra import workdir_lock
from mirrorgan_jax.data import input_pipeline
from mirrorgan_jax.data import shapes_scene
from mirrorgan_jax.evaluation import evaluator

MODES = ('all', 'classifier', 'damsm', 'stream', 'oracle', 'gan', 'eval')
_CONFIG = config_flags.DEFINE_config_file('config', None, 'Experiment config file.',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Output directory (local or gs://).')
_MODE = flags.DEFINE_enum('mode', 'all', list(MODES), 'What to run.')
_DISTRIBUTED = flags.DEFINE_bool(
    'distributed', os.environ.get('MIRRORGAN_DISTRIBUTED', '') == '1',
    'Call jax.distributed.initialize() (multi-host GPU / TPU pods).')
_COORDINATOR = flags.DEFINE_string(
    'coordinator_address', None, 'host:port of process 0 (multi-node GPU without '
    'SLURM/MPI; TPU pods detect it).')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'Processes in the job.')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'This process, 0..n-1.')
_JOIN_TIMEOUT = flags.DEFINE_integer(
    'distributed_timeout', 300, 'Seconds to wait for every process to join the job.')
_HEARTBEAT = flags.DEFINE_integer(
    'heartbeat_timeout', 100, 'Seconds after which the others notice a process that died.')
_VERBOSE = flags.DEFINE_bool(
    'verbose', False, 'Show the traceback of user errors (bad config, busy or missing '
    'paths) instead of one error line.')
_PROFILER_PORT = flags.DEFINE_integer(
    'profiler_port', 0, 'Start a jax.profiler server on this port (0 = off).')
flags.mark_flags_as_required(['config', 'workdir'])


def resolve_vocabulary(config, workdir: epath.Path) -> vocab_lib.Vocabulary:
  """The run's vocabulary: the DAMSM artifact's, else the workdir's, else built.

  A built vocabulary is saved to `<workdir>/vocab.json`, so every phase and
  every restart of the run uses the same words and ids.
  """
  damsm = artifacts.directory(workdir, artifacts.DAMSM)
  if artifacts.exists(damsm, artifacts.DAMSM):
    return vocab_lib.Vocabulary.load(damsm / artifacts.VOCAB_FILE)
  if (workdir / artifacts.VOCAB_FILE).exists():
    return vocab_lib.Vocabulary.load(workdir / artifacts.VOCAB_FILE)
  vocab = input_pipeline.build_vocabulary(config)
  if jax.process_index() == 0:
    vocab.save(workdir / artifacts.VOCAB_FILE)
  return vocab


def run(config, workdir: epath.Path, mode: str) -> None:
  """Runs the phases of `mode` in order (see the module docstring)."""
  if mode not in MODES:
    raise ValueError(f'unknown mode {mode!r}; choose one of {", ".join(MODES)}')
  has_oracle = config.data.name == shapes_scene.DATASET
  if mode in ('oracle', 'classifier') and not has_oracle:
    raise ValueError(f'--mode {mode} needs data.name {shapes_scene.DATASET!r} (it '
                     'learns its ground-truth attribute labels); this config has '
                     f'{config.data.name!r}')
  multihost.check_same_config(config)
  config_check.check(
      config, jax.device_count(), jax.process_count(),
      dataset_prepared=(config.data.name not in config_check.MANUAL_DATASETS
                        or input_pipeline.is_prepared(config)))
  logging.info('Config:\n%s', json.dumps(json.loads(config.to_json_best_effort()), indent=1))
  workdir.mkdir(parents=True, exist_ok=True)
  roles = {'eval': ('eval',), 'all': ('train', 'eval')}.get(mode, ('train',))
  with workdir_lock.held(workdir, roles, jax.process_index()):
    _run_phases(config, workdir, mode, has_oracle)


def _run_phases(config, workdir: epath.Path, mode: str, has_oracle: bool) -> None:
  """`run`'s work, with the workdir locked."""
  if jax.process_index() == 0:
    (workdir / 'config.json').write_text(config.to_json_best_effort(indent=1))
  vocab = resolve_vocabulary(config, workdir)
  logging.info('Vocabulary: %d words.', len(vocab))
  pretraining = (
      (artifacts.CLASSIFIER, lambda: oracle_phase.train_and_evaluate(
          config, workdir, artifacts.CLASSIFIER)),
      (artifacts.DAMSM, lambda: damsm_phase.train_and_evaluate(config, workdir, vocab)),
      (artifacts.STREAM, lambda: stream_phase.train_and_evaluate(config, workdir, vocab)),
      (artifacts.ORACLE, lambda: oracle_phase.train_and_evaluate(config, workdir)))
  # What `all` trains (an explicit `--mode classifier` / `oracle` always does).
  uses_classifier = any(config[s].get('pretrained_backbone')
                        for s, _ in config_check.BACKBONE_USERS)
  in_all = {artifacts.CLASSIFIER.phase: has_oracle and uses_classifier,
            artifacts.ORACLE.phase: has_oracle}
  for kind, train in pretraining:
    if mode not in (kind.phase, 'all') or (mode == 'all' and not in_all.get(kind.phase, True)):
      continue
    path = artifacts.directory(workdir, kind)
    if mode == 'all' and artifacts.exists(path, kind):
      console.say(f'{kind.phase}: artifact exists at {path}, skipping.')
      continue
    train()
  if mode in ('gan', 'all'):
    gan_phase.train_and_evaluate(config, workdir, vocab)
  if mode in ('eval', 'all'):
    if mode == 'all' and evaluator.results_current(workdir):
      console.say(f'eval: {evaluator.eval_dir(workdir) / evaluator.RESULTS_FILE} scores '
                  'the newest checkpoint, skipping.')
    else:
      evaluator.evaluate(config, workdir)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if not flags.FLAGS['verbosity'].present:
    # The console shows progress lines (mirrorgan_jax.infra.console); library INFO logs
    # (Orbax, TFDS, clu, absl) come back with --verbosity=0.
    console.quiet_libraries()
  tf.config.set_visible_devices([], 'GPU')  # tf.data only; the GPUs belong to JAX.
  if _DISTRIBUTED.value:
    # Unset values are detected (Cloud TPU, SLURM, Open MPI, Kubernetes).
    with cli_errors.reported(cli_errors.USER_ERRORS, _VERBOSE.value):
      multihost.join(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value,
                     _JOIN_TIMEOUT.value, _HEARTBEAT.value)
  if _PROFILER_PORT.value:
    jax.profiler.start_server(_PROFILER_PORT.value)
  logging.info('JAX process %d of %d, %d local / %d global devices (%s).',
               jax.process_index(), jax.process_count(), jax.local_device_count(),
               jax.device_count(), jax.devices()[0].platform)
  with cli_errors.reported(cli_errors.FLAG_ERRORS, _VERBOSE.value):
    config = _CONFIG.value
    _ = config.data  # A config file that failed to load raises only when read.
  with (cli_errors.reported(cli_errors.USER_ERRORS, _VERBOSE.value),
        multihost.collective_failures_end_the_process()):
    run(config, epath.Path(_WORKDIR.value), _MODE.value)


if __name__ == '__main__':
  app.run(main, flags_parser=cli_errors.parse_flags)
