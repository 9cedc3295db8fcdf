"""The web demo: its engine and HTML on the smoke run, its CLI errors, and the page in Chromium.

The browser test drives the real page (Gradio, served on 127.0.0.1) in headless
Chromium through Playwright: Debian's `chromium` (installed by `make test` where
it can, see README "Tests"); `MIRRORGAN_CHROMIUM` names another executable. Without
a browser it is skipped, unless `MIRRORGAN_REQUIRE_BROWSER=1` (CI) makes that a failure.
"""

import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mirrorgan_jax.demo import __main__ as demo_cli
from mirrorgan_jax.demo import engine as engine_lib
from mirrorgan_jax.demo import render
from mirrorgan_jax.infra import image_grid
from mirrorgan_jax.models import factory
from mirrorgan_jax import sampling

CAPTION = 'a small red star on the left'


# ----------------------------------------------------------------- pure parts
def test_word_diff_marks_words_the_other_text_does_not_say():
  caption = 'a small red star against a white background'.split()
  said = 'a white background with a big red star on the left'.split()
  in_caption, in_said = render.word_diff(caption, said)
  assert in_caption == [False, True, False, False, True, False, False, False]
  assert in_said == [False, False, False, True, False, True, False, False, True, True,
                     True]
  assert render.word_diff([], ['a']) == ([], [True])
  assert render.word_diff(['a', 'a'], ['a']) == ([False, True], [False])


def test_user_text_is_escaped_in_errors():
  out = render.error_html('Unknown words: "<script>"')
  assert '<script>' not in out and '&lt;script&gt;' in out


@pytest.mark.parametrize('glam', ['paper', 'reference'])
def test_sentence_attention_map(glam):
  logits = jax.random.normal(jax.random.PRNGKey(0), (2, 4, 4, 6))
  if glam == 'paper':  # Softmax over the 16 positions per channel.
    beta = jax.nn.softmax(logits.reshape(2, 16, 6), axis=1).reshape(2, 4, 4, 6)
    out = sampling.sentence_attention_map(beta, glam)
    np.testing.assert_allclose(out.sum(axis=(1, 2)), 1.0, rtol=1e-5)
    np.testing.assert_allclose(out[1, 2, 3], jnp.mean(beta[1, 2, 3]), rtol=1e-6)
  else:  # Softmax over the 6 channels per pixel: the largest weight.
    beta = jax.nn.softmax(logits, axis=-1)
    out = sampling.sentence_attention_map(beta, glam)
    np.testing.assert_allclose(out[0, 1, 2], float(jnp.max(beta[0, 1, 2])), rtol=1e-6)
  assert out.shape == (2, 4, 4)


# ----------------------------------------------------------------- engine
@pytest.fixture(scope='module')
def engine(smoke_run) -> engine_lib.Engine:
  demo = engine_lib.Engine.load(smoke_run.workdir, max_samples=4)
  demo.warm_up()
  return demo


def test_engine_results_are_the_samples_of_the_run(engine):
  result = engine.generate(CAPTION, 3, seed=7)
  sizes = factory.stage_sizes(engine.trained.config)
  want = sampling.sample(engine.trained, [CAPTION], num_samples=3, seed=7, batch_size=2)
  assert result.caption.words == CAPTION.split() and not result.notices
  assert len(result.samples) == 3
  for j, sample in enumerate(result.samples):
    assert [s.shape for s in sample.stages] == [(s, s, 3) for s in sizes]
    for stage, expected in zip(sample.stages, want.images):
      np.testing.assert_allclose(stage, image_grid.to_uint8(expected[0, j]), atol=1)
    assert len(sample.attention) == len(sizes) - 1
    for att, size in zip(sample.attention, sizes[1:]):
      assert att.size == size and [w for w, _ in att.words] == CAPTION.split()
      assert all(m.shape == (size, size, 3) and m.dtype == np.uint8 for _, m in att.words)
      assert att.sentence.shape == (size, size, 3)  # 'paper' GLAM in the smoke config.
    assert sample.redescription == want.redescriptions[0][j]
  html = render.result_html(result)
  assert html.count('class="mg-stage"') == 3 * len(sizes)
  assert html.count('class="mg-word-map"') == 3 * (len(sizes) - 1) * len(CAPTION.split())
  assert html.count('mg-redescription') == 3
  assert engine.info['step'] == engine.trained.step
  assert engine.info['stage_sizes'] == list(sizes)


def test_engine_compiles_once_for_any_caption_and_sample_count(engine):
  compiled = sampling._sample_batch._cache_size()  # pylint: disable=protected-access
  for text, k in (('a star', 1), (CAPTION + ' against a black background', 4),
                  ('big green square', 2)):
    assert len(engine.generate(text, k, seed=1).samples) == k
  assert sampling._sample_batch._cache_size() == compiled  # pylint: disable=protected-access


def test_engine_bad_captions_are_page_messages(engine):
  with pytest.raises(engine_lib.CaptionProblem, match=r'"squarre" \(closest: square.*drop'):
    engine.generate('a big green squarre', 1, 0)
  with pytest.raises(engine_lib.CaptionProblem, match='No words'):
    engine.generate('  ?! ', 1, 0)
  with pytest.raises(engine_lib.CaptionProblem, match="None of its words is in the vocabulary: 'zebra'"):
    engine.generate('zebra', 1, 0, drop_unknown=True)
  with pytest.raises(engine_lib.CaptionProblem, match='1 to 4'):
    engine.generate(CAPTION, 5, 0)
  with pytest.raises(engine_lib.CaptionProblem, match='[Ss]eed'):
    engine.generate(CAPTION, 1, -1)
  result = engine.generate('a big green squarre', 1, 0, drop_unknown=True)
  assert result.caption.words == ['a', 'big', 'green'] and 'squarre' in result.notices[0]
  words_num = engine.trained.config.data.words_num
  long = ' '.join(['red'] * (words_num + 3))
  result = engine.generate(long, 1, 0)
  assert len(result.caption.words) == words_num
  assert f'({words_num} words): left out its last 3' in result.notices[0]


