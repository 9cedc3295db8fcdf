"""CUB-200-2011 birds with Reed et al.'s captions, as the TFDS builder `cub`.

The images come from the official CUB-200-2011 archive and the ten captions per
image from Reed et al. (CVPR 2016); neither can be fetched by TFDS, so the user
puts them in the manual directory (see `Cub.MANUAL_DOWNLOAD_INSTRUCTIONS`).

At build time each image is cropped around its bounding box exactly as the
reference does (r = int(0.75 * max(w, h)) around the integer box centre,
clipped to the image) and re-encoded as JPEG. Splits are class-disjoint as in
StackGAN/AttnGAN: 150 train classes (8,855 images), 50 test classes (2,933).
"""

from collections.abc import Iterable, Iterator, Mapping, Sequence
import dataclasses
import io

from absl import logging
from etils import epath
import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from mirrorgan_jax import tokenizer

CAPTIONS_PER_IMAGE = 10
VOCAB_SIZE = 5450  # Words in AttnGAN's CUB vocabulary (its released DAMSM encoders).
_JPEG_QUALITY = 95  # Re-encoding the crop: high quality, no chroma subsampling.
_TEXT_DIRS = ('text', 'text_c10')  # AttnGAN's metadata name, Reed's archive name.
_TEST_CLASSES_FILE = 'testclasses.txt'
_TRAIN_CLASSES_FILE = 'trainvalclasses.txt'

# The 50 test classes of Reed et al.'s CUB split (their `testclasses.txt`), which
# StackGAN, AttnGAN and MirrorGAN use as the test set. Their images total 2,933
# of CUB's 11,788; the other 150 classes (Reed's train + val) hold 8,855.
TEST_CLASSES = (
    '001.Black_footed_Albatross', '004.Groove_billed_Ani', '006.Least_Auklet',
    '008.Rhinoceros_Auklet', '009.Brewer_Blackbird', '014.Indigo_Bunting',
    '023.Brandt_Cormorant', '029.American_Crow', '031.Black_billed_Cuckoo',
    '033.Yellow_billed_Cuckoo', '034.Gray_crowned_Rosy_Finch', '035.Purple_Finch',
    '036.Northern_Flicker', '037.Acadian_Flycatcher', '038.Great_Crested_Flycatcher',
    '043.Yellow_bellied_Flycatcher', '049.Boat_tailed_Grackle', '051.Horned_Grebe',
    '053.Western_Grebe', '066.Western_Gull', '072.Pomarine_Jaeger',
    '079.Belted_Kingfisher', '083.White_breasted_Kingfisher',
    '084.Red_legged_Kittiwake', '086.Pacific_Loon', '091.Mockingbird',
    '095.Baltimore_Oriole', '096.Hooded_Oriole', '098.Scott_Oriole',
    '101.White_Pelican', '102.Western_Wood_Pewee', '103.Sayornis',
    '112.Great_Grey_Shrike', '114.Black_throated_Sparrow', '119.Field_Sparrow',
    '121.Grasshopper_Sparrow', '130.Tree_Sparrow', '135.Bank_Swallow',
    '138.Tree_Swallow', '147.Least_Tern', '156.White_eyed_Vireo',
    '163.Cape_May_Warbler', '165.Chestnut_sided_Warbler',
    '166.Golden_winged_Warbler', '180.Wilson_Warbler', '183.Northern_Waterthrush',
    '185.Bohemian_Waxwing', '186.Cedar_Waxwing',
    '187.American_Three_toed_Woodpecker', '197.Marsh_Wren',
)

_INSTRUCTIONS = f"""\
Put these in the manual directory (TFDS default: <data_dir>/downloads/manual/, or
pass tfds.download.DownloadConfig(manual_dir=...)):

  CUB_200_2011/   the folder extracted from CUB_200_2011.tgz
                  (https://www.vision.caltech.edu/datasets/cub_200_2011/), with
                  images/<class_dir>/<name>.jpg, images.txt, bounding_boxes.txt and
                  image_class_labels.txt.
  text/           Reed et al.'s captions: text/<class_dir>/<name>.txt, at least
                  {CAPTIONS_PER_IMAGE} non-empty lines per image. This is the `text`
                  folder of AttnGAN's birds metadata; the `text_c10/` folder of Reed's
                  cvpr2016_cub archive (https://github.com/reedscot/cvpr2016) is also
                  accepted under that name.
  {_TEST_CLASSES_FILE}, {_TRAIN_CLASSES_FILE}   optional: Reed's class split, one
                  class dir per line. Without them the StackGAN/AttnGAN split built
                  into this builder is used (50 test classes, the other 150 train).
"""


