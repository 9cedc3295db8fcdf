"""The four training phases (DAMSM, STREAM, oracle, GAN), their losses and the
shared runner. Nothing outside `phases/` and `main.py` imports this package."""
