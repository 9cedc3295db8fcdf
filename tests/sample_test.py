"""Sampling from sentences: caption encoding, `sampling.sample` and the sample CLI.

The session's smoke run of every phase (tests/conftest.py) is shared.
"""

import json
import math
import shutil
import subprocess
import sys

from etils import epath
import numpy as np
from PIL import Image
import pytest

from mirrorgan_jax import sample_cli
from mirrorgan_jax import sampling
from mirrorgan_jax import trained_model
from mirrorgan_jax import vocab as vocab_lib
from tests.conftest import ROOT

CAPTION = 'a small red star left of a blue circle'


# ----------------------------------------------------------------- encode_texts
@pytest.fixture(name='vocab')
def _vocab():
  return vocab_lib.Vocabulary(['<end>', 'a', 'red', 'star', 'blue', 'circle'])


def test_encode_texts_pads_and_reports(vocab):
  ids, lengths, reports = sampling.encode_texts(vocab, ['A red star!', 'blue'], 4)
  np.testing.assert_array_equal(ids, [[1, 2, 3, 0], [4, 0, 0, 0]])
  np.testing.assert_array_equal(lengths, [3, 1])
  assert ids.dtype == np.int32 and lengths.dtype == np.int32
  assert reports[0] == sampling.CaptionReport('A red star!', ['a', 'red', 'star'], [], [])


def test_encode_texts_keeps_the_first_words_num_tokens(vocab):
  ids, lengths, reports = sampling.encode_texts(vocab, ['a red star a blue circle'], 3)
  np.testing.assert_array_equal(ids, [[1, 2, 3]])
  assert lengths[0] == 3
  assert reports[0].truncated == ['a', 'blue', 'circle']


def test_encode_texts_drops_unknown_words_when_asked(vocab):
  ids, lengths, reports = sampling.encode_texts(vocab, ['a red stra'], 4,
                                                drop_unknown=True)
  np.testing.assert_array_equal(ids, [[1, 2, 0, 0]])
  assert lengths[0] == 2 and reports[0].dropped == ['stra']


def test_encode_texts_unknown_words_name_them_and_suggest(vocab):
  with pytest.raises(vocab_lib.UnknownWordsError) as info:
    sampling.encode_texts(vocab, ['a star', 'a red stra and stra'], 4)
  message = str(info.value)
  assert info.value.unknown == ['stra', 'and']
  assert "caption 2 ('a red stra and stra')" in message
  assert "'stra' (closest: star" in message and '--drop-unknown-words' in message


@pytest.mark.parametrize('text,drop,reason', [
    ('', False, 'no words'), (' ?! ', True, 'no words'),
    ('zebra', False, 'none of its words'), ('zebra stra', True, 'none of its words')])
def test_encode_texts_rejects_captions_without_known_words(vocab, text, drop, reason):
  with pytest.raises(sampling.CaptionError, match=reason):
    sampling.encode_texts(vocab, ['a red star', text], 4, drop_unknown=drop)


def test_user_text_is_folded_and_reported_as_typed(vocab):
  # NFKC and accents folded: 'RÉD' -> 'red', 'ſtar' (long s) -> 'star'; the
  # reference rule alone would give 'rd' and 'tar'.
  ids, _, reports = sampling.encode_texts(vocab, ['a RÉD ſtar 🙂 星'], 4)
  np.testing.assert_array_equal(ids, [[1, 2, 3, 0]])
  assert reports[0].unreadable == ['🙂', '星']
  with pytest.raises(vocab_lib.UnknownWordsError) as info:
    sampling.encode_texts(vocab, ['a big red héart'], 4)
  assert info.value.unknown == ['big', 'héart']  # As typed, not 'hart' / 'heart'.
  assert "'héart' (closest:" in str(info.value)
  with pytest.raises(sampling.CaptionError, match=r'no words .*\(left out: 🙂 星\)'):
    sampling.encode_texts(vocab, ['🙂 星'], 4)


def test_long_word_lists_are_summarised(vocab):
  words = [f'w{i}' for i in range(488)]
  assert sampling.summarize(words[:5]) == repr(words[:5])
  assert sampling.summarize(words) == "488 words ('w0', 'w1', 'w2', 'w3', 'w4', ...)"


