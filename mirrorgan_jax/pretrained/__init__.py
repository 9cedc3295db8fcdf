"""PyTorch -> Flax weight converters (no torch needed: state dicts as numpy arrays).

GAN side (`gan.py`): AttnGAN/MirrorGAN text encoder, CA, word attention, G stages,
G and Ds. Vision side (`vision.py`): Inception-v3, the DAMSM image encoder,
ResNet-152 and the STREAM captioner. `python -m mirrorgan_jax.pretrained` turns
checkpoint files into artifacts (see `artifacts.py`).
"""

from mirrorgan_jax.pretrained.gan import ca_from_torch
from mirrorgan_jax.pretrained.gan import discriminator_from_torch
from mirrorgan_jax.pretrained.gan import generator_from_torch
from mirrorgan_jax.pretrained.gan import init_stage_from_torch
from mirrorgan_jax.pretrained.gan import text_encoder_from_torch
from mirrorgan_jax.pretrained.gan import word_attention_from_torch
from mirrorgan_jax.pretrained.vision import captioner_from_torch
from mirrorgan_jax.pretrained.vision import image_encoder_from_torch
from mirrorgan_jax.pretrained.vision import inception_v3_from_torch
from mirrorgan_jax.pretrained.vision import resnet152_from_torch

__all__ = [
    'ca_from_torch', 'captioner_from_torch', 'discriminator_from_torch',
    'generator_from_torch', 'image_encoder_from_torch', 'inception_v3_from_torch',
    'init_stage_from_torch', 'resnet152_from_torch', 'text_encoder_from_torch',
    'word_attention_from_torch',
]