def select_captions(lines: Iterable[str], n: int, source: str) -> list[str]:
  """Keeps the first `n` caption lines that have words, as the reference reads them.

  Empty lines are skipped, and so are lines without a word token (only
  punctuation: the reference skips those too; each is logged with its line
  number). The two-character sequence U+FFFD U+FFFD (left where Reed's files
  lost non-ASCII characters) becomes a space.

  Args:
    lines: caption lines in file order, without line terminators.
    n: how many captions to keep.
    source: names the captions' origin in the error message.

  Returns:
    The first `n` lines with words, cleaned.

  Raises:
    ValueError: fewer than `n` lines with words (names the word-less lines).
  """
  kept, wordless = [], []
  for number, line in enumerate(lines, start=1):
    if not line:
      continue
    if not tokenizer.tokenize(line):
      logging.warning('%s, line %d: caption %r has no words; skipped.', source, number, line)
      wordless.append(number)
      continue
    kept.append(line.replace('\ufffd\ufffd', ' '))
    if len(kept) == n:
      return kept
  skipped = f' (lines without words, skipped: {wordless})' if wordless else ''
  raise ValueError(f'{source}: found {len(kept)} non-empty captions, need {n}{skipped}.')


def crop_box(bbox: Sequence[float], width: int, height: int) -> tuple[int, int, int, int]:
  """The reference's crop around a CUB bounding box.

  Args:
    bbox: (x, y, w, h) from bounding_boxes.txt, in pixels.
    width: image width.
    height: image height.

  Returns:
    (x1, y1, x2, y2), the half-open pixel box [x1, x2) x [y1, y2): the square of
    half-side r = int(0.75 * max(w, h)) around the centre (int(x + w/2),
    int(y + h/2)), clipped to the image, so it may be non-square near edges.
  """
  x, y, w, h = bbox
  r = int(0.75 * max(w, h))
  cx, cy = int((2 * x + w) / 2), int((2 * y + h) / 2)
  return max(0, cx - r), max(0, cy - r), min(width, cx + r), min(height, cy + r)


@dataclasses.dataclass(frozen=True)
class _Record:
  key: str  # <class_dir>/<name>, the image path without extension.
  image_path: epath.Path
  bbox: tuple[float, float, float, float]
  class_id: int
  captions: list[str]


def _read_table(path: epath.Path, num_values: int) -> dict[int, list[str]]:
  """Reads a CUB metadata file of lines '<image id> <value> ...'."""
  if not path.exists():
    raise FileNotFoundError(
        f'CUB metadata file {path} is missing; expected it in the folder extracted '
        'from CUB_200_2011.tgz.')
  table = {}
  for lineno, line in enumerate(path.read_text().splitlines(), start=1):
    fields = line.split()
    if not fields:
      continue
    if len(fields) != num_values + 1 or not fields[0].isdigit():
      raise ValueError(
          f'{path}:{lineno}: expected "<image id> " and {num_values} value(s), '
          f'got {line!r}.')
    table[int(fields[0])] = fields[1:]
  return table


def _read_captions(path: epath.Path, key: str) -> list[str]:
  if not path.exists():
    raise FileNotFoundError(
        f'Caption file {path} is missing for image {key}; expected '
        f'{CAPTIONS_PER_IMAGE} captions per image in <text dir>/<class_dir>/<name>.txt.')
  try:
    text = path.read_bytes().decode('utf-8')
  except UnicodeDecodeError as e:
    raise ValueError(f'Caption file {path} is not valid UTF-8: {e}') from e
  # Reference splits on '\n'; dropping a trailing '\r' makes CRLF files read alike.
  lines = (line.removesuffix('\r') for line in text.split('\n'))
  return select_captions(lines, CAPTIONS_PER_IMAGE, f'Caption file {path}')


def _find_text_dir(manual_dir: epath.Path) -> epath.Path:
  for name in _TEXT_DIRS:
    if (manual_dir / name).is_dir():
      return manual_dir / name
  raise FileNotFoundError(
      f'No caption folder in {manual_dir}: expected {_TEXT_DIRS[0]}/ (or '
      f'{_TEXT_DIRS[1]}/) holding <class_dir>/<name>.txt.\n{_INSTRUCTIONS}')