def test_encode_texts_rejects_no_captions(vocab):
  with pytest.raises(sampling.CaptionError, match='no caption'):
    sampling.encode_texts(vocab, [], 4)


# ----------------------------------------------------------------- smoke run
@pytest.fixture(scope='module')
def workdir(smoke_run) -> epath.Path:
  """The session's finished smoke run of every phase (tests/conftest.py)."""
  return smoke_run.workdir


@pytest.fixture(scope='module')
def trained(workdir) -> trained_model.TrainedModel:
  return trained_model.load(workdir)


def test_sample_is_deterministic_and_independent_of_other_captions(trained):
  first = sampling.sample(trained, [CAPTION, 'a blue circle'], num_samples=3, seed=5)
  again = sampling.sample(trained, ['a blue circle'], num_samples=3, seed=5)
  other = sampling.sample(trained, ['a blue circle'], num_samples=3, seed=6)
  stages = trained.config.model.generator.num_stages
  assert len(first.images) == stages and len(first.attention) == stages - 1
  for a, b in zip(first.images, again.images):
    np.testing.assert_array_equal(a[1], b[0])
  np.testing.assert_array_equal(first.redescription_ids[1], again.redescription_ids[0])
  assert not np.allclose(first.images[-1][1], other.images[-1][0])
  # Different samples of a caption get different noise.
  assert not np.allclose(first.images[0][0, 0], first.images[0][0, 1])


def test_sample_shapes_attention_and_redescriptions(trained):
  config = trained.config
  result = sampling.sample(trained, [CAPTION, 'a blue circle'], num_samples=2, seed=0)
  g, words_num = config.model.generator, config.data.words_num
  for i, image in enumerate(result.images):
    size = g.base_size * 2**i
    assert image.shape == (2, 2, size, size, 3)
    assert image.min() >= -1.0 and image.max() <= 1.0
  for i, maps in enumerate(result.attention):
    size = g.base_size * 2**i  # Computed on the previous stage's features.
    assert maps.shape == (2, 2, size, size, words_num)
    # Each region's attention is a softmax over the caption's words only.
    np.testing.assert_allclose(maps.sum(-1), 1.0, atol=1e-5)
    assert np.all(maps[0, ..., 9:] == 0) and np.all(maps[1, ..., 3:] == 0)
    assert maps[1, ..., :3].min() > 0
  assert result.redescription_ids.shape == (2, 2, config.model.captioner.max_decode_len)
  words = set(trained.vocab.words[1:])
  for texts in result.redescriptions:
    assert all(text and set(text.split()) <= words for text in texts)
  ids, texts = sampling.redescribe(trained, result.images[-1][1])
  np.testing.assert_array_equal(ids, result.redescription_ids[1])
  assert texts == result.redescriptions[1]


def test_sample_compiles_once_for_any_captions_and_counts(trained):
  step = sampling._sample_batch  # pylint: disable=protected-access
  sampling.sample(trained, [CAPTION], num_samples=2, seed=0)
  compiled = step._cache_size()  # pylint: disable=protected-access
  batch = trained.config.eval.batch_size
  for texts, k in ((['a star'], 1), ([CAPTION, 'big green square', 'a'], 3),
                   (['a blue circle'] * 2, batch)):
    result = sampling.sample(trained, texts, num_samples=k, seed=1)
    assert result.images[-1].shape[:2] == (len(texts), k)
  assert step._cache_size() == compiled  # pylint: disable=protected-access


# ----------------------------------------------------------------- CLI
def _expected_figure_size(config, words: int, samples: int) -> tuple[int, int]:
  """(width, height) of a caption's PNG: the layout of `sample.caption_figure`."""
  g = config.model.generator
  last = g.base_size * 2**(g.num_stages - 1)
  cell = last * math.ceil(64 / last)
  width = max(g.num_stages, 1 + words) * (cell + 2) + 2
  rows = g.num_stages  # The stage row, then one row per refinement stage.
  per_sample = rows * (cell + 4 + 14)
  return width, samples * per_sample + (samples - 1) * 8


