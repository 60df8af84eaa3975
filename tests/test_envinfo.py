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
    assert r["cpu_bf16"] == envinfo.cpu_has_bf16() and r["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    text = envinfo.format_report({"profile": "smoke", "packages": {"torch": "2.12.0"}})
    assert text.splitlines() == [f"{'profile':<28} smoke", "packages:", f"    {'torch':<24} 2.12.0"]


@pytest.mark.parametrize("avx512_bf16, amx, expected", [(False, False, False), (True, False, True), (False, True, True)])
def test_cpu_has_bf16_reads_avx512_bf16_or_amx(monkeypatch, avx512_bf16, amx, expected):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert envinfo.cpu_has_bf16() is expected


def test_cpu_has_bf16_is_false_where_torch_cannot_tell(monkeypatch):
    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.delattr(torch.cpu, name)
    assert envinfo.cpu_has_bf16() is False
