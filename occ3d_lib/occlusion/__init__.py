"""Synthetic occlusion: the kinds of the paper (DSOFI, DHOFI, SHOFI, full, random pattern), applying them, and
the fixed evaluation sets. Notebook 02 teaches it.

kinds (the taxonomy, fills, coverage ranges and the face region), shapes (occluder geometry and its
rasteriser), apply (:func:`occlude`, multi-occlusion sets, the training-time occluder, coverage
statistics), eval_sets (the fixed evaluation sets, built in one place and cached). The names below are
the package's public interface, so a notebook reads ``occlusion.occlude(...)``,
``occlusion.KINDS`` or ``occlusion.load_or_build_eval_sets(ctx)``.
"""
from __future__ import annotations

from occ3d_lib.occlusion.apply import (
    DEFAULT_TRAINING_MIX,
    OcclusionResult,
    TrainingOccluder,
    coverage_histograms,
    coverage_samples,
    multi_occlusion_set,
    occlude,
)
from occ3d_lib.occlusion.eval_sets import (
    EVAL_KINDS,
    EVAL_SET_VERSION,
    eval_indices,
    load_occlusion_set,
    load_or_build_eval_sets,
    make_eval_set,
    make_kind_sets,
    quantise,
    save_occlusion_set,
)
from occ3d_lib.occlusion.kinds import (
    COVERAGE_RANGES,
    FILL_DESCRIPTIONS,
    FILLS,
    FOREHEAD_FRACTION,
    KIND_DESCRIPTIONS,
    KINDS,
    MIXED_KINDS,
    MOPI_KINDS,
    NATURAL_KINDS,
    PARTIAL_KINDS,
    PATTERN_KINDS,
    PATTERN_TYPES,
    RANDOM_FILLS,
    SQUARE_KINDS,
    canonical_landmarks,
    face_boxes_from_landmarks,
    face_region_mask,
    kind_seed,
    kinds_table,
    landmarks_covered,
    landmarks_from_boxes,
    occlusion_coverage,
)

__all__ = [
    # kinds
    "COVERAGE_RANGES", "FILL_DESCRIPTIONS", "FILLS", "FOREHEAD_FRACTION", "KIND_DESCRIPTIONS", "KINDS",
    "MIXED_KINDS", "MOPI_KINDS", "NATURAL_KINDS", "PARTIAL_KINDS", "PATTERN_KINDS", "PATTERN_TYPES",
    "RANDOM_FILLS", "SQUARE_KINDS", "canonical_landmarks", "face_boxes_from_landmarks", "face_region_mask",
    "kind_seed", "kinds_table", "landmarks_covered", "landmarks_from_boxes", "occlusion_coverage",
    # apply
    "DEFAULT_TRAINING_MIX", "OcclusionResult", "TrainingOccluder", "coverage_histograms", "coverage_samples",
    "multi_occlusion_set", "occlude",
    # eval_sets
    "EVAL_KINDS", "EVAL_SET_VERSION", "eval_indices", "load_occlusion_set", "load_or_build_eval_sets",
    "make_eval_set", "make_kind_sets", "quantise", "save_occlusion_set",
]
