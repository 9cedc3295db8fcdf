"""PyTorch -> Flax weight converters (no torch needed: state dicts as numpy arrays).

GAN side (`gan_from_torch.py`): AttnGAN/MirrorGAN text encoder, CA, word attention, G stages,
G and Ds. Vision side (`vision_from_torch.py`): Inception-v3, the DAMSM image encoder,
ResNet-152 and the STREAM captioner. `python -m mirrorgan_jax.pretrained` turns
checkpoint files into artifacts (see `converters.py`).
"""

from mirrorgan_jax.pretrained.gan_from_torch import ca_from_torch
from mirrorgan_jax.pretrained.gan_from_torch import discriminator_from_torch
from mirrorgan_jax.pretrained.gan_from_torch import generator_from_torch
from mirrorgan_jax.pretrained.gan_from_torch import init_stage_from_torch
from mirrorgan_jax.pretrained.gan_from_torch import text_encoder_from_torch
from mirrorgan_jax.pretrained.gan_from_torch import word_attention_from_torch
from mirrorgan_jax.pretrained.vision_from_torch import captioner_from_torch
from mirrorgan_jax.pretrained.vision_from_torch import image_encoder_from_torch
from mirrorgan_jax.pretrained.vision_from_torch import inception_v3_from_torch
from mirrorgan_jax.pretrained.vision_from_torch import resnet152_from_torch

__all__ = [
    'ca_from_torch', 'captioner_from_torch', 'discriminator_from_torch',
    'generator_from_torch', 'image_encoder_from_torch', 'inception_v3_from_torch',
    'init_stage_from_torch', 'resnet152_from_torch', 'text_encoder_from_torch',
    'word_attention_from_torch',
]
