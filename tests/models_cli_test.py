"""Tests of `python -m mirrorgan_jax.models` (parameter overview), run in-process.

Expected counts are worked out by hand from the layer sizes (reference spec and
torchvision's published totals), not read from this code's output.
"""

import contextlib
import io
import pathlib
import re

import pytest

from mirrorgan_jax.models import __main__ as models_cli

ROOT = pathlib.Path(__file__).resolve().parents[1]
CUB = str(ROOT / 'configs' / 'cub.py')
SHAPES_SMOKE = str(ROOT / 'configs' / 'shapes.py') + ':smoke'

# One direction of the CUB text encoder's LSTM: 4H (E + H) + 2 * 4H, E=300, H=128.
_LSTM_CUB = 4 * 128 * (300 + 128) + 2 * 4 * 128


def _run(capsys, *args) -> str:
  assert models_cli.main(['models', *args]) == 0
  return capsys.readouterr().out


def _rows(text: str) -> dict[str, int]:
  """Summary rows 'name  1,234 ...' -> {name: parameters}."""
  out = {}
  for line in text.splitlines():
    match = re.fullmatch(r'\s*(\S+)(?: \(\S+\))?\s+([\d,]+)(?:\s+[\d,]+)?', line)
    if match:
      out.setdefault(match[1], int(match[2].replace(',', '')))
  return out


@pytest.fixture(scope='module')
def cub_compact():
  """The CUB summary, computed once (eval_shape of the paper-sized networks)."""
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    assert models_cli.main(['models', f'--config={CUB}', '--compact']) == 0
  return out.getvalue()


def test_cub_paper_counts(cub_compact):
  rows = _rows(cub_compact)
  assert rows['text_encoder'] == 5450 * 300 + 2 * _LSTM_CUB == 2_075_320
  assert rows['d64'] == 6_313_730
  assert rows['d128'] == 19_424_002
  assert rows['d256'] == 71_858_946
  assert rows['generator'] == 7_681_648  # glam='paper'.
  # DAMSM head: 1x1 conv 768 -> 256 (no bias) + Linear 2048 -> 256.
  assert rows['head'] == 768 * 256 + 2048 * 256 + 256
  # torchvision inception_v3 (27,161,264) minus fc (2,049,000) and AuxLogits.
  aux = 768 * 128 + 2 * 128 + 128 * 768 * 25 + 2 * 768 + 768 * 1000 + 1000
  assert rows['image_encoder'] == 768 * 256 + 2048 * 256 + 256 + (
      27_161_264 - 2_049_000 - aux)
  # torchvision resnet152 (60,192,808) minus fc; Linear 2048->256 + BN1d(256).
  assert rows['backbone'] == 21_785_568  # First 'backbone' row: the image encoder's.
  assert rows['encoder_head'] == 2048 * 256 + 256 + 2 * 256
  decoder = 5450 * 256 + 4 * 512 * (256 + 512) + 2 * 4 * 512 + 512 * 5450 + 5450
  assert rows['decoder'] == decoder
  assert rows['captioner'] == (60_192_808 - 2_049_000) + 2048 * 256 + 768 + decoder
  parts = [rows[k] for k in ('ca', 'stage0', 'stage1', 'stage2')]
  assert sum(parts) == rows['generator']
  networks = ('text_encoder', 'image_encoder', 'generator', 'd64', 'd128', 'd256',
              'captioner')
  assert rows['total'] == sum(rows[k] for k in networks)


def test_cub_stage_shapes(cub_compact):
  assert 'generator stages: 64x64x3, 128x128x3, 256x256x3' in cub_compact
  for i, size in enumerate((64, 128, 256)):
    assert f'stage{i} ({size}x{size}x3)' in cub_compact
  assert '+----' not in cub_compact  # --compact: no per-leaf tables.


def test_flags_and_overrides(capsys):
  out = _run(capsys, f'--config={CUB}', '--compact', '--vocab_size=100',
             '--config.model.text_encoder.hidden_size=64')
  lstm = 4 * 64 * (300 + 64) + 2 * 4 * 64
  assert _rows(out)['text_encoder'] == 100 * 300 + 2 * lstm


def test_smoke_full_tables(capsys):
  out = _run(capsys, '--config', SHAPES_SMOKE, '--vocab_size=30')
  assert 'generator stages: 16x16x3, 32x32x3' in out
  # Per-leaf clu tables, e.g. the smoke text encoder's embedding [30, 16].
  assert re.search(r'\| embedding/embedding\s+\| \(30, 16\)', out)
  assert out.count('Total:') == 1 + 2 + 3 + 2 + 3  # TE, IE, G parts, Ds, captioner.
  rows = _rows(out.split('module')[-1])
  assert rows['text_encoder'] == 30 * 16 + 2 * (4 * 8 * (16 + 8) + 2 * 4 * 8)


def test_bad_arguments(capsys):
  assert models_cli.main(['models', '--compact']) == 2
  assert '--config is required' in capsys.readouterr().err
  assert models_cli.main(['models', f'--config={CUB}', '--bogus']) == 2
  assert 'bogus' in capsys.readouterr().err
  assert models_cli.main(['models', f'--config={CUB}', '--config.model.bogus=1']) == 2
  assert 'bogus' in capsys.readouterr().err
  assert models_cli.main(['models', '--config=configs/nope.py']) == 2
  assert 'No such file' in capsys.readouterr().err