def _read_records(manual_dir: epath.Path) -> list[_Record]:
  """Reads and checks every image's metadata and captions, in images.txt order."""
  cub_dir = manual_dir / 'CUB_200_2011'
  if not cub_dir.is_dir():
    raise FileNotFoundError(
        f'Folder {cub_dir} is missing; extract CUB_200_2011.tgz into {manual_dir}.'
        f'\n{_INSTRUCTIONS}')
  text_dir = _find_text_dir(manual_dir)
  paths = _read_table(cub_dir / 'images.txt', 1)
  boxes = _read_table(cub_dir / 'bounding_boxes.txt', 4)
  labels = _read_table(cub_dir / 'image_class_labels.txt', 1)
  records = []
  for image_id, (rel_path,) in paths.items():
    for table, name in ((boxes, 'bounding_boxes.txt'),
                        (labels, 'image_class_labels.txt')):
      if image_id not in table:
        raise ValueError(f'Image id {image_id} of images.txt has no line in {name}.')
    image_path = cub_dir / 'images' / rel_path
    if not image_path.exists():
      raise FileNotFoundError(f'Image {image_path}, listed in images.txt, is missing.')
    key = rel_path.rsplit('.', 1)[0]
    records.append(_Record(
        key=key, image_path=image_path,
        bbox=tuple(float(v) for v in boxes[image_id]),
        class_id=int(labels[image_id][0]),
        captions=_read_captions(text_dir / f'{key}.txt', key)))
  if not records:
    raise ValueError(f'{cub_dir / "images.txt"} lists no images.')
  return records


def _read_class_list(path: epath.Path, known: set[str]) -> set[str] | None:
  """Class dirs listed in a split file (None when absent); all must be known."""
  if not path.exists():
    return None
  names = {line.strip() for line in path.read_text().splitlines() if line.strip()}
  unknown = sorted(names - known)
  if unknown:
    raise ValueError(
        f'{path} names classes that no image of images.txt belongs to: {unknown[:5]}; '
        'expected class dirs such as 001.Black_footed_Albatross, one per line.')
  return names


def _class_split(manual_dir: epath.Path,
                 class_dirs: set[str]) -> tuple[set[str], set[str]]:
  """(train, test) class dirs: from Reed's split files if given, else TEST_CLASSES."""
  test = _read_class_list(manual_dir / _TEST_CLASSES_FILE, class_dirs)
  train = _read_class_list(manual_dir / _TRAIN_CLASSES_FILE, class_dirs)
  if test is None and train is None:
    logging.info('No %s in %s: using the built-in 50 test classes.',
                 _TEST_CLASSES_FILE, manual_dir)
    test = set(TEST_CLASSES)
  if train is None:
    train = class_dirs - test
  if test is None:
    test = class_dirs - train
  if train & test:
    raise ValueError(
        f'{_TRAIN_CLASSES_FILE} and {_TEST_CLASSES_FILE} in {manual_dir} share classes '
        f'{sorted(train & test)[:5]}; the split must be class-disjoint.')
  unused = class_dirs - train - test
  if unused:
    logging.warning('Classes in neither split are left out: %s', sorted(unused))
  return train, test


def _cropped_jpeg(record: _Record) -> bytes:
  with record.image_path.open('rb') as f:
    image = Image.open(f).convert('RGB')  # A few CUB JPEGs are grayscale.
    box = crop_box(record.bbox, image.width, image.height)
    out = io.BytesIO()
    image.crop(box).save(out, format='JPEG', quality=_JPEG_QUALITY, subsampling=0)
  return out.getvalue()


def captioned_image_features() -> tfds.features.FeaturesDict:
  """Features of the real captioned-image datasets (CUB, COCO).

  `class_id` groups images for DAMSM negatives (CUB class, COCO image id);
  `key` names the source file.
  """
  return tfds.features.FeaturesDict({
      'image': tfds.features.Image(shape=(None, None, 3), encoding_format='jpeg'),
      'captions': tfds.features.Sequence(tfds.features.Text()),
      'class_id': np.int64,
      'key': tfds.features.Text(),
  })


class Cub(tfds.core.GeneratorBasedBuilder):
  """CUB-200-2011 with 10 Reed et al. captions per image, bounding-box cropped."""

  name = 'cub'
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Bounding-box crops, Reed captions, StackGAN class split.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=captioned_image_features(),  # class_id: CUB class 1..200.
        homepage='https://www.vision.caltech.edu/datasets/cub_200_2011/',
        citation=('Wah et al., The Caltech-UCSD Birds-200-2011 Dataset, 2011; Reed et '
                  'al., Learning Deep Representations of Fine-Grained Visual '
                  'Descriptions, CVPR 2016.'),
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    # Everything is read and checked before any example is written.
    manual_dir = epath.Path(dl_manager.manual_dir)
    records = _read_records(manual_dir)
    train, test = _class_split(manual_dir, {r.key.split('/')[0] for r in records})
    splits = {'train': [], 'test': []}
    for r in records:
      class_dir = r.key.split('/')[0]
      if class_dir in train or class_dir in test:
        splits['train' if class_dir in train else 'test'].append(r)
    logging.info('CUB split: %d train, %d test images.',
                 len(splits['train']), len(splits['test']))
    return {name: self._generate_examples(rs) for name, rs in splits.items()}

  def _generate_examples(self, records: list[_Record]) -> Iterator[tuple[str, Mapping]]:
    for r in records:
      yield r.key, {
          'image': _cropped_jpeg(r),
          'captions': r.captions,
          'class_id': r.class_id,
          'key': r.key,
      }
