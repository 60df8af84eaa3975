"""One table of random-stream offsets: every stream of a run derives from its seed, no two share one."""
from __future__ import annotations

import pytest

from occ3d_lib.core.seeds import SEED_OFFSETS, stream_seed


def test_streams_are_the_seed_plus_their_offset_and_distinct():
    assert stream_seed(5, "teacher") == 5 and stream_seed(5, "mopi") == 58 and stream_seed(0, "eval_faces") == 7919
    assert len(set(SEED_OFFSETS.values())) == len(SEED_OFFSETS)
    # each stream's offset is the one its stage records in its cached results (see tests/test_recipe.py)
    assert SEED_OFFSETS["teacher"] == 0 and SEED_OFFSETS["sopi"] == 1 and SEED_OFFSETS["embedder"] == 31

def test_an_unknown_stream_is_one_line():
    with pytest.raises(ValueError, match=r"^unknown random stream 'teachr'; valid: teacher, sopi, "):
        stream_seed(0, "teachr")
