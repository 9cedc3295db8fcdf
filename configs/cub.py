"""CUB-200-2011 birds with the Reed et al. captions: the paper's config.

Values follow the authors' `train_bird.yml` except lambda (paper 20, yaml 10).
Variants: `configs/cub.py:smoke` (tiny widths, for tests on fixture data).
"""

from configs import common


def get_config(arg=None):
  """Returns the CUB config; `arg` may be 'smoke'."""
  c = common.get_base_config()
  c.data.name = 'cub'
  c.data.captions_per_image = 10  # Reed et al.: 10 per image (ref).
  if common.parse_arg(arg).get('smoke'):
    common.apply_smoke(c)
  return c
