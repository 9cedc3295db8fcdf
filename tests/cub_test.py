"""The `cub` TFDS builder, built offline from a tiny raw CUB-200-2011 folder.

Expected crops are worked out by hand from the reference rule (r =
int(0.75 * max(w, h)), centre truncated to int, clipped to the image) and read
back from the pixels, which encode their own coordinates (tests/raw_fixtures.py).
"""

import shutil

from absl.testing import absltest
import numpy as np
import pytest
import tensorflow_datasets as tfds

from mirrorgan_jax.data import cub
from tests import raw_fixtures

# Hand-computed (x1, y1, x2, y2) for each fixture image's bbox (x, y, w, h):
EXPECTED_CROPS = {
    # 80x60, (20,10,30,20): r=22, c=(35,20) -> top clipped.
    1: (13, 0, 57, 42),
    # 64x80, (5,30,40,44): r=33, c=(25,52) -> left and bottom clipped.
    2: (0, 19, 58, 80),
    # 80x80, (30,30,20,20): r=15, c=(40,40) -> no clipping.
    3: (25, 25, 55, 55),
    # 72x64, (11,7,25,31): r=int(23.25)=23, c=(int(23.5), int(22.5))=(23,22).
    4: (0, 0, 46, 45),
    # 60x60 grayscale, (10,12,36,30): r=27, c=(28,27).
    5: (1, 0, 55, 54),
    # 80x70, (40,35,30,30): r=22, c=(55,50) -> right and bottom clipped.
    6: (33, 28, 77, 70),
}


def _build(manual_dir, data_dir) -> tfds.core.DatasetBuilder:
  builder = tfds.builder('cub', data_dir=str(data_dir), config=None)
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
  return builder


def _examples(builder, split) -> dict[str, dict]:
  ds = tfds.as_numpy(builder.as_dataset(split=split))
  return {ex['key'].decode(): ex for ex in ds}


@pytest.fixture(scope='module')
def built(tmp_path_factory):
  manual = raw_fixtures.make_cub_manual_dir(tmp_path_factory.mktemp('raw'))
  builder = _build(manual, tmp_path_factory.mktemp('tfds'))
  return {split: _examples(builder, split) for split in ('train', 'test')}


def test_split_files_choose_the_test_class(built):
  assert sorted(built['test']) == [
      '003.Sooty_Albatross/Sooty_Albatross_0001_1071',
      '003.Sooty_Albatross/Sooty_Albatross_0002_796395']
  assert sorted(built['train']) == [
      '001.Black_footed_Albatross/Black_Footed_Albatross_0009_34',
      '001.Black_footed_Albatross/Black_Footed_Albatross_0046_18',
      '002.Laysan_Albatross/Laysan_Albatross_0002_1027',
      '002.Laysan_Albatross/Laysan_Albatross_0003_1033']


def test_class_ids_come_from_image_class_labels(built):
  everything = {**built['train'], **built['test']}
  assert {k: int(ex['class_id']) for k, ex in everything.items()} == {
      key: class_id for _, class_id, key, *_ in raw_fixtures.CUB_IMAGES}


@pytest.mark.parametrize('image_id', sorted(EXPECTED_CROPS))
def test_crop_geometry_matches_hand_computation(built, image_id):
  _, _, key, _, bbox, gray = raw_fixtures.CUB_IMAGES[image_id - 1]
  x1, y1, x2, y2 = EXPECTED_CROPS[image_id]
  ex = {**built['train'], **built['test']}[key]
  image = ex['image'].astype(np.float64)
  assert image.shape == (y2 - y1, x2 - x1, 3)
  rows, cols = np.mgrid[0:y2 - y1, 0:x2 - x1]
  # Pixels hold red = 3 * x, green = 3 * y of the full image: the mean offset
  # recovers the crop origin to well under a pixel despite JPEG noise.
  assert abs(np.mean(image[..., 0] / 3 - cols) - x1) < 0.4
  if gray:
    np.testing.assert_array_equal(image[..., 0], image[..., 1])
    np.testing.assert_array_equal(image[..., 0], image[..., 2])
    return
  assert abs(np.mean(image[..., 1] / 3 - rows) - y1) < 0.4
  # Blue marks the bbox; sample 2 px inside and outside its edges.
  bx, by, bw, bh = (int(v) for v in bbox)
  inside = image[by - y1 + 2:by - y1 + bh - 2, bx - x1 + 2:bx - x1 + bw - 2, 2]
  assert inside.min() > 200
  outside = np.ones(image.shape[:2], bool)
  top, left = max(0, by - y1 - 2), max(0, bx - x1 - 2)
  outside[top:by - y1 + bh + 2, left:bx - x1 + bw + 2] = False
  assert image[..., 2][outside].max() < 60


def test_crop_box_truncates_centre_and_radius():
  # (x, y, w, h) = (0.5, 0.5, 3, 3): r = int(2.25) = 2, centre int(2.0) = 2.
  assert cub.crop_box((0.5, 0.5, 3.0, 3.0), 100, 100) == (0, 0, 4, 4)
  # Centre int(11.9) = 11, not rounded to 12; r = int(0.75 * 10) = 7.
  assert cub.crop_box((6.9, 20.0, 10.0, 2.0), 100, 100) == (4, 14, 18, 28)


