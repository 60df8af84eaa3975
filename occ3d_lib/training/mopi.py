"""MOPI training: Multi-Occlusion Per Identity (paper Sec. 3.2, Eqs. 7-9, Sec. 4, Table 7).

Taught in notebook 04 (sections 3-7). One training step, for ``B`` identities:

1. *data* (:func:`mopi_batch_fn`): pick ``B`` clean training images, occlude each 7 times with
   random patterns (:func:`occ3d_lib.occlusion.apply.multi_occlusion_set`, solid random colours:
   "arbitrary pixel values", Sec. 4);
2. *Eq. 8 label* (:func:`select_labels`, in the batch function because it only involves frozen
   networks): the frozen SOPI model predicts coefficients for the 7 occluded images, each
   prediction is rendered (black background) and embedded by the frozen FaceNet; the label
   ``v_s^i`` is the prediction whose render is closest (cosine distance) to the embedding of
   the clean image;
3. *MOPI forward* (:func:`mopi_step_fn`): the 7 images go through the shared backbone, head k
   takes image k -> ``v_m (B, 7, 257)``;
4. *Eq. 7*: the 7 predictions are rendered and embedded; the perceptual loss pulls the 7
   embeddings of one identity together (:func:`occ3d_lib.training.losses.perceptual_loss`);
5. *Eq. 9*: ``L = x1 L_perc + x2 L_label`` with ``(x1, x2) = (0.2, 0.8)``; the Table 7 ablations
   use (1, 0) and (0, 1) (:data:`occ3d_lib.training.losses.MOPI_ABLATIONS`). The term left out of an
   ablation is still computed without gradient and logged, so the curves are comparable.

Choices where the paper is silent (each is a field of :class:`MopiSettings`):
- initialisation: the backbone and all 7 heads start from the frozen SOPI model
  (:meth:`MultiOcclusionNet.init_from_reconnet`), so MOPI starts where SOPI is and only has to
  improve on it in a few hundred CPU steps (the paper starts from ImageNet and runs 500K steps);
- renders of predictions are composited on black (the embedder is trained with black
  backgrounds too, :class:`occ3d_lib.training.embedder.EmbedderSettings`);
- the test-time rule for one image is the mean of the 7 heads (:meth:`MultiOcclusionNet.predict`);
- Eq. 8's labels only involve frozen networks, so (like SOPI's teacher labels) they are computed
  once per run into a *label pool* (:func:`get_label_pool`) that the three Table 7 variants share;
  the pool holds exactly the batches an online run would draw (``MopiSettings.labels``), and runs
  too large to pool (the paper profile) select labels online at every step;
- Eq. 7's frozen FaceNet runs in bfloat16 where the CPU does bf16 arithmetic natively
  (``MopiSettings.embed_precision``, "auto"): its forward and backward are most of a step's fixed cost,
  and as a frozen loss network its rounding only perturbs the direction of the perceptual gradient
  slightly (tests/test_mopi.py bounds it); elsewhere, and for Eq. 8's label choice, it stays float32;
- beyond the paper, ``MopiSettings.selection`` replaces Eq. 8's FaceNet choice by an oracle (the
  prediction with the lowest landmark error) or a random one, to measure what the selection is
  worth (notebook 04, section 8).
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from occ3d_lib.core.artifacts import load_or_build, torch_load, torch_save
from occ3d_lib.core.envinfo import cpu_has_bf16
from occ3d_lib.core.seeds import SEED_OFFSETS
from occ3d_lib.data.context import Context
from occ3d_lib.nets.facenet import fold_batchnorm
from occ3d_lib.nets.models import MultiOcclusionNet, ReconNet, batchnorm_eval, freeze, seeded
from occ3d_lib.occlusion.apply import multi_occlusion_set
from occ3d_lib.occlusion.eval_sets import quantise
from occ3d_lib.occlusion.kinds import MOPI_KINDS
from occ3d_lib.training import distributed, losses
from occ3d_lib.training.embedder import get_embedder, weights_hash
from occ3d_lib.training.recipe import fit_stage, stage_config
from occ3d_lib.training.stages import get_sopi
from occ3d_lib.training.train import TrainConfig, full_precision

VARIANTS = tuple(losses.MOPI_ABLATIONS)  # ("both", "perceptual", "label")
LABEL_MODES = ("auto", "pool", "online")
#: How the label of each multi-occlusion set is chosen among SOPI's W predictions: "facenet" is Eq. 8;
#: "oracle" takes the one with the lowest landmark error against the data's landmarks (an upper bound
#: for any selection rule, notebook 04 section 8); "random" a uniformly random one (the chance baseline).
SELECTIONS = ("facenet", "oracle", "random")
#: The precision of Eq. 7's frozen FaceNet in a training step: "auto" is bfloat16 on a CPU with native bf16
#: arithmetic (:func:`occ3d_lib.core.envinfo.cpu_has_bf16`), float32 elsewhere (on CUDA the Trainer's amp decides).
PRECISIONS = ("float32", "bfloat16")  # what "auto" resolves to (resolve_embed_precision)
EMBED_PRECISIONS = ("auto", *PRECISIONS)
#: A label pool larger than this (bytes of its 8-bit occluded images) is not built; "auto" goes online.
POOL_MAX_BYTES = 1 << 30


@dataclass(frozen=True)
class MopiSettings:
    """How MOPI is trained (notebook 04, section 5). ``x1``/``x2`` override the variant's Eq. 9 weights."""

    variant: str = "both"
    x1: float | None = None
    x2: float | None = None
    init: str = "sopi"  # "sopi" (copy the frozen SOPI model into backbone and every head) or "scratch"
    kinds: tuple[str, ...] = MOPI_KINDS
    fill: str = "solid"
    freeze_bn: bool = True  # keep the backbone's BatchNorm statistics (SOPI's) while fine-tuning
    seed_offset: int = SEED_OFFSETS["mopi"]
    labels: str = "auto"  # Eq. 8 labels: "pool" (once per run, shared by the Table 7 variants), "online", "auto"
    selection: str = "facenet"  # "facenet" (Eq. 8) | "oracle" | "random": see SELECTIONS
    embed_precision: str = "auto"  # Eq. 7's FaceNet in the step: see EMBED_PRECISIONS and resolve_embed_precision

    def __post_init__(self) -> None:
        if self.variant not in losses.MOPI_ABLATIONS:
            raise ValueError(f"unknown MOPI variant {self.variant!r}; valid: {list(losses.MOPI_ABLATIONS)}")
        if self.init not in ("sopi", "scratch"):
            raise ValueError(f"init must be 'sopi' or 'scratch', got {self.init!r}")
        if self.labels not in LABEL_MODES:
            raise ValueError(f"labels must be one of {LABEL_MODES}, got {self.labels!r}")
        if self.selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {SELECTIONS}, got {self.selection!r}")
        if self.embed_precision not in EMBED_PRECISIONS:
            raise ValueError(f"embed_precision must be one of {EMBED_PRECISIONS}, got {self.embed_precision!r}")
        x1, x2 = self.weights
        if x1 < 0 or x2 < 0 or x1 + x2 <= 0:
            raise ValueError(f"Eq. 9 weights must be >= 0 and not both 0, got x1={x1}, x2={x2}")

    @property
    def weights(self) -> tuple[float, float]:
        """(x1, x2) of Eq. 9."""
        d1, d2 = losses.MOPI_ABLATIONS[self.variant]
        return (float(d1 if self.x1 is None else self.x1), float(d2 if self.x2 is None else self.x2))


