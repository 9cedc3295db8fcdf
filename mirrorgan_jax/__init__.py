"""MirrorGAN-JAX: text-to-image generation by redescription, in JAX/Flax."""
