"""pybuild's benchmarks: one command (`bench/run`, `python -m bench`) measuring pybuild side by
side with docker BuildKit, buildah, runc/crun and the machine's floors.

Owns nothing importable by pybuild; pybuild never imports bench. Per-area scripts
(`bench/<area>_*.py`) live beside this package and are run on their own.
"""
