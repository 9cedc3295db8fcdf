"""Tests of console.py: the progress line a person reads."""

from mirrorgan_jax.infra import console


def test_progress_line_rate_eta_and_key_metrics():
  metrics = {'g_loss': 51.2742, 'd_loss': 2.92611, 'caption_ce': 2.32804, 'kl': 0.2487,
             'acc/fake_cond/d16': 0.94, 'g_grad_norm': 179.5}
  # 750 steps left at 2 steps/s: 375 s = 6m15s.
  assert console.progress_line('gan', 500, 1250, 2.0, metrics) == (
      'gan 500/1250 (40%) 2.00 steps/s ETA 6m15s | g_loss 51.27 d_loss 2.926 '
      'caption_ce 2.328 kl 0.2487')
  assert console.progress_line('stream', 10, 20, 0.0, {'grad_norm': 1.0}) == (
      'stream 10/20 (50%) 0.00 steps/s ETA ?')
  # 7,200 steps left at 1 step/s: 2 h.
  assert console.progress_line('damsm', 800, 8000, 1.0, {'loss': 3.0}).endswith(
      'ETA 2h00m | loss 3')
