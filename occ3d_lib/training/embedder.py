"""FaceNet embedder: identity embeddings for the MOPI losses (paper Sec. 3.2.2, Eqs. 7-8), 512-d as
facenet-pytorch's ``InceptionResnetV1`` gives them (the FaceNet paper, Schroff et al. 2015, uses 128-d).

Taught in notebook 04, section 2 ("FaceNet embeddings and cosine distance"). The paper uses a
pre-trained FaceNet [34] to compare faces: Eq. 7 compares the renders of the 7 predictions of
one identity, Eq. 8 picks the SOPI prediction whose render is closest (cosine distance) to the
clean image. :class:`FaceEmbedder` wraps facenet-pytorch's ``InceptionResnetV1`` and does the
package's own preprocessing, so the same object serves both tracks:

- real track (``facenet='vggface2'`` or ``'casia-webface'``): the published weights, read from
  ``$TORCH_HOME/checkpoints/<file>`` (docs/facts.md §9; never downloaded here);
- embedded default (``facenet='synthetic'``): an ``InceptionResnetV1`` trained here on
  synthetic identities (identity = identity + albedo coefficients; views vary expression, pose,
  light, background and occlusion) with a metric-learning loss, cached under
  ``ctx.stage_dir('embedder', ...)`` through the shared :class:`occ3d_lib.training.train.Trainer`.

Why a metric-learning loss instead of facenet-pytorch's classification head: identities are
drawn fresh from the face model's prior at every step (an unbounded number of classes, so no
identity is ever seen twice and nothing can be memorised), and the quantity MOPI consumes is
the cosine similarity between embeddings, which is exactly what a supervised contrastive loss
(Khosla et al. 2020) on L2-normalised embeddings optimises. A softmax head over a fixed set of
training identities would need many more steps to make its *embedding* generalise.

Input: images ``(B, 3, H, W)`` in [0, 1]. They are resized (bilinear) to the embedder's input
size and standardised like ``facenet_pytorch.fixed_image_standardization``:
``(x * 255 - 127.5) / 128``. Output: ``(B, 512)`` unit vectors.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from occ3d_lib.core.external import FACENET_WEIGHTS
from occ3d_lib.core.seeds import SEED_OFFSETS
from occ3d_lib.data.context import Context
from occ3d_lib.data.synthetic import random_backgrounds, sample_identities, sample_views
from occ3d_lib.nets import pretrained
from occ3d_lib.nets.facenet import MIN_INPUT_SIZE, FaceEmbedder, embed_images, load_pretrained_embedder
from occ3d_lib.nets.models import freeze, seeded
from occ3d_lib.occlusion.apply import occlude
from occ3d_lib.occlusion.kinds import PARTIAL_KINDS
from occ3d_lib.render.renderer import RENDER_VERSION, FaceRenderer
from occ3d_lib.training import distributed
from occ3d_lib.training.recipe import fit_stage, stage_config
from occ3d_lib.training.train import TrainConfig


# ---------------------------------------------------------------------------------- metric learning
def supervised_contrastive_loss(emb: Tensor, labels: Tensor, temperature: float = 0.1) -> Tensor:
    """Supervised contrastive loss (Khosla et al. 2020) on unit embeddings; notebook 04, section 2.

    For each anchor i with at least one positive:
    ``-mean_{p: y_p = y_i, p != i} log( exp(s_ip / T) / sum_{a != i} exp(s_ia / T) )`` with
    ``s = emb emb^T`` (cosines); averaged over those anchors. emb (N, D) unit rows, labels (N,)
    int -> scalar. Minimised when views of one identity coincide and identities are far apart.
    """
    if emb.ndim != 2 or labels.shape != (emb.shape[0],):
        raise ValueError(f"emb must be (N, D) and labels (N,), got {tuple(emb.shape)} and {tuple(labels.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    n = emb.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=emb.device)
    logits = (emb @ emb.T) / temperature
    logits = logits.masked_fill(eye, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    pos = (labels[:, None] == labels[None, :]) & ~eye
    n_pos = pos.sum(1)
    has = n_pos > 0
    if not bool(has.any()):
        raise ValueError("supervised_contrastive_loss needs at least two samples with the same label")
    per_anchor = -(log_prob.masked_fill(~pos, 0.0)).sum(1)[has] / n_pos[has]
    return per_anchor.mean()


@dataclass(frozen=True)
class EmbedderSettings:
    """How the synthetic FaceNet is trained (notebook 04, section 2). Steps/batch/size come from the profile.

    ``views`` views per identity in a batch (batch = P identities x ``views``); ``black_background``
    the fraction of views rendered on black (as the renders of predictions in Eqs. 7-8 are);
    ``occluded`` the fraction of views occluded by a random partial occluder (random fill).
    """

    views: int = 4
    temperature: float = 0.1
    lr: float = 1e-3
    lr_final_fraction: float = 0.02  # cosine decay (TrainConfig.schedule) to this fraction at the last step
    black_background: float = 0.3
    occluded: float = 0.1  # MOPI only embeds clean images and renders; a little occlusion for robustness
    occlusion_fill: str = "random"
    dropout_prob: float = 0.0
    input_size: int | None = None  # None: max(profile.embedder_image_size, MIN_INPUT_SIZE)
    seed_offset: int = SEED_OFFSETS["embedder"]

    def __post_init__(self) -> None:
        if self.views < 2:
            raise ValueError(f"views must be >= 2 (positives are needed), got {self.views}")
        for k in ("black_background", "occluded", "lr_final_fraction"):
            if not 0 <= getattr(self, k) <= 1:
                raise ValueError(f"{k} must be in [0, 1], got {getattr(self, k)}")


def embedder_input_size(profile: Any, settings: EmbedderSettings = EmbedderSettings()) -> int:
    """The synthetic embedder's input size: ``settings.input_size`` or max(profile's, 80)."""
    return settings.input_size or max(int(profile.embedder_image_size), MIN_INPUT_SIZE)


def synthetic_identity_batch_fn(face_model: Any, image_size: int, batch_size: int,
                                settings: EmbedderSettings = EmbedderSettings(),
                                renderer: Any | None = None) -> Callable[[int, torch.Generator], dict[str, Tensor]]:
    """``batch_fn`` for :class:`Trainer`: fresh identities, ``settings.views`` views each.

    Each call draws ``P = batch_size // views`` identities (identity + albedo coefficients,
    :func:`occ3d_lib.data.synthetic.sample_identities`), one random view per slot
    (:func:`~occ3d_lib.data.synthetic.sample_views`: expression, pose, light), a random background
    (black for a ``black_background`` fraction), renders at ``image_size`` and occludes an
    ``occluded`` fraction with a random partial occluder. Returns ``image (P*V, 3, S, S)``,
    ``label (P*V,)`` (0..P-1, views adjacent). Everything comes from the generator passed in.
    """
    p = batch_size // settings.views
    if p < 2:
        raise ValueError(f"batch_size {batch_size} must hold at least 2 identities x {settings.views} views")
    rend = renderer if renderer is not None else FaceRenderer(face_model, image_size)
    if rend.image_size != image_size:
        raise ValueError(f"renderer image_size {rend.image_size} != image_size {image_size}")
    n = p * settings.views

    def batch_fn(step: int, g: torch.Generator) -> dict[str, Tensor]:
        ids, tex = sample_identities(p, face_model, g)
        coeffs = sample_views(ids.repeat_interleave(settings.views, 0), tex.repeat_interleave(settings.views, 0),
                              face_model, g)
        bg = random_backgrounds(n, image_size, g)
        black = torch.rand(n, generator=g) < settings.black_background
        bg[black] = 0.0
        with torch.no_grad():
            out = rend(coeffs.to(face_model.dtype), bg.to(face_model.dtype))
        images = out.image.float().clamp(0, 1)
        occ = torch.rand(n, generator=g) < settings.occluded
        pick = torch.randint(len(PARTIAL_KINDS), (n,), generator=g).tolist()
        kinds = [PARTIAL_KINDS[k] if o else "none" for o, k in zip(occ.tolist(), pick)]
        if any(k != "none" for k in kinds):
            images = occlude(images, kinds, g, landmarks=out.landmarks.float(), fill=settings.occlusion_fill).images
        return {"image": images.contiguous(), "label": torch.arange(p).repeat_interleave(settings.views)}

    return batch_fn


def embedder_step_fn(temperature: float) -> Callable[[nn.Module, dict[str, Tensor]], dict[str, Tensor]]:
    """One embedder step: supervised contrastive loss on the batch's embeddings (+ logged pos/neg cosines)."""

    def step(model: nn.Module, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        emb = model(batch["image"]).float()
        y = batch["label"]
        loss = supervised_contrastive_loss(emb, y, temperature)
        with torch.no_grad():
            s = emb @ emb.T
            same = (y[:, None] == y[None, :]) & ~torch.eye(len(y), dtype=torch.bool, device=emb.device)
            diff = y[:, None] != y[None, :]
        return {"loss": loss, "cos_same": s[same].mean(), "cos_diff": s[diff].mean()}

    return step


def embedder_config(ctx: Context, settings: EmbedderSettings = EmbedderSettings()) -> TrainConfig:
    """The TrainConfig of the synthetic embedder run (its hash names the checkpoint folder)."""
    p = ctx.profile
    fm = ctx.face_model
    key = {"stage": "embedder", "version": 3, "render": RENDER_VERSION, "settings": asdict(settings),
           "image_size": p.embedder_image_size,
           "input_size": embedder_input_size(p, settings), "batch": p.embedder_batch_size,
           "face_model": {k: fm.info.get(k) for k in ("name", "resolution", "seed", "version", "path")}}
    return stage_config(ctx, "embedder", key, lr=settings.lr, seed_offset=settings.seed_offset, schedule="cosine",
                        final_lr_fraction=settings.lr_final_fraction)


def train_embedder(ctx: Context, settings: EmbedderSettings = EmbedderSettings(), progress: bool | None = None,
                   callback: Callable | None = None) -> FaceEmbedder:
    """Train (or load the cached) synthetic FaceNet; returns it frozen. Notebook 04, section 2.

    ``profile.embedder_steps`` steps of ``profile.embedder_batch_size`` views rendered at
    ``profile.embedder_image_size``; resumable and cached (``final.pt``) in ``ctx.stage_dir('embedder', ...)``.

    Args:
        ctx: the run's Context (profile, face model, device, run folder).
        settings: how it is trained (:class:`EmbedderSettings`).
        progress: show a progress bar; None follows ``ctx.progress``.
        callback: called as ``callback(trainer, record)`` on each logged record (e.g.
            :func:`occ3d_lib.teaching.live.loss_plot`'s plot), or None.

    Returns:
        The frozen :class:`~occ3d_lib.nets.facenet.FaceEmbedder` (images ``(B, 3, H, W)`` -> ``(B, 512)``)
        with ``history`` and ``out_dir``.
    """
    p = ctx.profile
    cfg = embedder_config(ctx, settings)
    with seeded(cfg.seed):  # deterministic weight init without touching the global RNG
        model = FaceEmbedder(input_size=embedder_input_size(p, settings), dropout_prob=settings.dropout_prob)
    renderer = FaceRenderer(ctx.face_model, p.embedder_image_size)
    batches = synthetic_identity_batch_fn(ctx.face_model, p.embedder_image_size,
                                          distributed.shard_batch_size(p.embedder_batch_size, "embedder_batch_size"),
                                          settings, renderer)
    return fit_stage(ctx, "embedder", model, embedder_step_fn(settings.temperature), batches, cfg,
                     desc="FaceNet (synthetic)", progress=progress, callback=callback)


def get_embedder(ctx: Context, settings: EmbedderSettings = EmbedderSettings(), **kw: Any) -> FaceEmbedder:
    """The frozen embedder of this context: published weights or the synthetic one.

    Published weights when ``facenet='vggface2'/'casia-webface'``; otherwise the shipped pretrained one
    (``profile.pretrained``) or one trained and cached on first use. Notebook 04, section 2.

    Args:
        ctx: the run's Context (its ``facenet_spec``, profile and device).
        settings: how the synthetic embedder is trained (:class:`EmbedderSettings`).
        **kw: ``progress`` and ``callback`` of :func:`train_embedder` (used only when it trains).

    Returns:
        A frozen :class:`~occ3d_lib.nets.facenet.FaceEmbedder`: images ``(B, 3, H, W)`` in [0, 1] ->
        ``(B, 512)`` unit embeddings.
    """
    if ctx.facenet_spec in FACENET_WEIGHTS:
        return load_pretrained_embedder(ctx.facenet_spec, ctx.device)
    if ctx.facenet_spec != "synthetic":
        raise ValueError(f"facenet must be 'synthetic' or one of {sorted(FACENET_WEIGHTS)}, got {ctx.facenet_spec!r}")
    if ctx.profile.pretrained:
        return load_pretrained_facenet(ctx, settings)
    return train_embedder(ctx, settings, **kw)


def facenet_compat(ctx: Context, settings: EmbedderSettings = EmbedderSettings()) -> dict[str, Any]:
    """What a shipped FaceNet must have been made for to serve this context (its manifest's ``compat``)."""
    fm = ctx.face_model
    return {"input_size": embedder_input_size(ctx.profile, settings), "render": RENDER_VERSION,
            "face_model": {k: fm.info.get(k) for k in ("name", "resolution", "seed", "version", "path")}}


def load_pretrained_facenet(ctx: Context, settings: EmbedderSettings = EmbedderSettings()) -> FaceEmbedder:
    """The shipped synthetic FaceNet (``data/pretrained/facenet.pt``), verified, frozen. Notebook 04, section 2.

    The offline counterpart of facenet-pytorch's vggface2 weights (paper Sec. 3.2.2): trained once by
    ``make pretrained`` with :func:`train_embedder`; its recorded loss curve is its ``history``.
    """
    state, entry = pretrained.load_shipped("facenet")
    pretrained.check_compat("facenet", entry, facenet_compat(ctx, settings))
    model = FaceEmbedder(input_size=embedder_input_size(ctx.profile, settings))
    model.load_state_dict(state)
    model.history = list(entry.get("curve", []))  # type: ignore[attr-defined]
    model.shipped = entry  # type: ignore[attr-defined]
    return freeze(model.to(ctx.device))


def roc_curve(scores: Tensor, same: Tensor) -> dict[str, Any]:
    """ROC of a similarity score for same/different pairs (higher score = more likely the same).

    scores (P,) float, same (P,) bool -> dict with ``fpr``, ``tpr``, ``thresholds`` (numpy arrays,
    thresholds decreasing; a pair is called 'same' when score >= threshold), ``auc`` (trapezoid;
    equals the probability that a random same pair scores above a random different pair, ties
    counting one half), and the best ``accuracy`` with its ``threshold``: the balanced accuracy
    ``(TPR + TNR) / 2`` (same and different pairs weighted equally, LFW's balanced protocol).
    """
    s = scores.detach().double().flatten().cpu().numpy()
    y = same.detach().bool().flatten().cpu().numpy()
    if s.shape != y.shape or y.all() or (~y).all():
        raise ValueError("roc_curve needs scores and labels of the same length with both same and different pairs")
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    distinct = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # last index of each score value
    tp = np.cumsum(y)[distinct]
    fp = np.cumsum(~y)[distinct]
    tpr = np.r_[0.0, tp / y.sum()]
    fpr = np.r_[0.0, fp / (~y).sum()]
    thr = np.r_[np.inf, s[distinct]]
    auc = float(np.trapezoid(tpr, fpr)) if hasattr(np, "trapezoid") else float(np.trapz(tpr, fpr))
    bal = (tpr + 1 - fpr) / 2
    k = int(np.argmax(bal))
    return {"fpr": fpr, "tpr": tpr, "thresholds": thr, "auc": auc, "accuracy": float(bal[k]),
            "threshold": float(thr[k])}


def verification_report(embedder: nn.Module, images: Tensor, identity: Tensor | np.ndarray,
                        batch_size: int = 64) -> dict[str, Any]:
    """Face verification on labelled images (notebook 04, section 2; the series asks >= 0.90 accuracy).

    Every unordered pair of distinct images is a trial; its score is the cosine similarity of the two
    embeddings.

    Args:
        embedder: the FaceNet (unit embeddings, so the dot product is the cosine).
        images: ``(M, 3, S, S)`` in [0, 1].
        identity: ``(M,)`` int identity labels (a tensor or an array); both same and different pairs must occur.
        batch_size: images per forward pass.

    Returns:
        :func:`roc_curve`'s dict (``fpr``, ``tpr``, ``thresholds`` numpy arrays, ``auc``, ``accuracy``,
        ``threshold``) plus ``n_same``, ``n_diff``, ``mean_cos_same``, ``mean_cos_diff`` and ``n_images``.
    """
    ident = torch.as_tensor(np.asarray(identity)).long().flatten()
    if ident.shape[0] != images.shape[0]:
        raise ValueError(f"identity has {ident.shape[0]} labels for {images.shape[0]} images")
    emb = embed_images(embedder, images, batch_size)
    sim = emb @ emb.T
    iu = torch.triu_indices(len(ident), len(ident), offset=1)
    scores = sim[iu[0], iu[1]]
    same = ident[iu[0]] == ident[iu[1]]
    rep = roc_curve(scores, same)
    rep.update({"n_same": int(same.sum()), "n_diff": int((~same).sum()), "n_images": int(len(ident)),
                "mean_cos_same": float(scores[same].mean()), "mean_cos_diff": float(scores[~same].mean())})
    return rep


def weights_hash(module: nn.Module) -> str:
    """A 16-hex-digit SHA-256 of a module's state (cache keys of stages that consume a frozen model)."""
    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