def test_cli_writes_figures_redescriptions_and_summary(workdir, trained, tmp_path):
  captions = tmp_path / 'captions.txt'
  captions.write_text('\n  a big green squarre  \n\n')
  out = tmp_path / 'out'
  proc = subprocess.run(
      [sys.executable, '-m', 'mirrorgan_jax.sample_cli', '--workdir', str(workdir),
       '--text', CAPTION, '--captions_file', str(captions), '--num-samples', '2',
       '--seed', '3', '--out', str(out), '--drop-unknown-words'],
      cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
  assert proc.returncode == 0 and 'Traceback' not in proc.stderr, proc.stderr[-2000:]
  summary = json.loads((out / 'samples.json').read_text())
  assert summary['seed'] == 3 and summary['num_samples'] == 2
  assert summary['checkpoint_step'] == trained.step
  entries = summary['captions']
  assert [e['caption'] for e in entries] == [CAPTION, 'a big green squarre']
  assert entries[1]['dropped'] == ['squarre'] and entries[1]['words'] == ['a', 'big',
                                                                         'green']
  vocab = vocab_lib.Vocabulary.load(workdir / 'vocab.json')
  for entry in entries:
    assert entry['ids'] == [vocab.index[w] for w in entry['words']]
    width, height = _expected_figure_size(trained.config, len(entry['words']), 2)
    with Image.open(out / entry['png']) as image:
      assert image.size == (width, height) and image.mode == 'RGB'
    assert len(entry['redescriptions']) == 2
    for text in entry['redescriptions']:
      assert text and set(text.split()) <= set(vocab.words[1:])
      assert text in proc.stdout and text in (out / entry['txt']).read_text()
  assert "dropped unknown words: ['squarre']" in proc.stdout


def _cli_error(capsys, *args) -> str:
  """Runs the CLI in-process; checks exit code 1 and one `error:` line; returns it."""
  code = sample_cli.main(['sample', *args])
  err = capsys.readouterr().err
  lines = err.strip().splitlines()
  assert code == 1 and lines and lines[-1].startswith('error: ')
  assert 'Traceback' not in err
  return lines[-1]


def test_cli_bad_text_and_files(workdir, tmp_path, capsys):
  message = _cli_error(capsys, '--workdir', str(workdir), '--text', 'a big green squarre')
  assert "'squarre' (closest: square" in message and '--drop-unknown-words' in message
  assert 'no words' in _cli_error(capsys, '--workdir', str(workdir), '--text', ' ')
  assert 'none of its words' in _cli_error(
      capsys, '--workdir', str(workdir), '--text', 'zebra', '--drop-unknown-words')
  empty = tmp_path / 'empty.txt'
  empty.write_text('\n \n')
  assert 'has no caption' in _cli_error(capsys, '--workdir', str(workdir),
                                        '--captions-file', str(empty))
  missing = tmp_path / 'missing.txt'
  assert str(missing) in _cli_error(capsys, '--workdir', str(workdir),
                                    '--captions-file', str(missing))
  assert 'no caption' in _cli_error(capsys, '--workdir', str(workdir))
  assert 'need --config' in _cli_error(capsys, '--workdir', str(workdir), '--text', 'a',
                                       '--config.model.generator.ngf=8')
  assert 'no field no_such_field' in _cli_error(capsys, '--workdir', str(workdir), '--text', 'a',
                                      '--config', f'{ROOT}/configs/shapes.py:smoke',
                                      '--config.model.no_such_field=1')
  assert str(tmp_path / 'nowhere') in _cli_error(
      capsys, '--workdir', str(tmp_path / 'nowhere'), '--text', 'a')


def test_cli_missing_and_corrupt_checkpoints(workdir, tmp_path, capsys):
  copy = tmp_path / 'run'
  shutil.copytree(workdir, copy)
  checkpoints = copy / 'gan' / 'checkpoints'
  for path in checkpoints.rglob('*'):
    if path.is_file():
      path.write_bytes(b'garbage')
  message = _cli_error(capsys, '--workdir', str(copy), '--text', CAPTION)
  assert str(checkpoints) in message and 'could be restored' in message
  shutil.rmtree(checkpoints)
  message = _cli_error(capsys, '--workdir', str(copy), '--text', CAPTION)
  assert str(checkpoints) in message
