"""Tiny raw CUB-200-2011 and COCO 2014 folders in the exact upstream layouts.

The builders' tests and the input-pipeline tests build TFDS datasets from them.
Every fact a test checks is a literal constant here (sizes, boxes, captions),
so expected values can be worked out by hand.

CUB images encode their own pixel coordinates: red = 3 * x, green = 3 * y, and
blue is 255 inside the bounding box, 0 outside (grayscale images hold 3 * x
only). A crop's offset is then readable from its pixels.
"""

import json
import pathlib

import numpy as np
from PIL import Image

# CUB: (image id, class id, key, (width, height), (x, y, w, h) bbox, grayscale).
CUB_IMAGES = (
    (1, 1, '001.Black_footed_Albatross/Black_Footed_Albatross_0046_18',
     (80, 60), (20.0, 10.0, 30.0, 20.0), False),
    (2, 1, '001.Black_footed_Albatross/Black_Footed_Albatross_0009_34',
     (64, 80), (5.0, 30.0, 40.0, 44.0), False),
    (3, 2, '002.Laysan_Albatross/Laysan_Albatross_0002_1027',
     (80, 80), (30.0, 30.0, 20.0, 20.0), False),
    (4, 2, '002.Laysan_Albatross/Laysan_Albatross_0003_1033',
     (72, 64), (11.0, 7.0, 25.0, 31.0), False),
    (5, 3, '003.Sooty_Albatross/Sooty_Albatross_0001_1071',
     (60, 60), (10.0, 12.0, 36.0, 30.0), True),
    (6, 3, '003.Sooty_Albatross/Sooty_Albatross_0002_796395',
     (80, 70), (40.0, 35.0, 30.0, 30.0), False),
)
CUB_CLASSES = ('001.Black_footed_Albatross', '002.Laysan_Albatross',
               '003.Sooty_Albatross')
CUB_TEST_CLASS = '003.Sooty_Albatross'  # What the fixture's testclasses.txt holds.

# The first image's caption file: blank lines, a U+FFFD pair, CRLF endings and
# 12 non-empty lines, of which the builder keeps the first 10.
CUB_FIRST_CAPTION_FILE = (
    'this bird has a white belly and black wings.\r\n'
    '\r\n'
    'a large bird with a long\ufffd\ufffdhooked bill.\r\n'
    '\r\n'
    '\r\n'
    + ''.join(f'line {i} about the albatross.\r\n' for i in range(3, 13)))


def _cub_caption_file(image_id: int, key: str) -> str:
  if image_id == 1:
    return CUB_FIRST_CAPTION_FILE
  return ''.join(f'caption {i} of {key}\n' for i in range(10))


def _cub_image(size: tuple[int, int], bbox, gray: bool) -> Image.Image:
  w, h = size
  x, y, bw, bh = (int(v) for v in bbox)
  rgb = np.zeros((h, w, 3), np.uint8)
  rgb[..., 0] = 3 * np.arange(w)[None, :]
  rgb[..., 1] = 3 * np.arange(h)[:, None]
  rgb[y:y + bh, x:x + bw, 2] = 255
  if gray:
    return Image.fromarray(rgb[..., 0])
  return Image.fromarray(rgb)


def _save_jpeg(image: Image.Image, path: pathlib.Path) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  image.save(path, format='JPEG', quality=100, subsampling=0)


def make_cub_manual_dir(root, *, split_files: bool = True,
                        text_dir: str = 'text') -> pathlib.Path:
  """Writes a CUB manual dir: CUB_200_2011/, captions, optional Reed split files.

  Args:
    root: an existing folder; the manual dir is created inside it.
    split_files: write trainvalclasses.txt (classes 001, 002) and testclasses.txt
      (CUB_TEST_CLASS); without them the builder's built-in split applies, which
      puts 001.Black_footed_Albatross in test and 002, 003 in train.
    text_dir: caption folder name, 'text' (AttnGAN) or 'text_c10' (Reed).

  Returns:
    The manual dir: 6 images (CUB_IMAGES), 10+ captions each.
  """
  manual = pathlib.Path(root) / 'cub_manual'
  cub = manual / 'CUB_200_2011'
  cub.mkdir(parents=True)
  images, boxes, labels = [], [], []
  for image_id, class_id, key, size, bbox, gray in CUB_IMAGES:
    _save_jpeg(_cub_image(size, bbox, gray), cub / 'images' / f'{key}.jpg')
    caption_path = manual / text_dir / f'{key}.txt'
    caption_path.parent.mkdir(parents=True, exist_ok=True)
    caption_path.write_bytes(_cub_caption_file(image_id, key).encode('utf-8'))
    images.append(f'{image_id} {key}.jpg\n')
    boxes.append(f'{image_id} ' + ' '.join(f'{v:.1f}' for v in bbox) + '\n')
    labels.append(f'{image_id} {class_id}\n')
  (cub / 'images.txt').write_text(''.join(images))
  (cub / 'bounding_boxes.txt').write_text(''.join(boxes))
  (cub / 'image_class_labels.txt').write_text(''.join(labels))
  (cub / 'classes.txt').write_text(
      ''.join(f'{i} {c}\n' for i, c in enumerate(CUB_CLASSES, start=1)))
  (cub / 'train_test_split.txt').write_text(
      ''.join(f'{im[0]} {im[0] % 2}\n' for im in CUB_IMAGES))
  if split_files:
    train = [c for c in CUB_CLASSES if c != CUB_TEST_CLASS]
    (manual / 'trainvalclasses.txt').write_text('\n'.join(train) + '\n')
    (manual / 'testclasses.txt').write_text(CUB_TEST_CLASS + '\n')
  return manual


