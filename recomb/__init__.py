"""recomb: distil, quantize and recombine reinforcement-learning Q-networks."""

import os

# Bit-identical results across x86 machines of one kind: pin the CPU kernel
# family and MKL's code path before torch is first imported.
os.environ.setdefault("ATEN_CPU_CAPABILITY", "avx2")
os.environ.setdefault("MKL_CBWR", "COMPATIBLE")

__version__ = "0.1.0"
