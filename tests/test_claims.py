"""The one claims mechanism: Claim, the series' targets of notebook 03 and the markdown table."""
import pytest

from occ3d_lib.evaluation.claims import Claim, claims_markdown, sopi_claims


def _me(baseline=9.0, t_clean=2.0, t=(3.0, 4.0, 5.0), s_clean=2.2, s=(2.4, 2.6, 2.7)):
    kinds = ("dsofi", "dhofi", "shofi")
    return {"baseline": {"clean": baseline},
            "teacher": {"clean": t_clean, **dict(zip(kinds, t))},
            "sopi": {"clean": s_clean, **dict(zip(kinds, s))}}


def test_claims_all_hold_on_a_good_run():
    claims = sopi_claims(_me())
    assert len(claims) == 7 and all(isinstance(c, Claim) for c in claims)
    assert all(c.holds for c in claims), [c for c in claims if not c.holds]


@pytest.mark.parametrize("change, broken", [
    (dict(baseline=5.0), [0]),                  # teacher 2.0 > 5/3
    (dict(t=(3.0, 4.0, 3.9)), [1]),             # SHOFI 3.9 < 2 x 2.0
    (dict(s=(2.8, 2.6, 2.7)), [2]),             # DSOFI 2.8 > 1.25 x 2.2 = 2.75
    (dict(s=(2.4, 2.6, 5.5)), [4]),             # SHOFI 5.5 > teacher 5.0 (and > 2.75)
    (dict(s_clean=2.6, s=(2.4, 2.8, 3.0)), [5]),  # 2.6 > 1.25 x 2.0
    (dict(baseline=2.5), [0, 6]),               # DHOFI 2.6 above the mean face 2.5 (and teacher 2.0 > 2.5/3)
])
def test_each_claim_can_fail(change, broken):
    claims = sopi_claims(_me(**change))
    assert [i for i, c in enumerate(claims) if not c.holds] == broken
    assert "does not hold here" in claims_markdown(claims)


def test_a_difference_below_the_minimum_effect_does_not_count():
    # SOPI 0.3 px below the teacher on DSOFI: lower, but under the 0.5 px that counts
    claims = sopi_claims(_me(t=(2.7, 4.0, 5.0)))
    assert claims[2].verdict == "too small to count" and not claims[2].holds
    # a rise of 0.4 px from a clean ME of 1.0 (ratio 1.4) is still "as precise": the rise does not count
    assert sopi_claims(_me(s_clean=1.0, s=(1.4, 1.4, 1.4), t_clean=1.0))[2].holds
    # the teacher "degrades" 2x, from 0.2 to 0.45 px: a change too small to count
    assert sopi_claims(_me(t_clean=0.2, t=(3.0, 4.0, 0.45)))[1].verdict == "too small to count"


def test_a_collapsed_sopi_fails_the_sanity_floor():
    # SOPI at 20 px on every kind, the mean face at 4: nothing in SOPI's favour counts, however it compares
    claims = sopi_claims(_me(baseline=4.0, t_clean=1.0, t=(25.0, 30.0, 30.0), s_clean=20.0, s=(20.0, 20.0, 20.0)))
    assert [c.verdict for c in claims[2:5]] == ["fails the sanity floor"] * 3
    assert "fails the sanity floor" in claims_markdown(claims)


def test_claims_need_all_models():
    with pytest.raises(KeyError, match="baseline"):
        sopi_claims({"teacher": {}, "sopi": {}})


def test_claim_verdicts_are_checked_and_tabled():
    with pytest.raises(ValueError, match="verdict must be one of"):
        Claim("x", "", "1", "maybe")
    md = claims_markdown([Claim("a", "ME 1.24", "1.30", "holds, not significant"), Claim("b", "", "n/a", "not measured")])
    assert md.splitlines()[0] == "| claim | paper | ours | verdict |"
    assert "| a | ME 1.24 | 1.30 | **holds, not significant** |" in md
    assert claims_markdown(sopi_claims(_me())).splitlines()[0] == "| claim | ours | verdict |"
