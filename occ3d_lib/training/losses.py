"""Loss functions: the teacher's (RNet's) own losses and the paper's Eqs. 6-9.

Pure functions on tensors, no state. Taught in:
- notebook 03 (teacher / SOPI distillation): :func:`teacher_losses` and its terms (RNet's weakly
  supervised losses, reference ``conventions_deep3d_bfm.md`` section 7), :func:`se_loss` (Eq. 6)
  and the Sec. 4.3.1 ablations :func:`l1_loss` and :func:`kl_loss` (a distribution-based loss) /
  :func:`distill_loss`;
- notebook 04 (MOPI): :func:`perceptual_similarity` / :func:`perceptual_loss` (Eq. 7),
  :func:`select_sopi_labels` / :func:`label_loss` (Eq. 8) and :func:`composite_loss` (Eq. 9),
  with the Table 7 ablation weights :data:`MOPI_ABLATIONS`.

Scalar losses are 0-d tensors. Images are ``(B, 3, S, S)`` in [0, 1]; landmarks ``(B, 68, 2)`` in
pixels of the ``S x S`` image (x = column, y = row); coefficients ``(B, 257)`` in RNet order.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from occ3d_lib.face.coeffs import N_COEFFS, SLICES, split_coeffs, validate_coeffs

REFERENCE_SIZE = 224
"""Image size at which RNet's landmark loss (and the paper's ME) are measured."""

N_LANDMARKS = 68


def _landmark_weights() -> Tensor:
    w = torch.ones(N_LANDMARKS, dtype=torch.float64)
    w[28:31] = 20.0  # nose bridge/tip (0-based 28-30)
    w[60:68] = 20.0  # inner mouth (0-based 60-67)
    return w


LANDMARK_WEIGHTS: Tensor = _landmark_weights()
"""(68,) float64: Deep3DFaceRecon's landmark weights, 20 for 0-based 28-30 and 60-67, else 1."""


# --------------------------------------------------------------------------- validation helpers
def _check_images(x: Tensor, name: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor (B, 3, S, S), got {type(x).__name__}")
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"{name} must have shape (B, 3, H, W), got {tuple(x.shape)}")


