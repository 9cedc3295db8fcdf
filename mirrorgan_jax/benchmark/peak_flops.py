"""Peak FLOP/s of the devices a benchmark runs on: the denominator of utilisation.

Accelerators: the vendor's dense peak per chip for the compute dtype (no
sparsity), from the data sheets named below. CPUs have no data-sheet figure for
a VM's share of a chip, so the peak is derived:

  cores x clock x FLOPs per cycle per core,

with the cores this process may run on (`os.sched_getaffinity`), the clock the
kernel reports (`cpu MHz` in /proc/cpuinfo: the current, not the turbo, clock)
and, from the instruction-set flags, two fused multiply-add units per core
(2 FLOPs each) over the vector width: 16 float32 lanes with AVX-512, 8 with
AVX2 + FMA, 4 with SSE/NEON. Two FMA units is the upper case (some cores issue
one AVX-512 FMA per cycle), so the CPU figure is a ceiling and its utilisation
a lower bound. bfloat16 on CPU is counted at the float32 rate (XLA:CPU computes
it in float32 unless the core has AMX/AVX512-BF16, which is not assumed).
"""

import os

# Dense peak TFLOP/s per chip: (float32, bfloat16). NVIDIA: "FP32" and dense
# "BF16 Tensor Core" of the H100/H200 SXM and A100 SXM data sheets; Google: the
# Cloud TPU system-architecture pages (bf16; float32 runs as multi-pass bf16 and
# has no published peak, so None).
_ACCELERATOR_PEAK_TFLOPS = {
    'NVIDIA H200': (67.0, 989.0),
    'NVIDIA H100 80GB HBM3': (67.0, 989.0),
    'NVIDIA A100-SXM4-80GB': (19.5, 312.0),
    'NVIDIA A100-SXM4-40GB': (19.5, 312.0),
    'TPU v4': (None, 275.0),
    'TPU v5 lite': (None, 197.0),
    'TPU v5': (None, 459.0),
    'TPU v6 lite': (None, 918.0),
}
_CPU_LANES = (('avx512f', 16), ('avx2', 8), ('sse2', 4), ('asimd', 4))  # float32 lanes.
_FMA_UNITS = 2


def _cpuinfo() -> str:
  try:
    with open('/proc/cpuinfo') as f:
      return f.read()
  except OSError:
    return ''


def cpu_peak(cpuinfo: str | None = None, cores: int | None = None) -> tuple[float, str] | None:
  """(peak float32 FLOP/s, how it was derived) of this process's CPUs, or None.

  Args:
    cpuinfo: /proc/cpuinfo text (read when None).
    cores: usable cores (this process's affinity when None).
  """
  cpuinfo = _cpuinfo() if cpuinfo is None else cpuinfo
  cores = len(os.sched_getaffinity(0)) if cores is None else cores
  mhz = flags = None
  for line in cpuinfo.splitlines():
    key, _, value = line.partition(':')
    key = key.strip()
    if key == 'cpu MHz' and mhz is None:
      mhz = float(value)
    elif key in ('flags', 'Features') and flags is None:
      flags = set(value.split())
  if not mhz or not flags:
    return None
  lanes = next((n for flag, n in _CPU_LANES if flag in flags), 1)
  if lanes == 8 and 'fma' not in flags:
    lanes = 4  # AVX2 without FMA: one multiply and one add, as two half units.
  per_cycle = _FMA_UNITS * 2 * lanes
  peak = cores * mhz * 1e6 * per_cycle
  how = (f'{cores} cores x {mhz / 1e3:.2f} GHz x {per_cycle} float32 FLOPs/cycle '
         f'({_FMA_UNITS} FMA units x {lanes} lanes x 2)')
  return peak, how


def peak_flops(backend: str, device_kind: str, dtype: str,
               num_devices: int) -> tuple[float | None, str]:
  """(peak FLOP/s of all `num_devices` devices or None, how it was derived).

  Args:
    backend: `jax.default_backend()`: 'cpu', 'gpu' or 'tpu'.
    device_kind: `jax.devices()[0].device_kind`.
    dtype: compute dtype, 'float32' or 'bfloat16'.
    num_devices: devices the step runs on (CPU: one device for all cores).
  """
  if backend == 'cpu':
    found = cpu_peak()
    return found if found else (None, 'CPU clock or instruction set unreadable')
  peaks = _ACCELERATOR_PEAK_TFLOPS.get(device_kind)
  if peaks is None:
    return None, f'no data-sheet peak recorded for {device_kind!r}'
  tflops = peaks[0] if dtype == 'float32' else peaks[1]
  if tflops is None:
    return None, f'{device_kind} has no published {dtype} peak'
  return (num_devices * tflops * 1e12,
          f'{num_devices} x {tflops:g} TFLOP/s ({device_kind} data sheet, dense {dtype})')
