"""The environment report of notebook 00 ("Your machine") and the device check of train_cli."""
from __future__ import annotations

import pytest
import torch

from occ3d_lib.core import envinfo


def test_package_versions_name_missing_distributions():
    v = envinfo.package_versions(("torch", "no-such-distribution-occ3d"))
    assert v["torch"].split("+")[0] == torch.__version__.split("+")[0]
    assert v["no-such-distribution-occ3d"] == "missing"


def test_check_device_accepts_cpu_and_refuses_in_one_line(monkeypatch):
    assert envinfo.check_device("cpu") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for bad, phrase in [("cuda", "CUDA is not available here"), ("cuda:0", "CUDA is not available here"),
                        ("gpu", "is not a torch device"), ("meta", "is not supported by the series")]:
        with pytest.raises(ValueError, match=phrase) as e:
            envinfo.check_device(bad)
        assert "\n" not in str(e.value) and repr(bad) in str(e.value)
    assert envinfo.best_device() in ("cpu", "mps")


def test_environment_report_reads_the_profile_and_formats_aligned():
    r = envinfo.environment_report("smoke")
    assert r["profile"] == "smoke" and r["torch_threads"] == torch.get_num_threads()
    assert set(r["packages"]) == set(envinfo._PACKAGES)
    text = envinfo.format_report({"profile": "smoke", "packages": {"torch": "2.12.0"}})
    assert text.splitlines() == [f"{'profile':<28} smoke", "packages:", f"    {'torch':<24} 2.12.0"]