# ----------------------------------------------------------------- CLI
def _cli_error(capsys, *args) -> str:
  code = demo_cli.main(['demo', *args])
  err = capsys.readouterr().err
  assert code == 1 and 'Traceback' not in err
  return err.strip().splitlines()[-1]


def test_cli_missing_or_corrupt_workdir_is_one_error_line(smoke_run, tmp_path, capsys):
  missing = tmp_path / 'nowhere'
  assert _cli_error(capsys, '--workdir', str(missing)) == f'error: workdir not found: {missing}'
  copy = tmp_path / 'run'
  shutil.copytree(smoke_run.workdir, copy)
  (copy / 'config.json').write_text('{not json')
  assert 'config.json is not valid JSON' in _cli_error(capsys, '--workdir', str(copy))
  (copy / 'config.json').write_text(json.dumps(json.loads(
      (smoke_run.workdir / 'config.json').read_text())))
  shutil.rmtree(copy / 'gan')
  assert 'no GAN checkpoints' in _cli_error(capsys, '--workdir', str(copy))
  assert '--port' in _cli_error(capsys, '--workdir', str(smoke_run.workdir), '--port', '-2')


# ----------------------------------------------------------------- the page in Chromium
def _chromium() -> str:
  path = os.environ.get('MIRRORGAN_CHROMIUM') or next(
      (p for p in map(shutil.which, ('chromium', 'chromium-browser')) if p), None)
  if not path:
    message = ('no Chromium: install Debian\'s `chromium` (make test does, as root) or '
               'set MIRRORGAN_CHROMIUM')
    if os.environ.get('MIRRORGAN_REQUIRE_BROWSER') == '1':
      pytest.fail(message)
    pytest.skip(message)
  return path


def test_page_in_headless_chromium(smoke_run, engine, tmp_path):
  chromium = _chromium()
  from playwright import sync_api  # pylint: disable=g-import-not-at-top
  args = demo_cli._parser().parse_args(  # pylint: disable=protected-access
      ['--workdir', str(smoke_run.workdir), '--port', '0', '--max-samples', '4',
       '--num-examples', '3'])
  page, url = demo_cli.start(args)
  try:
    with sync_api.sync_playwright() as p:
      browser = p.chromium.launch(executable_path=chromium, headless=True)
      tab = browser.new_page(viewport={'width': 1100, 'height': 1300})
      tab.goto(url)
      sync_api.expect(tab.get_by_text('GAN step')).to_contain_text(
          f'GAN step {engine.info["step"]}')
      # An example caption from the test set fills the caption box.
      examples = demo_cli.example_captions(engine, 3)
      assert len(examples) == 3
      tab.get_by_text(examples[0][:30]).first.click()
      sync_api.expect(tab.locator('#mg-caption textarea')).to_have_value(examples[0])
      # A caption of our own, 2 samples.
      tab.locator('#mg-caption textarea').fill(CAPTION)
      tab.locator('#mg-num-samples input[type=number]').fill('2')
      tab.locator('#mg-num-samples input[type=number]').press('Enter')
      tab.locator('#mg-generate').click()
      stages = len(factory.stage_sizes(smoke_run.config))
      sync_api.expect(tab.locator('#mg-output img.mg-stage')).to_have_count(2 * stages)
      sync_api.expect(tab.locator('#mg-output img.mg-word-map')).to_have_count(
          2 * (stages - 1) * len(CAPTION.split()))
      sync_api.expect(tab.locator('#mg-output img.mg-sentence-map')).to_have_count(
          2 * (stages - 1))
      sync_api.expect(tab.locator('#mg-output .mg-redescription')).to_have_count(2)
      assert 'STREAM redescription:' in tab.locator('.mg-redescription').first.inner_text()
      loaded = tab.locator('#mg-output img.mg-stage').evaluate_all(
          'imgs => imgs.every(i => i.complete && i.naturalWidth > 0)')
      assert loaded
      tab.screenshot(path=str(tmp_path / 'demo.png'), full_page=True)
      # An unknown word is answered on the page, with the closest words.
      tab.locator('#mg-caption textarea').fill('a big green squarre')
      tab.locator('#mg-generate').click()
      error = tab.locator('#mg-output .mg-error')
      sync_api.expect(error).to_contain_text('"squarre" (closest: square')
      tab.locator('#mg-drop-unknown input').check()
      tab.locator('#mg-generate').click()
      sync_api.expect(tab.locator('#mg-output .mg-notice')).to_contain_text('squarre')
      browser.close()
  finally:
    page.close()
  assert (tmp_path / 'demo.png').stat().st_size > 10_000


def test_latency_benchmark_writes_its_table(smoke_run, tmp_path, capsys):
  from mirrorgan_jax.benchmark import demo_latency  # pylint: disable=g-import-not-at-top
  out = tmp_path / 'latency.json'
  assert demo_latency.main(['demo_latency', '--workdir', str(smoke_run.workdir),
                            '--requests', '2', '--sample_counts', '1,3',
                            '--out', str(out)]) == 0
  result = json.loads(out.read_text())
  assert set(result['requests']) == {'1', '3'}
  for row in result['requests'].values():
    assert 0 < row['min_s'] <= row['median_s'] <= row['max_s']
  assert result['load_s'] > 0 and result['compile_s'] > 0 and result['first_request_s'] > 0
  assert '| 3 |' in capsys.readouterr().out
