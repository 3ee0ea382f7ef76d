"""recomb: distil, quantize and recombine reinforcement-learning Q-networks."""

import os

# Bit-identical results across x86 machines with AVX2: pin the CPU kernel family and
# MKL's code path before torch is first imported (MKL_CBWR=COMPATIBLE would also do,
# but makes these small matrix products about 2.5x slower).
os.environ.setdefault("ATEN_CPU_CAPABILITY", "avx2")
os.environ.setdefault("MKL_CBWR", "AVX2")

__version__ = "0.1.0"
