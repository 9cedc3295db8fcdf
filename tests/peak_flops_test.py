"""Tests of `benchmark.peak_flops`: CPU peaks derived by hand, data-sheet peaks."""

import pytest

from mirrorgan_jax.benchmark import peak_flops

_AVX2 = 'processor\t: 0\ncpu MHz\t\t: 2000.000\nflags\t\t: fpu sse2 avx avx2 fma\n'


def test_cpu_peak_by_hand():
  peak, how = peak_flops.cpu_peak(_AVX2, cores=2)
  assert peak == 2 * 2.0e9 * (2 * 2 * 8)  # 2 cores, 2 GHz, 2 FMA x 8 lanes x 2.
  assert '2 cores' in how and '32 float32 FLOPs/cycle' in how
  peak512, _ = peak_flops.cpu_peak(_AVX2.replace('fma', 'fma avx512f'), cores=1)
  assert peak512 == 2.0e9 * 64
  peak_no_fma, _ = peak_flops.cpu_peak(_AVX2.replace(' fma', ''), cores=1)
  assert peak_no_fma == 2.0e9 * 16
  arm = 'processor\t: 0\ncpu MHz\t\t: 3000.0\nFeatures\t: fp asimd\n'
  assert peak_flops.cpu_peak(arm, cores=4)[0] == 4 * 3.0e9 * 16


def test_cpu_peak_unreadable():
  assert peak_flops.cpu_peak('', cores=2) is None
  assert peak_flops.cpu_peak('flags : avx2 fma\n', cores=2) is None  # No clock.


def test_accelerator_peaks_from_data_sheets():
  peak, how = peak_flops.peak_flops('gpu', 'NVIDIA H200', 'bfloat16', 8)
  assert peak == pytest.approx(8 * 989e12) and 'data sheet' in how
  assert peak_flops.peak_flops('gpu', 'NVIDIA H200', 'float32', 1)[0] == pytest.approx(67e12)
  assert peak_flops.peak_flops('tpu', 'TPU v4', 'float32', 4)[0] is None
  peak, how = peak_flops.peak_flops('gpu', 'Some GPU', 'float32', 1)
  assert peak is None and "'Some GPU'" in how


def test_this_cpu_has_a_peak():
  peak, how = peak_flops.peak_flops('cpu', 'cpu', 'float32', 1)
  assert peak is None or peak > 1e9, how
