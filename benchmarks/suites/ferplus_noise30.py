"""FER+ with 30 % symmetric label noise (see ``_noise.py``)."""
from benchmarks.suites._noise import noise_suite

SUITE = noise_suite("ferplus_noise30", 0.3)
