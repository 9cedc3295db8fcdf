"""COCO 2014 captions: the paper's COCO config (AttnGAN's coco_attn2 widths).

The authors shipped no COCO config; widths, batch and epochs follow AttnGAN's
`coco_attn2.yml` (ngf 48, ndf 96, 3 residual blocks, batch 14, 120 epochs), the
loss weights follow the MirrorGAN paper.
Variants: `configs/coco.py:smoke` (tiny widths, for tests on fixture data).
"""

from configs import common


def get_config(arg=None):
  """Returns the COCO config; `arg` may be 'smoke'."""
  c = common.get_base_config()
  c.data.name = 'coco2014_captions'
  c.data.captions_per_image = 5  # COCO: first 5 captions per image (ref).
  c.data.cache = False  # ~13 GB of JPEGs: read from disk each epoch.
  c.data.words_num = 18  # Paper L = 18 (AttnGAN COCO used 12).
  c.model.generator.ngf = 48  # AttnGAN COCO GF_DIM.
  c.model.generator.num_res_blocks = 3  # AttnGAN COCO R_NUM.
  c.model.discriminator.ndf = 96  # AttnGAN COCO DF_DIM.
  c.damsm.num_epochs = 100  # Released COCO DAMSM encoder is epoch 100.
  c.train.batch_size = 14  # AttnGAN COCO batch.
  c.train.num_epochs = 120  # AttnGAN COCO epochs.
  if common.parse_arg(arg).get('smoke'):
    common.apply_smoke(c)
  return c
