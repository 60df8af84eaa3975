"""The package's public names resolve lazily, and unknown names fail clearly."""
import pytest

import occ3d_lib


@pytest.mark.parametrize("name", occ3d_lib.__all__)
def test_every_export_resolves(name):
    assert getattr(occ3d_lib, name) is not None


def test_submodules_resolve_and_unknown_names_fail():
    assert occ3d_lib.core.metrics.landmark_me is occ3d_lib.landmark_me
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        occ3d_lib.nope
