"""Core: what every layer uses and nothing of the face.

config (profiles and config hashes), artifacts (atomic writes, caches, run folders), external (files
the user brings and where to download them), metrics (landmark, vertex and colour errors at 224 px),
viz (figures), progress (progress bars), envinfo (device and versions), params (notebook parameters),
thresholds (the verdicts' thresholds), seeds (the one table of random streams derived from the run's seed).
"""
