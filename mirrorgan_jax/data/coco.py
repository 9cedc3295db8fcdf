"""MS-COCO 2014 captions, as the TFDS builder `coco2014_captions`.

Reads the official train2014/val2014 JPEGs and caption annotation files from
the manual directory (see `Coco2014Captions.MANUAL_DOWNLOAD_INSTRUCTIONS`).
Splits follow the reference: train = train2014 (82,783 images), test = val2014
(40,504), the official 2014 split rather than Karpathy's. Each image keeps its
first 5 captions in annotation-file order; its class id is the COCO image id
(COCO has no classes, so no same-class masking happens). The JPEG bytes are
stored as they are; grayscale files decode to 3 channels like every image.
Every image is decoded once while building, so a corrupt file fails the build
with its name instead of a training run hours later.
"""

from collections.abc import Iterator, Mapping
import dataclasses
import json

from etils import epath
from PIL import Image
import tensorflow_datasets as tfds

from mirrorgan_jax.data import cub

CAPTIONS_PER_IMAGE = 5
_SPLITS = {'train': 'train2014', 'test': 'val2014'}  # TFDS split -> COCO folder.

_INSTRUCTIONS = """\
Put these in the manual directory (TFDS default: <data_dir>/downloads/manual/, or
pass tfds.download.DownloadConfig(manual_dir=...)), from https://cocodataset.org:

  train2014/    train2014.zip extracted: COCO_train2014_<12-digit id>.jpg
  val2014/      val2014.zip extracted: COCO_val2014_<12-digit id>.jpg
  annotations/  from annotations_trainval2014.zip: captions_train2014.json and
                captions_val2014.json (the other annotation files are not needed).
"""


def check_image(path: epath.Path) -> None:
  """Decodes the image at `path` fully; raises ValueError naming it if it cannot."""
  try:
    with path.open('rb') as f, Image.open(f) as image:
      image.load()
  except (OSError, SyntaxError, ValueError) as e:  # PIL's errors for bad data.
    raise ValueError(f'{path}: not a readable image ({type(e).__name__}: {e}). Replace '
                     'the file with a good copy and build again.') from e


@dataclasses.dataclass(frozen=True)
class _Record:
  image_id: int
  image_path: epath.Path
  captions: list[str]


def _load_annotations(path: epath.Path) -> dict:
  if not path.exists():
    raise FileNotFoundError(
        f'Caption annotations {path} are missing; expected the official file from '
        f'annotations_trainval2014.zip.\n{_INSTRUCTIONS}')
  try:
    data = json.loads(path.read_text())
  except json.JSONDecodeError as e:
    raise ValueError(f'{path} is not valid JSON: {e}') from e
  for field in ('images', 'annotations'):
    if not isinstance(data, dict) or field not in data:
      raise ValueError(f'{path} has no "{field}" list; is it a COCO captions file?')
  return data


def _read_split(manual_dir: epath.Path, folder: str) -> list[_Record]:
  """Checks and reads one COCO folder and its caption file, in annotation order."""
  image_dir = manual_dir / folder
  if not image_dir.is_dir():
    raise FileNotFoundError(
        f'Folder {image_dir} is missing; extract {folder}.zip into {manual_dir}.'
        f'\n{_INSTRUCTIONS}')
  ann_path = manual_dir / 'annotations' / f'captions_{folder}.json'
  data = _load_annotations(ann_path)
  present = {p.name for p in image_dir.iterdir()}
  try:
    files = {int(im['id']): im['file_name'] for im in data['images']}
    captions = {image_id: [] for image_id in files}
    for ann in data['annotations']:
      image_id = int(ann['image_id'])
      if image_id not in captions:
        raise ValueError(
            f'{ann_path}: annotation {ann.get("id")} refers to image id {image_id}, '
            'which its "images" list lacks.')
      # One caption per line, as in the reference's text files.
      captions[image_id].append(ann['caption'].replace('\n', ' ').strip())
  except (KeyError, TypeError) as e:
    raise ValueError(
        f'{ann_path}: malformed entry ({e!r}); expected images with id/file_name and '
        'annotations with image_id/caption.') from e
  records = []
  for image_id, file_name in files.items():
    if file_name not in present:
      raise FileNotFoundError(
          f'Image {image_dir / file_name}, listed in {ann_path}, is missing.')
    records.append(_Record(
        image_id=image_id, image_path=image_dir / file_name,
        captions=cub.select_captions(
            captions[image_id], CAPTIONS_PER_IMAGE, f'{ann_path}, image id {image_id}')))
  return records


class Coco2014Captions(tfds.core.GeneratorBasedBuilder):
  """COCO 2014 images with their first 5 captions; train2014 / val2014 splits."""

  name = 'coco2014_captions'
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Official 2014 split, first 5 captions per image.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=cub.captioned_image_features(),  # class_id: the COCO image id.
        homepage='https://cocodataset.org',
        citation='Lin et al., Microsoft COCO: Common Objects in Context, ECCV 2014.',
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    # Both splits are read and checked before any example is written.
    manual_dir = epath.Path(dl_manager.manual_dir)
    records = {split: _read_split(manual_dir, folder) for split, folder in _SPLITS.items()}
    return {split: self._generate_examples(rs) for split, rs in records.items()}

  def _generate_examples(self, records: list[_Record]) -> Iterator[tuple[str, Mapping]]:
    for r in records:
      check_image(r.image_path)
      key = r.image_path.name.rsplit('.', 1)[0]
      # A path makes TFDS store the file's bytes unchanged (no re-encoding).
      yield key, {
          'image': r.image_path,
          'captions': r.captions,
          'class_id': r.image_id,
          'key': key,
      }