# COCO: folder -> ((image id, (width, height), grayscale), ...).
COCO_IMAGES = {
    'train2014': ((9, (40, 30), False), (25, (32, 48), False), (30, (36, 36), False)),
    'val2014': ((42, (50, 40), False), (73, (30, 20), True)),
}
# Annotations in file order (image id, caption); ids 9 and 42 are interleaved,
# image 9 has 6 captions (the builder keeps the first 5).
COCO_CAPTIONS = {
    'train2014': (
        (9, 'A plate of food with broccoli.'), (25, 'A giraffe standing near a tree.'),
        (9, 'Broccoli and meat on a white plate.\n'), (30, 'A man riding a bike.'),
        (25, 'A tall giraffe in a zoo.'), (9, 'A healthy meal.'),
        (30, 'Someone cycling down a street.'), (25, 'An animal eating leaves.'),
        (9, 'Dinner is served.'), (30, 'A bicycle on a road.'),
        (25, 'A giraffe with spots.'), (9, 'Green vegetables on a dish.'),
        (30, 'A cyclist in a helmet.'), (25, 'A giraffe under the sun.'),
        (9, 'An extra sixth caption.'), (30, 'A person on a bicycle.'),
    ),
    'val2014': tuple((42, f'A cat on a sofa, number {i}.') for i in range(5))
               + tuple((73, f'An old gray photo, number {i}.') for i in range(5)),
}


def coco_file_name(folder: str, image_id: int) -> str:
  """The official file name, e.g. COCO_train2014_000000000009.jpg."""
  return f'COCO_{folder}_{image_id:012d}.jpg'


def make_coco_manual_dir(root) -> pathlib.Path:
  """Writes a COCO manual dir: train2014/, val2014/ and annotations/captions_*.json.

  Args:
    root: an existing folder; the manual dir is created inside it.

  Returns:
    The manual dir: COCO_IMAGES (image 73 grayscale) with COCO_CAPTIONS, plus one
    JPEG in train2014/ that no annotation lists (it must be ignored).
  """
  manual = pathlib.Path(root) / 'coco_manual'
  (manual / 'annotations').mkdir(parents=True)
  for folder, images in COCO_IMAGES.items():
    for image_id, (w, h), gray in images:
      y, x, c = np.mgrid[0:h, 0:w, 0:1 if gray else 3]
      # Smooth, so that different JPEG decoders (TF, PIL) agree closely.
      pixels = 128 + 100 * np.sin(x / 5 + image_id + 2 * c) * np.cos(y / 7)
      pixels = pixels.astype(np.uint8)
      image = Image.fromarray(pixels[..., 0] if gray else pixels)
      _save_jpeg(image, manual / folder / coco_file_name(folder, image_id))
    annotations = {
        'info': {'description': 'COCO 2014 Dataset', 'year': 2014},
        'licenses': [{'id': 1, 'name': 'fixture', 'url': ''}],
        'images': [{'license': 1, 'file_name': coco_file_name(folder, i),
                    'height': h, 'width': w, 'id': i,
                    'date_captured': '2013-11-14 16:28:13'}
                   for i, (w, h), _ in images],
        'annotations': [{'image_id': i, 'id': 1000 + n, 'caption': c}
                        for n, (i, c) in enumerate(COCO_CAPTIONS[folder])],
    }
    path = manual / 'annotations' / f'captions_{folder}.json'
    path.write_text(json.dumps(annotations))
  unlisted = manual / 'train2014' / coco_file_name('train2014', 5)
  _save_jpeg(Image.new('RGB', (8, 8)), unlisted)
  return manual
