"""A local web demo of a trained run: `python -m mirrorgan_jax.demo --workdir DIR`."""
