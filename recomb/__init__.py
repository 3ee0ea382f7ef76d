"""recomb: distil, quantize and recombine reinforcement-learning Q-networks."""

from recomb import dispatch

# Before torch or numpy is first imported: see recomb/dispatch.py.
dispatch.pin()

__version__ = "0.1.0"