def resolve_embed_precision(setting: str, device: str = "cpu") -> str:
    """The precision ``MopiSettings.embed_precision`` means on ``device``: "float32" or "bfloat16".

    "auto" is "bfloat16" on a CPU with native bf16 arithmetic (AVX512-BF16 or AMX), where it makes Eq. 7's
    FaceNet about 1.5x cheaper, and "float32" elsewhere (emulated bf16 is many times slower; on CUDA the
    Trainer's amp already runs the network in bf16). Notebook 04, section 5.

    Args:
        setting: "auto", "float32" or "bfloat16" (:data:`EMBED_PRECISIONS`).
        device: the torch device the step runs on ("cpu", "cuda", ...).

    Returns:
        "float32" or "bfloat16".
    """
    if setting not in EMBED_PRECISIONS:
        raise ValueError(f"embed_precision must be one of {EMBED_PRECISIONS}, got {setting!r}")
    if setting != "auto":
        return setting
    return "bfloat16" if torch.device(device).type == "cpu" and cpu_has_bf16() else "float32"


def render_embed(renderer: Any, embedder: nn.Module, coeffs: Tensor, precision: str = "float32") -> Tensor:
    """Eq. 7's inputs: render predicted coefficients on black and embed the renders with FaceNet.

    Notebook 04, sections 4-5. Differentiable w.r.t. ``coeffs`` (the perceptual term's gradient path); the
    fixed cost of a MOPI step beside its network (``benchmarks/bench_mopi.py`` times it apart).

    Args:
        renderer: a :class:`~occ3d_lib.render.renderer.FaceRenderer`.
        embedder: the FaceNet, ``(N, 3, S, S) -> (N, D)``.
        coeffs: ``(N, 257)`` predicted coefficients.
        precision: "float32", or "bfloat16" to run the embedder under bf16 autocast (the renders stay
            float32; :func:`resolve_embed_precision`).

    Returns:
        ``(N, D)`` float32 embeddings of the renders.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    with full_precision():  # the rasteriser stays float32 under the Trainer's bf16 autocast
        out = renderer(coeffs.float().to(renderer.model.dtype))
    images = out.image.float().clamp(0, 1)
    if precision == "bfloat16":
        with torch.autocast(device_type=images.device.type, dtype=torch.bfloat16):
            return embedder(images).float()
    return embedder(images)


@torch.no_grad()
def select_labels(sopi: nn.Module, embedder: nn.Module, renderer: Any, occluded: Tensor, clean: Tensor) -> dict[str, Tensor]:
    """Eq. 8's label selection for a batch of identities (notebook 04, section 4).

    Runs without gradients; the predictions are rendered on black before they are embedded.

    Args:
        sopi: the SOPI network, ``(N, 3, S, S) -> (N, 257)``.
        embedder: the FaceNet, ``(N, 3, S, S) -> (N, D)``.
        renderer: a :class:`~occ3d_lib.render.renderer.FaceRenderer` at size S.
        occluded: ``(B, W, 3, S, S)`` the W occluded variants.
        clean: ``(B, 3, S, S)`` the unoccluded image.

    Returns:
        A dict: ``sopi_coeffs (B, W, 257)``, ``sopi_emb (B, W, D)`` (embeddings of their renders),
        ``clean_emb (B, D)``, ``distance (B, W)`` (cosine distances to the clean embedding),
        ``choice (B,)`` (argmin) and ``label (B, 257)`` = ``v_s^i``.
    """
    if occluded.ndim != 5 or clean.ndim != 4 or occluded.shape[0] != clean.shape[0] or occluded.shape[2:] != clean.shape[1:]:
        raise ValueError(f"occluded must be (B, W, 3, S, S) and clean (B, 3, S, S), got {tuple(occluded.shape)} "
                         f"and {tuple(clean.shape)}")
    b, w = occluded.shape[:2]
    sopi_coeffs = sopi(occluded.flatten(0, 1)).view(b, w, -1)
    sopi_emb = render_embed(renderer, embedder, sopi_coeffs.flatten(0, 1)).view(b, w, -1)
    clean_emb = embedder(clean)
    choice = losses.sopi_label_index(sopi_emb, clean_emb)
    label = losses.select_sopi_labels(sopi_coeffs, sopi_emb, clean_emb)
    return {"sopi_coeffs": sopi_coeffs, "sopi_emb": sopi_emb, "clean_emb": clean_emb,
            "distance": losses.cosine_distance(sopi_emb, clean_emb.unsqueeze(1)), "choice": choice, "label": label}


def oracle_label_index(renderer: Any, sopi_coeffs: Tensor, landmarks: Tensor) -> Tensor:
    """The selection an oracle would make: per identity, the SOPI prediction with the lowest landmark ME.

    sopi_coeffs (B, W, 257), landmarks (B, 68, 2) the images' landmarks in pixels -> (B,) long.
    Not part of the paper: it needs the landmarks of the training images, and it shows how far
    any label selection could take MOPI (``MopiSettings(selection="oracle")``, notebook 04, section 8).
    """
    if sopi_coeffs.ndim != 3 or landmarks.ndim != 3 or landmarks.shape[0] != sopi_coeffs.shape[0]:
        raise ValueError(f"sopi_coeffs must be (B, W, 257) and landmarks (B, 68, 2), got {tuple(sopi_coeffs.shape)} "
                         f"and {tuple(landmarks.shape)}")
    b, w = sopi_coeffs.shape[:2]
    err = renderer.landmark_me(sopi_coeffs.flatten(0, 1), landmarks.repeat_interleave(w, 0)).view(b, w)
    return err.argmin(dim=1)


def mopi_batch_fn(split: Any, sopi: nn.Module, embedder: nn.Module, renderer: Any, n_identities: int,
                  n_variants: int = 7, kinds: tuple[str, ...] = MOPI_KINDS, fill: str = "solid",
                  device: str = "cpu", selection: str = "facenet") -> Callable[[int, torch.Generator], dict[str, Tensor]]:
    """``batch_fn`` for :class:`Trainer`: ``n_identities`` multi-occlusion sets with their Eq. 8 labels.

    Draws image indices and the occlusions from the trainer's generator only (so a resumed run sees the
    same batches); the occluded images are rounded to 8-bit levels like every stored image. Notebook 04,
    sections 5 and 8.

    Args:
        split: a dataset split: ``len(split)`` and ``split.batch(indices)`` giving ``image (N, 3, S, S)``
            and ``landmarks (N, 68, 2)``.
        sopi: the frozen SOPI network.
        embedder: the frozen FaceNet.
        renderer: a :class:`~occ3d_lib.render.renderer.FaceRenderer` at size S.
        n_identities: B, the identities per batch (>= 1).
        n_variants: W, the occluded variants per identity.
        kinds: the pool of occlusion kinds (:func:`occ3d_lib.occlusion.apply.multi_occlusion_set`).
        fill: the occluders' fill.
        device: where SOPI, the renderer and the embedder run.
        selection: how the label is picked among SOPI's predictions (:data:`SELECTIONS`): "facenet" (Eq. 8,
            the default), "oracle" or "random".

    Returns:
        ``batch_fn(step, generator)`` returning a dict of CPU tensors: ``images (B, W, 3, S, S)``,
        ``clean (B, 3, S, S)``, ``index (B,)``, ``label (B, 257)`` float32 and ``choice (B,)``.
    """
    n = len(split)
    if n_identities < 1 or n < 1:
        raise ValueError(f"need n_identities >= 1 and a non-empty split, got {n_identities} and {n} images")
    if selection not in SELECTIONS:
        raise ValueError(f"selection must be one of {SELECTIONS}, got {selection!r}")

    def batch_fn(step: int, g: torch.Generator) -> dict[str, Tensor]:
        idx = torch.randint(0, n, (n_identities,), generator=g)
        b = split.batch(idx.numpy())
        occ = multi_occlusion_set(b["image"], b["landmarks"], n_variants, g, kinds=kinds, fill=fill)
        images = quantise(occ.images)  # 8-bit, like every stored image: a label pool holds the same bytes
        if selection == "facenet":
            sel = select_labels(sopi, embedder, renderer, images.to(device), b["image"].to(device))
            choice, label = sel["choice"].cpu(), sel["label"].cpu()
        else:  # no renders or embeddings needed: only SOPI's predictions
            with torch.no_grad():
                preds = sopi(images.flatten(0, 1).to(device)).view(n_identities, n_variants, -1)
                choice = (oracle_label_index(renderer, preds, b["landmarks"]).cpu() if selection == "oracle"
                          else torch.randint(n_variants, (n_identities,), generator=g))
            label = preds.cpu()[torch.arange(n_identities), choice]
        return {"images": images, "clean": b["image"], "index": idx, "label": label.float(), "choice": choice}

    return batch_fn


def label_pool_bytes(n_sets: int, n_variants: int, image_size: int) -> int:
    """Bytes of the 8-bit occluded images of a label pool of ``n_sets`` identities."""
    return n_sets * n_variants * 3 * image_size * image_size


def build_label_pool(batch_fn: Callable[[int, torch.Generator], dict[str, Tensor]], n_batches: int,
                     seed: int) -> dict[str, Tensor]:
    """Run an online :func:`mopi_batch_fn` ``n_batches`` times from ``Generator(seed)`` and keep it all.

    The Trainer seeds its generator with the run's seed and uses it only for ``batch_fn``, so
    batch ``k`` of the pool is exactly what the online run draws at step ``k``. Returns ``images``
    (N, W, 3, S, S) uint8, ``index`` (N,), ``label`` (N, 257), ``choice`` (N,) with
    N = ``n_batches`` x identities per batch. Notebook 04, section 5.
    """
    if n_batches < 1:
        raise ValueError(f"n_batches must be >= 1, got {n_batches}")
    g = torch.Generator().manual_seed(int(seed))
    parts = [batch_fn(k, g) for k in range(n_batches)]
    return {"images": torch.cat([(p["images"] * 255).round().to(torch.uint8) for p in parts]),
            "index": torch.cat([p["index"] for p in parts]), "label": torch.cat([p["label"] for p in parts]),
            "choice": torch.cat([p["choice"] for p in parts])}


def pooled_batch_fn(pool: Mapping[str, Tensor], split: Any, n_identities: int, shard: tuple[int, int] = (0, 1)
                    ) -> Callable[[int, torch.Generator], dict[str, Tensor]]:
    """``batch_fn`` that serves step ``k`` from rows ``k*B .. (k+1)*B`` of a :func:`build_label_pool` pool
    (same keys as :func:`mopi_batch_fn`; the generator is not used). Raises past the pool's end.

    ``shard = (rank, world_size)`` serves only that rank's ``B / world_size`` rows of each step (torchrun).
    """
    n = int(pool["label"].shape[0])
    rank, world = shard
    per = distributed.shard_batch_size(n_identities, "mopi_batch_identities", world)

    def batch_fn(step: int, g: torch.Generator) -> dict[str, Tensor]:
        if (step + 1) * n_identities > n:
            raise IndexError(f"the label pool holds {n // n_identities} steps of {n_identities} identities; "
                             f"step {step} is past its end (was it built for fewer steps?)")
        lo = step * n_identities + rank * per
        hi = lo + per
        idx = pool["index"][lo:hi]
        return {"images": pool["images"][lo:hi].float() / 255, "clean": split.batch(idx.numpy())["image"],
                "index": idx, "label": pool["label"][lo:hi], "choice": pool["choice"][lo:hi]}

    return batch_fn


def get_label_pool(ctx: Context, settings: MopiSettings, sopi: nn.Module, embedder: nn.Module) -> dict[str, Tensor]:
    """The Eq. 8 label pool of this run: built once (``profile.mopi_steps`` batches) and cached in
    ``ctx.stage_dir('mopi-labels', ...)``, keyed by the SOPI and FaceNet weights, the data and the
    occlusion settings, so the three Table 7 variants select their labels only once. Notebook 04, section 5."""
    p = ctx.profile
    b, w = p.mopi_batch_identities, p.n_occlusion_variants
    key = {"stage": "mopi-labels", "version": 1, "sopi": weights_hash(sopi), "embedder": weights_hash(embedder),
           "data": ctx.dataset.meta.get("key"), "kinds": list(settings.kinds), "fill": settings.fill,
           "selection": settings.selection, "identities": b, "variants": w, "steps": p.mopi_steps,
           "seed": p.seed + settings.seed_offset}
    path = ctx.stage_dir("mopi-labels", key) / "pool.pt"
    with distributed.main_first():  # under torchrun rank 0 builds the pool, the other ranks read it
        def build() -> dict[str, Tensor]:
            fn = mopi_batch_fn(ctx.dataset.train, sopi, embedder, ctx.renderer.to(ctx.device), b, w, settings.kinds,
                               settings.fill, ctx.device, settings.selection)
            return build_label_pool(fn, p.mopi_steps, p.seed + settings.seed_offset)

        return load_or_build(path, torch_load, build, lambda v, f: torch_save(v, f, settings=key), "MOPI label pool",
                             settings=key)


def mopi_step_fn(renderer: Any, embedder: nn.Module, x1: float = 0.2, x2: float = 0.8, freeze_bn: bool = False,
                 embed_precision: str = "float32") -> Callable[[nn.Module, dict[str, Tensor]], dict[str, Tensor]]:
    """One MOPI step: Eq. 7 on the renders of the 7 heads' outputs, Eq. 8 against the SOPI label,
    Eq. 9 to combine. A term with weight 0 is computed without gradient (logged only).
    ``freeze_bn`` keeps every BatchNorm layer in eval mode (running statistics untouched): a MOPI
    batch holds only B identities x 7 views of the same faces, whose statistics are not the data's,
    and a network started from SOPI should keep SOPI's. ``embed_precision`` ("float32" or "bfloat16") is
    the FaceNet's in Eq. 7 (:func:`render_embed`). Returns ``loss``, ``perceptual``, ``label``.
    Notebook 04, section 5."""
    if x1 < 0 or x2 < 0:
        raise ValueError(f"Eq. 9 weights must be non-negative, got x1={x1}, x2={x2}")
    if embed_precision not in PRECISIONS:
        raise ValueError(f"embed_precision must be one of {PRECISIONS} (resolve 'auto' with "
                         f"resolve_embed_precision), got {embed_precision!r}")

    def step(model: nn.Module, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        if freeze_bn:
            batchnorm_eval(model)
        images = batch["images"]
        v = model(images).float()  # (B, W, 257)
        b, w = v.shape[:2]
        with torch.set_grad_enabled(torch.is_grad_enabled() and x1 > 0):
            emb = render_embed(renderer, embedder, v.flatten(0, 1), embed_precision).view(b, w, -1)
            perc = losses.perceptual_loss(emb)
        with torch.set_grad_enabled(torch.is_grad_enabled() and x2 > 0):
            lab = losses.label_loss(v, batch["label"])
        return {"loss": losses.composite_loss(perc, lab, x1, x2), "perceptual": perc.detach(), "label": lab.detach()}

    return step


def term_gradient_norms(model: nn.Module, batch: dict[str, Tensor], renderer: Any, embedder: nn.Module,
                        x1: float = 0.2, x2: float = 0.8) -> dict[str, dict[str, float]]:
    """Size and gradient norm of each weighted Eq. 9 term, ``x1 L_perc`` and ``x2 L_label``, on one batch.

    The gradient norm is the L2 norm, over all of the model's parameters, of the gradient of that term
    alone. BatchNorm layers run in eval mode and the model's ``requires_grad`` flags and mode are
    restored. Notebook 04 section 6: why the full loss ties label-only.

    Args:
        model: the MOPI network, ``(B, W, 3, S, S) -> (B, W, 257)``.
        batch: ``images (B, W, 3, S, S)`` and ``label (B, 257)`` as :func:`mopi_batch_fn` returns them.
        renderer: a :class:`~occ3d_lib.render.renderer.FaceRenderer` at size S.
        embedder: the FaceNet of the perceptual term.
        x1: the weight of ``L_perc``.
        x2: the weight of ``L_label``.

    Returns:
        ``{"perceptual": {"value": float, "grad_norm": float}, "label": {"value": float, "grad_norm": float}}``.
    """
    was_training = model.training
    flags = [q.requires_grad for q in model.parameters()]
    params = list(model.parameters())
    try:
        model.eval()
        for q in params:
            q.requires_grad_(True)
        dev = params[0].device if params else torch.device("cpu")
        with torch.enable_grad():
            v = model(batch["images"].to(dev).float()).float()
            b, w = v.shape[:2]
            emb = render_embed(renderer, embedder, v.flatten(0, 1)).view(b, w, -1)
            terms = {"perceptual": x1 * losses.perceptual_loss(emb),
                     "label": x2 * losses.label_loss(v, batch["label"].to(dev).float())}
            out = {}
            for name, term in terms.items():
                grads = torch.autograd.grad(term, params, retain_graph=True, allow_unused=True)
                sq = sum(float(g.double().pow(2).sum()) for g in grads if g is not None)
                out[name] = {"value": float(term.detach()), "grad_norm": sq ** 0.5}
    finally:
        for q, f in zip(params, flags):
            q.requires_grad_(f)
        model.train(was_training)
    return out


def make_mopi(profile: Any, sopi: ReconNet | None = None, init: str = "sopi",
               seed: int | None = None) -> MultiOcclusionNet:
    """A MultiOcclusionNet with the profile's backbone and ``n_occlusion_variants`` heads, started from ``sopi``
    (its random initialisation drawn from ``seed``, default ``profile.seed``)."""
    with seeded(profile.seed if seed is None else seed):
        net = MultiOcclusionNet(profile.backbone, imagenet_init=profile.imagenet_init and init == "scratch",
                                n_heads=profile.n_occlusion_variants)
    if init == "sopi":
        if sopi is None:
            raise ValueError("init='sopi' needs the SOPI model")
        net.init_from_reconnet(sopi)
    return net


def mopi_config(ctx: Context, settings: MopiSettings, sopi_key: str, embedder_key: str) -> TrainConfig:
    """The TrainConfig of a MOPI run (its hash names the checkpoint folder)."""
    p = ctx.profile
    # pool and online draw the same batches; the precision enters as what it resolves to on this device,
    # and only when it is not float32 (so float32 runs keep the key they had before the option existed)
    st = {k: v for k, v in asdict(settings).items() if k not in ("labels", "embed_precision")}
    key = {"stage": "mopi", "version": 2, "settings": st, "weights": settings.weights,
           "sopi": sopi_key, "embedder": embedder_key, "backbone": p.backbone, "batch": p.mopi_batch_identities,
           "variants": p.n_occlusion_variants, "data": ctx.dataset.meta.get("key")}
    precision = resolve_embed_precision(settings.embed_precision, ctx.device)
    if precision != "float32":
        key["embed_precision"] = precision
    return stage_config(ctx, "mopi", key, seed_offset=settings.seed_offset)


def train_mopi(ctx: Context, variant: str = "both", sopi: nn.Module | None = None, embedder: nn.Module | None = None,
               settings: MopiSettings | None = None, progress: bool | None = None,
               callback: Callable | None = None) -> MultiOcclusionNet:
    """Train (or load the cached) MOPI network for one Table 7 variant; returns it frozen.

    ``sopi`` defaults to :func:`occ3d_lib.training.stages.get_sopi`, ``embedder`` to
    :func:`occ3d_lib.training.embedder.get_embedder` (both frozen here). ``profile.mopi_steps`` steps of
    ``profile.mopi_batch_identities`` identities x 7 images, lr ``profile.mopi_lr``; resumable and
    cached in ``ctx.stage_dir('mopi', ...)`` keyed by the settings and the SOPI/embedder weights.
    Notebook 04, sections 5-6.
    """
    if settings is None:
        settings = MopiSettings(variant=variant)
    elif settings.variant != variant:
        raise ValueError(f"variant {variant!r} disagrees with settings.variant {settings.variant!r}")
    sopi = freeze(sopi if sopi is not None else get_sopi(ctx)).to(ctx.device)
    embedder = freeze(embedder if embedder is not None else get_embedder(ctx)).to(ctx.device)
    cfg = mopi_config(ctx, settings, weights_hash(sopi), weights_hash(embedder))
    model = make_mopi(ctx.profile, sopi if settings.init == "sopi" else None, settings.init, seed=cfg.seed)
    renderer = ctx.renderer.to(ctx.device)
    x1, x2 = settings.weights
    p = ctx.profile
    mode = settings.labels
    if mode == "auto":
        fits = label_pool_bytes(p.mopi_steps * p.mopi_batch_identities, p.n_occlusion_variants, p.image_size) <= POOL_MAX_BYTES
        mode = "pool" if fits else "online"
    if mode == "pool":
        # built on the first step only: a cached final.pt never asks for a batch
        dist = distributed.current()
        pooled = functools.cache(lambda: pooled_batch_fn(get_label_pool(ctx, settings, sopi, embedder),
                                                         ctx.dataset.train, p.mopi_batch_identities,
                                                         (dist.rank, dist.world_size)))

        def batch_fn(step: int, g: torch.Generator) -> dict[str, Tensor]:
            return pooled()(step, g)
    else:
        batch_fn = mopi_batch_fn(ctx.dataset.train, sopi, embedder, renderer,
                                 distributed.shard_batch_size(p.mopi_batch_identities, "mopi_batch_identities"),
                                 p.n_occlusion_variants, settings.kinds, settings.fill, ctx.device,
                                 settings.selection)
    # Eq. 7's FaceNet with its BatchNorm folded into its convolutions: the same function, a cheaper pass
    # in the precision the run's key was made with (resolved once, in mopi_config)
    step_fn = mopi_step_fn(renderer, fold_batchnorm(embedder), x1, x2, settings.freeze_bn,
                           cfg.key.get("embed_precision", "float32"))
    return fit_stage(ctx, f"mopi-{settings.variant}", model, step_fn,
                     batch_fn, cfg, desc=f"MOPI ({settings.variant})", progress=progress, callback=callback)


def get_mopi(ctx: Context, variant: str = "both", **kw: Any) -> MultiOcclusionNet:
    """The frozen MOPI network of this context for a Table 7 variant (trained and cached on first use).

    Args:
        ctx: the run's Context.
        variant: "both", "perceptual" or "label" (:data:`VARIANTS`).
        **kw: ``sopi``, ``embedder``, ``settings``, ``progress`` and ``callback`` of :func:`train_mopi`.

    Returns:
        The frozen :class:`MultiOcclusionNet` (``(B, W, 3, S, S) -> (B, W, 257)``; its ``predict`` takes
        single images ``(B, 3, S, S) -> (B, 257)``).
    """
    return train_mopi(ctx, variant, **kw)
