"""Evaluation metrics: R-precision, BLEU, Inception Score, FID, oracle accuracy."""
