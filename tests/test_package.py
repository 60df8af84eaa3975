"""The package's exports are explicit (defined in occ3d_lib/__init__.py itself), subpackages resolve on first
use, and unknown names fail clearly."""
import pytest

import occ3d_lib


@pytest.mark.parametrize("name", occ3d_lib.__all__)
def test_every_export_is_defined_in_the_package(name):
    assert name in vars(occ3d_lib), f"{name} is listed in __all__ but not imported in occ3d_lib/__init__.py"
    assert getattr(occ3d_lib, name).__module__.startswith("occ3d_lib.")


def test_exports_are_the_entry_points_of_a_notebook():
    from occ3d_lib.core.artifacts import cache_dir
    from occ3d_lib.data.context import make_context

    assert occ3d_lib.make_context is make_context and occ3d_lib.cache_dir is cache_dir


def test_submodules_resolve_and_unknown_names_fail():
    from occ3d_lib.core.metrics import landmark_me

    assert occ3d_lib.core.metrics.landmark_me is landmark_me
    assert occ3d_lib.occlusion.occlude is occ3d_lib.occlusion.apply.occlude
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = occ3d_lib.nope
