"""Benchmark: verifying a cached synthetic dataset's manifest vs loading the dataset.

Builds (or reuses, from ``$OCC3D_CACHE``) the profile's synthetic dataset and times, as medians
of a few repetitions in one run:
- load: ``datasets._load`` of the finished folder (memory-mapped images, arrays read);
- verify: ``artifacts.verify_dir`` (size and BLAKE2b of every file against MANIFEST.json),
  which ``load_or_build_synthetic`` adds to every load;
- read: the whole folder's bytes read once (what any hash must at least cost).
Prints the dataset size, the times and the verify / read ratio; no assertions.

Run: ``.venv/bin/python benchmarks/bench_artifacts.py [--profile smoke] [--reps 5]``.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import bench_args, median_time  # noqa: E402

from occ3d_lib.core import artifacts  # noqa: E402
from occ3d_lib.core.config import get_profile  # noqa: E402
from occ3d_lib.data import synthetic as datasets
from occ3d_lib.face.procedural import load_or_build_procedural  # noqa: E402


def _read_all(root: Path) -> int:
    n = 0
    for f in root.rglob("*"):
        if f.is_file():
            with open(f, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    n += len(chunk)
    return n


def main(argv: list[str] | None = None) -> None:
    a = bench_args(__doc__, argv)
    p = get_profile(a.profile)
    ds = datasets.load_or_build_synthetic(p, load_or_build_procedural(p.mesh), progress=False)
    root = ds.root
    size = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
    t_load = median_time(lambda: datasets._load(root), a.reps)
    t_verify = median_time(lambda: artifacts.verify_dir(root), a.reps)
    t_read = median_time(lambda: _read_all(root), a.reps)
    print(f"profile {p.name}: dataset {root.name}, {size / 2**20:.1f} MiB")
    print(f"load   {t_load * 1e3:8.1f} ms")
    print(f"verify {t_verify * 1e3:8.1f} ms  ({size / 2**20 / max(t_verify, 1e-9):.0f} MiB/s)")
    print(f"read   {t_read * 1e3:8.1f} ms  (verify / read = {t_verify / max(t_read, 1e-9):.2f})")


if __name__ == "__main__":
    main()
