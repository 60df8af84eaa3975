"""The verdict thresholds: one definition of each, used everywhere a claim is judged.

Notebook 03 section 7 introduces them (:func:`thresholds_markdown`); notebook 03's claims
(:func:`occ3d_lib.evaluation.claims.sopi_claims`), notebook 05's verdicts and ``report.md``
(:func:`occ3d_lib.evaluation.report.verdicts`, :func:`~occ3d_lib.evaluation.report.write_report`)
and docs/results.md read them from here; ``tests/test_thresholds.py`` fails when a ratio is typed in elsewhere.
"""
from __future__ import annotations

#: "As precise as on unoccluded faces": occluded landmark ME <= AS_PRECISE x clean ME. The same factor
#: judges "comparable" (each of two errors within AS_PRECISE x the other).
AS_PRECISE: float = 1.25
#: "The teacher degrades under occlusion": its SHOFI landmark ME >= DEGRADES x its clean ME.
DEGRADES: float = 2.0
#: Our sanity check of the teacher (not a claim of the paper): clean ME <= LEARNED_SHAPE x the
#: mean face at the true pose, i.e. the teacher has learned shape, not only where the face is.
LEARNED_SHAPE: float = 1 / 3

#: The course profile's goals for the teacher on clean faces (not claims of the paper): landmark ME at
#: most COURSE_GOAL_ME x, and dense 3D error at most COURSE_GOAL_DENSE x, those of the mean face at the
#: true pose. Notebook 03 section 2 measures how far a class's CPU budget gets (the course study).
COURSE_GOAL_ME: float = 0.5
COURSE_GOAL_DENSE: float = 0.6
#: The course profile's goal for SOPI under the paper's squares (not a claim of the paper, whose "as
#: precise" is :data:`AS_PRECISE`): occluded landmark ME at most COURSE_GOAL_OCCLUDED x its clean ME under
#: DSOFI, DHOFI and SHOFI. Notebook 03 section 6 reads from the study how far the course's SOPI gets.
COURSE_GOAL_OCCLUDED: float = 1.5

#: The smallest difference that counts, per measure (its unit in :data:`MIN_EFFECT_UNITS`). A "better" or a
#: "degrades" whose difference of means is smaller is judged "too small to count", whatever its intervals say;
#: an "as precise" or a "comparable" whose difference is smaller holds, whatever the ratio of the two errors.
#: Landmark ME: half a pixel of the paper's 224 x 224 image, less than a landmark needs to land on another pixel.
#: Dense 3D error: the same half pixel on the face, which the camera puts about 1 m away (1 px at 224 is about
#: 1 mm there; notebook 03 section 7 converts the units). Histogram dissimilarity: 0.02 of its [0, 1] range,
#: above the ground truth's own value, which the 8-bit rounding of the images alone causes (the reference row
#: of notebook 05's histogram tables). Skin-tone spread (Fig. 3 as a number): one 8-bit level, the smallest
#: change a displayed image can show.
MIN_EFFECT: dict[str, float] = {"me": 0.5, "vertex_mm": 0.5, "hist": 0.02, "colour": 1.0}
MIN_EFFECT_UNITS: dict[str, str] = {"me": "px at 224", "vertex_mm": "mm", "hist": "(Hellinger distance)",
                                    "colour": "8-bit level"}

#: The sanity floor: a model whose clean landmark ME is above SANITY_ME x that of the mean face placed at the
#: true pose does not follow the input (a collapsed model, such as Table 7's perceptual-only MOPI, outputs
#: about one face for every input). No verdict in its favour counts: each is judged "fails the sanity floor".
SANITY_ME: float = 2.0


def thresholds_markdown() -> str:
    """The definitions of the verdict thresholds as a markdown list (notebook 03 section 7, report.md).

    Returns:
        A markdown str, one ``- **name**: definition`` item per line, with the values of this module.
    """
    effects = ", ".join(f"{MIN_EFFECT[k]:g} {MIN_EFFECT_UNITS[k]} of {name}" for k, name in
                        (("me", "landmark ME"), ("vertex_mm", "dense 3D error"), ("hist", "histogram dissimilarity"),
                         ("colour", "skin-tone spread")))
    return "\n".join([
        f"- **as precise as unoccluded**: occluded landmark ME at most {AS_PRECISE:g} x the same model's clean ME;",
        f"- **comparable**: each of the two errors at most {AS_PRECISE:g} x the other;",
        f"- **degrades under occlusion**: SHOFI landmark ME at least {DEGRADES:g} x clean ME;",
        f"- **has learned the shape** (our sanity check of the teacher, not a claim of the paper): clean ME at most "
        f"{LEARNED_SHAPE:.2f} x that of the mean face at the true pose;",
        "- **better**: a lower mean; 'holds' when the 95 % bootstrap intervals separate, 'holds, not significant' "
        "when they overlap;",
        f"- **minimum effect**: {effects}. A smaller difference is 'too small to count' for a 'better' or a "
        "'degrades', and no difference for an 'as precise' or a 'comparable';",
        f"- **sanity floor**: a model whose clean landmark ME is above {SANITY_ME:g} x that of the mean face at the "
        "true pose does not follow its input; a claim in its favour 'fails the sanity floor'.",
    ])


def min_effect(metric: str) -> float:
    """The minimum effect of a measure (:data:`MIN_EFFECT`; 'colour' is the skin-tone spread of Fig. 3).

    A measure without one (an MSE, a normal angle) has 0: every difference counts.

    Args:
        metric: a measure's name: a key of :data:`MIN_EFFECT` ("me", "vertex_mm", "hist", "colour") or any other.

    Returns:
        The minimum effect as a float, in the unit of :data:`MIN_EFFECT_UNITS`; 0.0 for a measure without one.
    """
    return float(MIN_EFFECT.get(metric, 0.0))


def effect_counts(a: float, b: float, metric: str) -> bool:
    """Whether the difference between two means ``a`` and ``b`` of ``metric`` reaches its minimum effect.

    Args:
        a: one mean of the measure.
        b: the other mean, same units.
        metric: the measure's name (:func:`min_effect`).

    Returns:
        True when ``|a - b| >= min_effect(metric)``.
    """
    return abs(float(a) - float(b)) >= min_effect(metric)


def passes_sanity_floor(clean_me: float | None, mean_face_clean_me: float | None) -> bool:
    """Whether a model with clean landmark ME ``clean_me`` follows its input: at most :data:`SANITY_ME` x the mean
    face's at the true pose. True when either number is unknown (nothing to judge with)."""
    if clean_me is None or mean_face_clean_me is None:
        return True
    return float(clean_me) <= SANITY_ME * float(mean_face_clean_me)
