"""The `coco2014_captions` TFDS builder, built offline from a tiny raw COCO folder."""

import json

import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from mirrorgan_jax.data import coco
from tests import raw_fixtures


def _build(manual_dir, data_dir) -> tfds.core.DatasetBuilder:
  builder = tfds.builder(coco.Coco2014Captions.name, data_dir=str(data_dir), config=None)
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
  return builder


@pytest.fixture(scope='module')
def built(tmp_path_factory):
  manual = raw_fixtures.make_coco_manual_dir(tmp_path_factory.mktemp('raw'))
  builder = _build(manual, tmp_path_factory.mktemp('tfds'))
  out = {'manual': manual}
  for split in ('train', 'test'):
    out[split] = {ex['key'].decode(): ex
                  for ex in tfds.as_numpy(builder.as_dataset(split=split))}
    raw = builder.as_dataset(split=split, decoders={'image': tfds.decode.SkipDecoding()})
    out[split + '_bytes'] = {ex['key'].decode(): ex['image'] for ex in tfds.as_numpy(raw)}
  return out


def test_splits_are_train2014_and_val2014(built):
  assert sorted(built['train']) == [
      'COCO_train2014_000000000009', 'COCO_train2014_000000000025',
      'COCO_train2014_000000000030']  # The unlisted image 5 is ignored.
  assert sorted(built['test']) == [
      'COCO_val2014_000000000042', 'COCO_val2014_000000000073']


def test_class_id_is_the_image_id(built):
  ids = {k: int(ex['class_id']) for split in ('train', 'test')
         for k, ex in built[split].items()}
  assert ids == {'COCO_train2014_000000000009': 9, 'COCO_train2014_000000000025': 25,
                 'COCO_train2014_000000000030': 30, 'COCO_val2014_000000000042': 42,
                 'COCO_val2014_000000000073': 73}


def test_first_five_captions_in_annotation_order(built):
  def captions(key):
    return [c.decode() for c in built['train'][key]['captions']]
  assert captions('COCO_train2014_000000000009') == [
      'A plate of food with broccoli.', 'Broccoli and meat on a white plate.',
      'A healthy meal.', 'Dinner is served.', 'Green vegetables on a dish.']
  assert captions('COCO_train2014_000000000030') == [
      'A man riding a bike.', 'Someone cycling down a street.', 'A bicycle on a road.',
      'A cyclist in a helmet.', 'A person on a bicycle.']


def test_jpeg_bytes_are_stored_unchanged(built):
  for split, folder in (('train', 'train2014'), ('test', 'val2014')):
    for key, stored in built[split + '_bytes'].items():
      assert stored == (built['manual'] / folder / f'{key}.jpg').read_bytes()


def test_images_decode_to_rgb_including_grayscale(built):
  gray_key = 'COCO_val2014_000000000073'
  image = built['test'][gray_key]['image']
  assert image.shape == (20, 30, 3)
  np.testing.assert_array_equal(image[..., 0], image[..., 2])
  original = np.asarray(Image.open(built['manual'] / 'val2014' / f'{gray_key}.jpg'))
  assert original.ndim == 2  # The fixture file really is single-channel.
  # TF's default IDCT is not PIL's: values agree to a few grey levels.
  assert np.abs(image[..., 0].astype(int) - original).mean() < 2
  assert built['train']['COCO_train2014_000000000025']['image'].shape == (48, 32, 3)


def _edit_annotations(manual, folder, edit):
  path = manual / 'annotations' / f'captions_{folder}.json'
  data = json.loads(path.read_text())
  edit(data)
  path.write_text(json.dumps(data))


def test_missing_inputs_give_clear_errors(tmp_path):
  manual = raw_fixtures.make_coco_manual_dir(tmp_path)
  missing_image = manual / 'val2014' / 'COCO_val2014_000000000042.jpg'
  image_bytes = missing_image.read_bytes()
  missing_image.unlink()
  with pytest.raises(FileNotFoundError,
                     match=r'COCO_val2014_000000000042.jpg, listed in .*captions_val2014'):
    _build(manual, tmp_path / 'tfds')
  missing_image.write_bytes(image_bytes)
  (manual / 'annotations' / 'captions_train2014.json').unlink()
  with pytest.raises(FileNotFoundError, match=r'captions_train2014.json are missing'):
    _build(manual, tmp_path / 'tfds')
  (manual / 'train2014').rename(manual / 'elsewhere')
  with pytest.raises(FileNotFoundError, match=r'Folder .*train2014 is missing'):
    _build(manual, tmp_path / 'tfds')


def test_a_corrupt_jpeg_fails_the_build_with_its_name(tmp_path):
  manual = raw_fixtures.make_coco_manual_dir(tmp_path)
  bad = manual / 'val2014' / 'COCO_val2014_000000000042.jpg'
  bad.write_bytes(bad.read_bytes()[:200])  # Truncated: the header reads, pixels do not.
  with pytest.raises(Exception, match=r'COCO_val2014_000000000042.jpg: not a readable '
                     r'image \(OSError'):
    _build(manual, tmp_path / 'tfds')


def test_malformed_annotations_give_clear_errors(tmp_path):
  manual = raw_fixtures.make_coco_manual_dir(tmp_path)

  def drop_a_caption_of_42(data):
    data['annotations'] = [a for a in data['annotations'] if a['id'] != 1000]
  _edit_annotations(manual, 'val2014', drop_a_caption_of_42)
  with pytest.raises(ValueError, match=r'image id 42: found 4 non-empty captions, need 5'):
    _build(manual, tmp_path / 'tfds')

  def orphan_annotation(data):
    data['annotations'].append({'image_id': 7, 'id': 1, 'caption': 'x'})
  _edit_annotations(manual, 'val2014', orphan_annotation)
  with pytest.raises(ValueError, match=r'refers to image id 7'):
    _build(manual, tmp_path / 'tfds')

  _edit_annotations(manual, 'val2014', lambda data: data.pop('images'))
  with pytest.raises(ValueError, match=r'has no "images" list'):
    _build(manual, tmp_path / 'tfds')