def test_captions_skip_empty_lines_fix_fffd_and_keep_ten(built):
  captions = built['train'][
      '001.Black_footed_Albatross/Black_Footed_Albatross_0046_18']['captions']
  assert [c.decode() for c in captions] == [
      'this bird has a white belly and black wings.',
      'a large bird with a long hooked bill.',
  ] + [f'line {i} about the albatross.' for i in range(3, 11)]
  other = built['test']['003.Sooty_Albatross/Sooty_Albatross_0001_1071']['captions']
  assert [c.decode() for c in other] == [
      f'caption {i} of 003.Sooty_Albatross/Sooty_Albatross_0001_1071' for i in range(10)]


def test_builtin_split_and_text_c10(tmp_path):
  """Without Reed's split files the embedded list applies (001 is a test class)."""
  manual = raw_fixtures.make_cub_manual_dir(tmp_path, split_files=False,
                                            text_dir='text_c10')
  builder = _build(manual, tmp_path / 'tfds')
  assert builder.info.splits['test'].num_examples == 2
  assert builder.info.splits['train'].num_examples == 4
  test_keys = set(_examples(builder, 'test'))
  assert {k.split('/')[0] for k in test_keys} == {'001.Black_footed_Albatross'}


def test_embedded_test_classes_are_fifty_distinct_cub_classes():
  assert len(set(cub.TEST_CLASSES)) == 50
  numbers = [int(c.split('.')[0]) for c in cub.TEST_CLASSES]
  assert all(1 <= n <= 200 for n in numbers) and numbers == sorted(numbers)


def _remove(path):
  shutil.rmtree(path) if path.is_dir() else path.unlink()


@pytest.mark.parametrize('relative, error, message', [
    ('CUB_200_2011', FileNotFoundError, r'CUB_200_2011 is missing'),
    ('CUB_200_2011/bounding_boxes.txt', FileNotFoundError,
     r'bounding_boxes.txt is missing'),
    ('CUB_200_2011/images/002.Laysan_Albatross/Laysan_Albatross_0002_1027.jpg',
     FileNotFoundError,
     r'Laysan_Albatross_0002_1027.jpg, listed in images.txt, is missing'),
    ('text/002.Laysan_Albatross/Laysan_Albatross_0003_1033.txt', FileNotFoundError,
     r'Caption file .*Laysan_Albatross_0003_1033.txt is missing'),
    ('text', FileNotFoundError, r'No caption folder'),
])
def test_missing_inputs_give_clear_errors(tmp_path, relative, error, message):
  manual = raw_fixtures.make_cub_manual_dir(tmp_path)
  _remove(manual / relative)
  with pytest.raises(error, match=message):
    _build(manual, tmp_path / 'tfds')


def test_too_few_captions_names_the_file(tmp_path):
  manual = raw_fixtures.make_cub_manual_dir(tmp_path)
  path = manual / 'text/003.Sooty_Albatross/Sooty_Albatross_0002_796395.txt'
  path.write_text('one\n\ntwo\n' + 'more\n' * 7)  # 9 non-empty lines.
  with pytest.raises(ValueError, match=r'Sooty_Albatross_0002_796395.txt: found 9 '):
    _build(manual, tmp_path / 'tfds')


def test_bad_split_file_and_bad_table_line(tmp_path):
  manual = raw_fixtures.make_cub_manual_dir(tmp_path)
  (manual / 'testclasses.txt').write_text('003.Sooty_Albatross\n999.Dodo\n')
  with pytest.raises(ValueError, match=r"testclasses.txt names classes .*'999.Dodo'"):
    _build(manual, tmp_path / 'tfds')
  (manual / 'testclasses.txt').write_text('002.Laysan_Albatross\n')
  with pytest.raises(ValueError, match=r'share classes .*002.Laysan_Albatross'):
    _build(manual, tmp_path / 'tfds')
  (manual / 'testclasses.txt').unlink()
  (manual / 'CUB_200_2011/bounding_boxes.txt').write_text('1 20.0 10.0 30.0\n')
  with pytest.raises(ValueError, match=r'bounding_boxes.txt:1: expected'):
    _build(manual, tmp_path / 'tfds')


def test_captions_without_words_are_skipped_with_their_line_number():
  lines = ['a red bird', '', '...', 'small beak', '!!', 'white belly']
  with absltest.TestCase().assertLogs(level='WARNING') as logs:
    kept = cub.select_captions(lines, 3, 'f.txt')
  assert kept == ['a red bird', 'small beak', 'white belly']
  assert "f.txt, line 3: caption '...' has no words; skipped." in logs.output[0]
  with pytest.raises(ValueError, match=r'f.txt: found 3 non-empty captions, need 4 '
                     r'\(lines without words, skipped: \[3, 5\]\)'):
    cub.select_captions(lines, 4, 'f.txt')
