"""Every random stream of a run derives from ``profile.seed``: the one table of offsets (notebook 00, "Profiles").

A stage that draws random numbers seeds its generator with ``profile.seed + SEED_OFFSETS[stream]``
(:func:`stream_seed`), so two stages never share a stream and one run seed reproduces everything.
The offsets are part of every cached result's identity (a training run's ``TrainConfig.seed``, the
faces of the evaluation sets): changing one retrains or rebuilds what depends on it.
"""
from __future__ import annotations

from collections.abc import Mapping

#: stream -> offset added to the run's seed.
#: ``teacher``: the teacher's initialisation and batches (notebook 03, section 2);
#: ``sopi``: SOPI's initialisation and batches (notebook 03, section 5);
#: ``sopi_occluder``: the occluders SOPI's training images get (notebook 03, section 5);
#: ``embedder``: the synthetic FaceNet's initialisation and identities (notebook 04, section 2);
#: ``mopi``: MOPI's initialisation, batches and Eq. 8 label pool (notebook 04, section 5);
#: ``eval_faces``: which test faces the fixed evaluation sets hold (notebook 02, section 9).
SEED_OFFSETS: Mapping[str, int] = {
    "teacher": 0, "sopi": 1, "sopi_occluder": 7, "embedder": 31, "mopi": 53, "eval_faces": 7919,
}


def stream_seed(seed: int, stream: str) -> int:
    """The seed of one random stream of a run: ``seed + SEED_OFFSETS[stream]``."""
    if stream not in SEED_OFFSETS:
        raise ValueError(f"unknown random stream {stream!r}; valid: {', '.join(SEED_OFFSETS)}")
    return int(seed) + SEED_OFFSETS[stream]