def _check_landmarks(x: Tensor, name: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor (B, 68, 2), got {type(x).__name__}")
    if x.ndim != 3 or x.shape[1:] != (N_LANDMARKS, 2):
        raise ValueError(f"{name} must have shape (B, 68, 2), got {tuple(x.shape)}")


def _same_shape(a: Tensor, b: Tensor, na: str, nb: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{na} and {nb} must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")


# --------------------------------------------------------------------------- RNet (teacher) losses
def photometric_loss(rendered: Tensor, target: Tensor, mask: Tensor, eps: float = 1e-6) -> Tensor:
    """RNet's photometric loss (docs/facts.md §7; notebook 03 section "Teacher").

    Per-pixel colour distance ``sqrt(eps + sum_c (rendered - target)^2)`` averaged over the mask:
    ``sum(dist * mask) / max(sum(mask), 1)``. rendered, target (B, 3, S, S); mask (B, 1, S, S)
    (float weights or bool; in RNet: skin attention x rendered face coverage). Unweighted
    (the 1.92 weight lives in :class:`RNetLossWeights`).
    """
    _check_images(rendered, "rendered")
    _check_images(target, "target")
    _same_shape(rendered, target, "rendered", "target")
    if mask.ndim != 4 or mask.shape[1] != 1 or mask.shape[0] != rendered.shape[0] or mask.shape[2:] != rendered.shape[2:]:
        raise ValueError(f"mask must have shape (B, 1, H, W) = {(rendered.shape[0], 1, *rendered.shape[2:])}, "
                         f"got {tuple(mask.shape)}")
    mask = mask.to(rendered.dtype)
    dist = torch.sqrt(eps + ((rendered - target) ** 2).sum(dim=1, keepdim=True))
    return (dist * mask).sum() / mask.sum().clamp(min=1.0)


def landmark_loss(pred: Tensor, gt: Tensor, image_size: int, weights: Tensor | None = None) -> Tensor:
    """RNet's weighted landmark loss (docs/facts.md §7; notebook 03).

    ``sum_{b,k} w_k |pred_bk - gt_bk|^2 / (B * 68)`` with both landmark sets first rescaled from
    pixels of an ``image_size`` image to pixels of a 224 x 224 image (multiplied by
    ``224 / image_size``), so the value and the reference weight 1.6e-3 do not depend on the
    profile's resolution. SOPI's landmark term uses it with the teacher's landmarks as ``gt``.

    Args:
        pred: predicted landmarks ``(B, 68, 2)`` in pixels of an ``image_size`` image.
        gt: the landmarks they are compared with ``(B, 68, 2)``, same pixels.
        image_size: the side of the image the landmarks are in.
        weights: per-landmark weights ``(68,)``; default :data:`LANDMARK_WEIGHTS`.

    Returns:
        A scalar tensor (differentiable w.r.t. ``pred``), unweighted by the 1.6e-3.
    """
    _check_landmarks(pred, "pred")
    _check_landmarks(gt, "gt")
    _same_shape(pred, gt, "pred", "gt")
    if not isinstance(image_size, int) or image_size <= 0:
        raise ValueError(f"image_size must be a positive int, got {image_size!r}")
    w = LANDMARK_WEIGHTS if weights is None else weights
    if w.shape != (N_LANDMARKS,):
        raise ValueError(f"weights must have shape (68,), got {tuple(w.shape)}")
    scale = REFERENCE_SIZE / image_size
    sq = (((pred - gt.to(pred.dtype)) * scale) ** 2).sum(dim=-1)  # (B, 68)
    return (sq * w.to(sq)).sum() / (pred.shape[0] * N_LANDMARKS)


def coeff_regularizer(coeffs: Tensor, w_id: float = 1.0, w_exp: float = 0.8, w_tex: float = 1.7e-2) -> Tensor:
    """RNet's coefficient prior (docs/facts.md §7): ``(w_id|id|^2 + w_exp|exp|^2 + w_tex|tex|^2) / B``.

    coeffs (B, 257). Unweighted by the 3e-4 of :class:`RNetLossWeights`.
    """
    c = split_coeffs(coeffs)
    total = w_id * (c.id ** 2).sum() + w_exp * (c.exp ** 2).sum() + w_tex * (c.tex ** 2).sum()
    return total / coeffs.shape[0]


def gamma_loss(coeffs: Tensor) -> Tensor:
    """RNet's monochromatic-light prior: mean squared deviation of gamma (B, 3, 9) from its RGB mean.

    coeffs (B, 257) -> scalar (docs/facts.md §7: "variance of gamma across RGB").
    """
    g = split_coeffs(coeffs).gamma.reshape(-1, 3, 9)
    return ((g - g.mean(dim=1, keepdim=True)) ** 2).mean()


def reflectance_loss(albedo: Tensor, skin_mask: Tensor) -> Tensor:
    """RNet's flat-skin-albedo prior: variance of the albedo over the skin vertices.

    ``sum_{b,n in skin} |K_bn - mean_skin(K_b)|^2 / (B * |skin|)``; albedo (B, N, 3) in [0, 1],
    skin_mask (N,) 0/1 (or weights).
    """
    if albedo.ndim != 3 or albedo.shape[2] != 3:
        raise ValueError(f"albedo must have shape (B, N, 3), got {tuple(albedo.shape)}")
    if skin_mask.shape != (albedo.shape[1],):
        raise ValueError(f"skin_mask must have shape (N,) = ({albedo.shape[1]},), got {tuple(skin_mask.shape)}")
    m = skin_mask.to(albedo).view(1, -1, 1)
    n_skin = m.sum()
    if float(n_skin) <= 0:
        raise ValueError("skin_mask selects no vertex")
    mean = (albedo * m).sum(dim=1, keepdim=True) / n_skin
    return (((albedo - mean) * m) ** 2).sum() / (albedo.shape[0] * n_skin)


def identity_loss(emb_pred: Tensor, emb_target: Tensor) -> Tensor:
    """RNet's perceptual identity loss ``mean_b (1 - cos(f_pred, f_target))``. (B, D) x2 -> scalar."""
    if emb_pred.ndim != 2:
        raise ValueError(f"embeddings must have shape (B, D), got {tuple(emb_pred.shape)}")
    _same_shape(emb_pred, emb_target, "emb_pred", "emb_target")
    return (1 - torch.nn.functional.cosine_similarity(emb_pred, emb_target, dim=1, eps=1e-8)).mean()


DEFAULT_COEFF_GROUP_WEIGHTS: dict[str, float] = {k: 1.0 for k in SLICES}


def coeff_supervision_loss(pred: Tensor, gt: Tensor, weights: Mapping[str, float] | None = None) -> Tensor:
    """Supervised coefficient loss for synthetic data (ground truth known; notebook 03).

    ``sum_g w_g * mean_{b, k in g} (pred - gt)^2`` over the groups ``id, exp, tex, angle, gamma,
    trans`` of :data:`occ3d_lib.face.coeffs.SLICES`; groups missing from ``weights`` get weight 0
    (``weights=None`` means every group with weight 1). pred, gt (B, 257) -> scalar.
    """
    validate_coeffs(pred, "pred")
    validate_coeffs(gt, "gt")
    _same_shape(pred, gt, "pred", "gt")
    weights = DEFAULT_COEFF_GROUP_WEIGHTS if weights is None else weights
    unknown = set(weights) - set(SLICES)
    if unknown:
        raise ValueError(f"unknown coefficient group(s) {sorted(unknown)}; valid: {list(SLICES)}")
    total = pred.new_zeros(())
    for k, w in weights.items():
        if w:
            s = SLICES[k]
            total = total + float(w) * ((pred[:, s] - gt[:, s].to(pred)) ** 2).mean()
    return total


def shape_supervision_loss(pred_shape: Tensor, gt_shape: Tensor, mm_per_unit: float = 100.0) -> Tensor:
    """Dense shape supervision for synthetic data: mean squared per-vertex distance in mm^2.

    pred_shape, gt_shape (B, N, 3) unposed meshes (identity + expression, Eq. 3) in model units
    (1 unit = 100 mm) -> scalar. The square of what :func:`occ3d_lib.core.metrics.vertex_error` averages,
    so minimising it targets the dense 3D error directly: a coefficient error counts by how far it
    moves the surface, not by its index (notebook 03, section 2).
    """
    if pred_shape.ndim != 3 or pred_shape.shape[-1] != 3:
        raise ValueError(f"pred_shape must have shape (B, N, 3), got {tuple(pred_shape.shape)}")
    _same_shape(pred_shape, gt_shape, "pred_shape", "gt_shape")
    d = (pred_shape - gt_shape.to(pred_shape)) * mm_per_unit
    return (d ** 2).sum(-1).mean()


@dataclass(frozen=True)
class RNetLossWeights:
    """The teacher's loss weights (Deep3DFaceRecon defaults, docs/facts.md §7)."""

    photo: float = 1.92
    landmark: float = 1.6e-3
    reg: float = 3e-4
    gamma: float = 10.0
    reflectance: float = 5.0
    identity: float = 0.2


def teacher_losses(out, images: Tensor, gt_landmarks: Tensor, coeffs: Tensor, skin_mask: Tensor,
                   weights: RNetLossWeights = RNetLossWeights(), gt_coeffs: Tensor | None = None,
                   coeff_weight: float = 0.0, attention: Tensor | None = None,
                   coeff_group_weights: Mapping[str, float] | None = None,
                   emb_pred: Tensor | None = None, emb_target: Tensor | None = None,
                   gt_shape: Tensor | None = None, shape_weight: float = 0.0) -> dict[str, Tensor]:
    """All of RNet's training losses for one batch (docs/facts.md §7; notebook 03).

    out: :class:`occ3d_lib.render.renderer.RenderOutput` of ``coeffs`` (uses ``face``, ``mask``,
    ``landmarks``, ``albedo``); images (B, 3, S, S) targets in [0, 1]; gt_landmarks (B, 68, 2)
    pixels at S; coeffs (B, 257) the prediction; skin_mask (N,) vertex skin mask; attention
    optional (B, 1, S, S) skin attention multiplied into the photometric mask (RNet's mask is
    attention x rendered coverage; the coverage is detached as in RNet). If ``gt_coeffs`` is
    given and ``coeff_weight > 0``, adds ``coeff_weight * coeff_supervision_loss``; if ``gt_shape``
    (B, N, 3) is given and ``shape_weight > 0``, adds ``shape_weight * shape_supervision_loss`` on
    ``out.shape``; if both embeddings are given, adds the identity term.

    Returns the WEIGHTED terms ``photo, landmark, reg, gamma, reflectance`` (+ ``coeff``, ``shape``,
    ``identity`` when used) and ``total`` = their sum.
    """
    _check_images(images, "images")
    s = images.shape[-1]
    mask = out.mask.detach()
    if attention is not None:
        mask = mask * attention.to(mask)
    terms = {
        "photo": weights.photo * photometric_loss(out.face, images.to(out.face.dtype), mask),
        "landmark": weights.landmark * landmark_loss(out.landmarks, gt_landmarks, s),
        "reg": weights.reg * coeff_regularizer(coeffs),
        "gamma": weights.gamma * gamma_loss(coeffs),
        "reflectance": weights.reflectance * reflectance_loss(out.albedo, skin_mask),
    }
    if gt_coeffs is not None and coeff_weight > 0:
        terms["coeff"] = coeff_weight * coeff_supervision_loss(coeffs, gt_coeffs, coeff_group_weights)
    if gt_shape is not None and shape_weight > 0:
        terms["shape"] = shape_weight * shape_supervision_loss(out.shape, gt_shape)
    if emb_pred is not None and emb_target is not None:
        terms["identity"] = weights.identity * identity_loss(emb_pred, emb_target)
    dtype = out.face.dtype
    terms = {k: v.to(dtype) for k, v in terms.items()}
    terms["total"] = torch.stack(list(terms.values())).sum()
    return terms


def geometric_teacher_losses(landmarks: Tensor, shape: Tensor, gt_landmarks: Tensor, coeffs: Tensor, image_size: int,
                             weights: RNetLossWeights = RNetLossWeights(), gt_coeffs: Tensor | None = None,
                             coeff_weight: float = 0.0, coeff_group_weights: Mapping[str, float] | None = None,
                             gt_shape: Tensor | None = None, shape_weight: float = 0.0) -> dict[str, Tensor]:
    """The teacher's terms that need no rasterised image (notebook 03, section 2).

    RNet's landmark loss on the projected landmarks (B, 68, 2) and its coefficient and gamma priors,
    plus the optional coefficient supervision and dense shape supervision (``shape`` (B, N, 3), the
    unposed prediction) of :func:`teacher_losses`; the photometric and reflectance terms are left
    out. Returns the weighted terms and ``total``, like :func:`teacher_losses`.
    """
    terms = {
        "landmark": weights.landmark * landmark_loss(landmarks, gt_landmarks, image_size),
        "reg": weights.reg * coeff_regularizer(coeffs),
        "gamma": weights.gamma * gamma_loss(coeffs),
    }
    if gt_coeffs is not None and coeff_weight > 0:
        terms["coeff"] = coeff_weight * coeff_supervision_loss(coeffs, gt_coeffs, coeff_group_weights)
    if gt_shape is not None and shape_weight > 0:
        terms["shape"] = shape_weight * shape_supervision_loss(shape, gt_shape)
    dtype = landmarks.dtype
    terms = {k: v.to(dtype) for k, v in terms.items()}
    terms["total"] = torch.stack(list(terms.values())).sum()
    return terms


# --------------------------------------------------------------------------- SOPI distillation (Eq. 6)
def se_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Eq. 6 squared-error loss: ``mean_b (1/M) sum_m (v_u - v)_m^2`` with M = 257 (notebook 03).

    Args:
        pred: the trainee's coefficients v ``(B, 257)``.
        target: the trainer's coefficients v_u ``(B, 257)``.

    Returns:
        A scalar tensor (differentiable w.r.t. ``pred``).
    """
    validate_coeffs(pred, "pred")
    validate_coeffs(target, "target")
    _same_shape(pred, target, "pred", "target")
    return ((target.to(pred) - pred) ** 2).mean(dim=1).mean()


def l1_loss(pred: Tensor, target: Tensor) -> Tensor:
    """L1 distillation loss of the Fig. 6 ablation: ``mean_b (1/M) sum_m |v_u - v|_m``.

    Args:
        pred: the trainee's coefficients v ``(B, 257)``.
        target: the trainer's coefficients v_u ``(B, 257)``.

    Returns:
        A scalar tensor.
    """
    validate_coeffs(pred, "pred")
    validate_coeffs(target, "target")
    _same_shape(pred, target, "pred", "target")
    return (target.to(pred) - pred).abs().mean(dim=1).mean()


def kl_loss(pred: Tensor, target: Tensor, temperature: float = 1.0) -> Tensor:
    """A distribution-based distillation loss, the kind Sec. 4.3.1 finds unsuitable (notebook 03, section 8).

    Each coefficient group of :data:`~occ3d_lib.face.coeffs.SLICES` (identity, expression, albedo, angles,
    light, translation) is turned into a distribution by a softmax at ``temperature``, as soft-target
    distillation (Hinton et al.) does with class scores, and the loss is ``sum_g KL(softmax(v_u,g / T) ||
    softmax(v_g / T))``, averaged over the batch. A softmax does not change when one constant is added to
    every entry of a group, so this loss cannot see such a shift: a head pose, a translation or a skin tone
    moved as a whole costs nothing.

    Args:
        pred: the trainee's coefficients v ``(B, 257)``.
        target: the trainer's coefficients v_u ``(B, 257)``.
        temperature: the softmax temperature T (> 0).

    Returns:
        A scalar tensor.
    """
    validate_coeffs(pred, "pred")
    validate_coeffs(target, "target")
    _same_shape(pred, target, "pred", "target")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    t = target.to(pred)
    total = pred.new_zeros(())
    for sl in SLICES.values():
        log_q = torch.log_softmax(pred[:, sl] / temperature, dim=1)
        log_p = torch.log_softmax(t[:, sl] / temperature, dim=1)
        total = total + (log_p.exp() * (log_p - log_q)).sum(dim=1).mean()
    return total


DISTILL_LOSSES = ("se", "l1", "kl")


def distill_loss(pred: Tensor, target: Tensor, kind: str = "se") -> Tensor:
    """The SOPI distillation loss by name: ``"se"`` (Eq. 6, the paper's), ``"l1"`` (Fig. 6 ablation) or ``"kl"``
    (a distribution-based loss, :func:`kl_loss`; Sec. 4.3.1 finds such losses unsuitable)."""
    if kind == "se":
        return se_loss(pred, target)
    if kind == "l1":
        return l1_loss(pred, target)
    if kind == "kl":
        return kl_loss(pred, target)
    raise ValueError(f"unknown distillation loss {kind!r}; valid: {list(DISTILL_LOSSES)}")


# --------------------------------------------------------------------------- MOPI (Eqs. 7-9)
def _check_emb(emb: Tensor) -> None:
    if not isinstance(emb, Tensor):
        raise TypeError(f"emb must be a torch.Tensor (B, W, D), got {type(emb).__name__}")
    if emb.ndim != 3 or emb.shape[1] < 1 or emb.shape[2] < 1:
        raise ValueError(f"emb must have shape (B, W, D) (W = 7 projected faces per identity), got {tuple(emb.shape)}")


def perceptual_similarity(emb: Tensor) -> Tensor:
    """Eq. 7 exactly as printed: ``sum_{q,q'} (chi chi^T)_{qq'} / (||chi||_{2,1} ||chi^T||_{2,1})``.

    chi (W x D, W = 7) stacks the FaceNet embeddings of one identity's W projected faces as rows.
    The numerator, the sum of all Gram entries, equals ``||sum_q f_q||^2``. The L2,1 norm of a
    matrix sums the L2 norms of its columns (or of its rows, in the feature-selection convention:
    the product of the two norms is the same either way), so the denominator is
    ``(sum_q ||f_q||) * (sum_d ||chi[:, d]||)``. emb (B, W, D) -> (B,).

    Caveat (why :func:`perceptual_loss` does not use this value directly): the column term depends
    on the embedding's direction in R^D, so even W identical rows f give
    ``sqrt(W) ||f||_2 / ||f||_1``, which is not a constant maximum.
    """
    _check_emb(emb)
    num = emb.sum(dim=1).pow(2).sum(dim=1)  # sum of all entries of chi chi^T
    row_l21 = torch.linalg.vector_norm(emb, dim=2).sum(dim=1)  # sum_q ||f_q||
    col_l21 = torch.linalg.vector_norm(emb, dim=1).sum(dim=1)  # sum_d ||chi[:, d]||
    return num / (row_l21 * col_l21).clamp(min=1e-12)


def normalized_perceptual_similarity(emb: Tensor) -> Tensor:
    """Eq. 7 with both norms taken over the rows: ``||sum_q f_q||^2 / (sum_q ||f_q||)^2`` in [0, 1].

    Equals 1 exactly when all W embeddings point the same way (identical faces to FaceNet) and
    1/W for mutually orthogonal ones; for unit embeddings it is the mean pairwise cosine
    similarity over all W^2 ordered pairs (diagonal included). emb (B, W, D) -> (B,).
    """
    _check_emb(emb)
    num = emb.sum(dim=1).pow(2).sum(dim=1)
    row_l21 = torch.linalg.vector_norm(emb, dim=2).sum(dim=1)
    return num / row_l21.pow(2).clamp(min=1e-12)


def perceptual_loss(emb: Tensor) -> Tensor:
    """Eq. 7 as a loss to minimise: ``mean_b (1 - normalized_perceptual_similarity(emb_b))`` (notebook 04).

    Interpretation: Eq. 7 is printed as a similarity (Gram sum over the product of L2,1 norms)
    although it is called a loss; the paper wants the W projected faces of one identity to look
    alike to FaceNet, so we minimise one minus the similarity, normalised so that identical rows
    give exactly 0 (see :func:`perceptual_similarity` for why the printed denominator is not used
    as is). Range [0, 1 - 1/W] for non-negative cosines; invariant to row order and to the scale
    of each row.

    Args:
        emb: FaceNet embeddings ``(B, W, D)`` of the W projected faces of each of B identities.

    Returns:
        A scalar tensor.
    """
    return (1 - normalized_perceptual_similarity(emb)).mean()


def cosine_distance(a: Tensor, b: Tensor) -> Tensor:
    """``1 - <a, b> / (|a| |b|)`` along the last dimension (Eq. 8's selection criterion).

    Args:
        a: vectors ``(..., D)``.
        b: vectors ``(..., D)``, broadcastable with ``a``.

    Returns:
        ``(...)`` distances in [0, 2].
    """
    return 1 - torch.nn.functional.cosine_similarity(a, b, dim=-1, eps=1e-8)


def sopi_label_index(sopi_emb: Tensor, clean_emb: Tensor) -> Tensor:
    """Eq. 8 selection: for each identity the i minimising ``1 - cos(f_s^i, f)``.

    Ties go to the lowest index.

    Args:
        sopi_emb: ``(B, W, D)`` embeddings f_s^i of the renders of SOPI's W predictions.
        clean_emb: ``(B, D)`` embedding f of each unoccluded image.

    Returns:
        ``(B,)`` long indices in [0, W).
    """
    _check_emb(sopi_emb)
    if clean_emb.ndim != 2 or clean_emb.shape != (sopi_emb.shape[0], sopi_emb.shape[2]):
        raise ValueError(f"clean_emb must have shape (B, D) = {(sopi_emb.shape[0], sopi_emb.shape[2])}, "
                         f"got {tuple(clean_emb.shape)}")
    d = cosine_distance(sopi_emb, clean_emb.unsqueeze(1).to(sopi_emb))  # (B, W)
    return d.argmin(dim=1)


def select_sopi_labels(sopi_coeffs: Tensor, sopi_emb: Tensor, clean_emb: Tensor) -> Tensor:
    """Eq. 8 label ``v_s^i``: the SOPI prediction whose render is closest to the clean image (notebook 04).

    Args:
        sopi_coeffs: ``(B, W, 257)`` SOPI predictions for the W occluded variants.
        sopi_emb: ``(B, W, D)`` FaceNet embeddings of their renders.
        clean_emb: ``(B, D)`` embedding of the unoccluded image.

    Returns:
        ``(B, 257)`` (a gather: detach it, or pass a frozen SOPI's output, to use it as a target).
    """
    if sopi_coeffs.ndim != 3 or sopi_coeffs.shape[2] != N_COEFFS:
        raise ValueError(f"sopi_coeffs must have shape (B, W, {N_COEFFS}), got {tuple(sopi_coeffs.shape)}")
    if sopi_coeffs.shape[:2] != sopi_emb.shape[:2]:
        raise ValueError(f"sopi_coeffs {tuple(sopi_coeffs.shape)} and sopi_emb {tuple(sopi_emb.shape)} "
                         "must agree in (B, W)")
    idx = sopi_label_index(sopi_emb, clean_emb)
    return sopi_coeffs[torch.arange(sopi_coeffs.shape[0], device=idx.device), idx]


def label_loss(mopi: Tensor, label: Tensor) -> Tensor:
    """Eq. 8 label loss ``L_label = sum_{j=1}^{W} ||v_s^i - v_m^j||_2``, averaged over the batch (notebook 04).

    mopi (B, W, 257) the W heads' predictions; label (B, 257) from :func:`select_sopi_labels`.
    """
    if mopi.ndim != 3 or mopi.shape[2] != N_COEFFS:
        raise ValueError(f"mopi must have shape (B, W, {N_COEFFS}), got {tuple(mopi.shape)}")
    if label.shape != (mopi.shape[0], N_COEFFS):
        raise ValueError(f"label must have shape (B, {N_COEFFS}) = {(mopi.shape[0], N_COEFFS)}, got {tuple(label.shape)}")
    d = torch.linalg.vector_norm(mopi - label.unsqueeze(1).to(mopi), dim=2)  # (B, W)
    return d.sum(dim=1).mean()


def composite_loss(perceptual: Tensor, label: Tensor, x1: float = 0.2, x2: float = 0.8) -> Tensor:
    """Eq. 9 composite multi-occlusion loss ``L = x1 L_perc + x2 L_label`` (notebook 04)."""
    if x1 < 0 or x2 < 0:
        raise ValueError(f"loss weights must be non-negative, got x1={x1}, x2={x2}")
    return x1 * perceptual + x2 * label


MOPI_ABLATIONS: dict[str, tuple[float, float]] = {"both": (0.2, 0.8), "perceptual": (1.0, 0.0), "label": (0.0, 1.0)}
"""Table 7 rows: (x1, x2) weights of Eq. 9 for the full loss and each term alone."""
