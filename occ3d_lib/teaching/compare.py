"""The model comparer of notebook 05: pick a test face and an occluder, see teacher, SOPI and MOPI side by side.

A live JupyterLab session gets an ipywidgets panel (face, occlusion kind, seed); headless (papermill, nbval,
CI; :func:`occ3d_lib.core.viz.headless`) it draws a static grid of a few faces. :func:`compare_one` computes
what both show and is what the tests call.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from occ3d_lib.core import viz
from occ3d_lib.nets.predict import predict_coeffs
from occ3d_lib.occlusion.apply import occlude


@torch.no_grad()
def compare_one(models: Mapping[str, Any], image: Tensor, landmarks: Tensor, renderer: Any, kind: str = "shofi",
                seed: int = 0) -> dict[str, Any]:
    """Occlude one face (``image`` (3, S, S), true ``landmarks`` (68, 2)) with ``kind`` from ``seed`` and
    reconstruct it with every model. Returns ``occluded`` (3, S, S), ``renders`` {model: (3, S, S)} drawn over
    the occluded input, ``me`` {model: landmark ME in px at 224} and ``coverage``. Notebook 05 section 9."""
    if not isinstance(image, Tensor) or image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"image must be one (3, S, S) tensor, got {getattr(image, 'shape', type(image))}")
    if tuple(landmarks.shape) != (68, 2):
        raise ValueError(f"landmarks must be (68, 2), got {tuple(landmarks.shape)}")
    if not models:
        raise ValueError("compare_one needs at least one model")
    occ = occlude(image[None].float(), kind, int(seed), landmarks[None].float())
    x = occ.images.float()
    dt = renderer.model.dtype
    renders, me = {}, {}
    for name, model in models.items():
        c = predict_coeffs(model, x).to(dt)
        renders[name] = renderer(c, background=x.to(dt)).image.float()[0]
        me[name] = float(renderer.landmark_me(c, landmarks[None].to(dt))[0])
    return {"occluded": x[0], "renders": renders, "me": me, "coverage": float(occ.coverage[0])}


def _row(result: Mapping[str, Any], diff: tuple[str, str] | None) -> tuple[list[Tensor], list[str]]:
    imgs = [result["occluded"]]
    titles = [f"input ({result['coverage']:.0%} occluded)"]
    for name, r in result["renders"].items():
        imgs.append(r)
        titles.append(f"{name}: ME {result['me'][name]:.2f} px")
    if diff is not None and all(d in result["renders"] for d in diff):
        a, b = (result["renders"][d] for d in diff)
        imgs.append(((a - b).abs() * 4).clamp(0, 1))
        titles.append(f"|{diff[0]} - {diff[1]}| x 4")
    return imgs, titles


def model_comparer(models: Mapping[str, Any], images: Tensor, landmarks: Tensor, renderer: Any,
                   kinds: Sequence[str] = ("shofi", "dhofi", "dsofi", "random_pattern", "sunglasses", "hand"),
                   diff: tuple[str, str] | None = ("sopi", "mopi"), n_static: int = 3) -> Any:
    """Widget (face index, occlusion kind, seed) comparing ``models`` on held-out faces.

    It shows the occluded input, each model's reconstruction with its landmark ME and, where two models
    overlap, the difference of their renders (``diff``). Headless: a static grid of the first ``n_static``
    faces under ``kinds[0]``. Notebook 05 section 9.

    Args:
        models: ``{name: model}``, one column each.
        images: held-out faces ``(N, 3, S, S)`` in [0, 1].
        landmarks: their true landmarks ``(N, 68, 2)`` in pixels.
        renderer: a :class:`~occ3d_lib.render.renderer.FaceRenderer` at size S.
        kinds: the occluder menu; ``kinds[0]`` is the first shown and the static grid's.
        diff: two model names whose renders' difference (x 4) is shown when both are in ``models``, or None.
        n_static: faces in the static grid.

    Returns:
        An ipywidgets ``VBox`` in a live session, else the static grid's matplotlib Figure
        (:func:`occ3d_lib.core.viz.interactive_or_static`).
    """
    kinds = list(kinds)
    if len(images) != len(landmarks) or len(images) == 0:
        raise ValueError(f"need as many landmarks as images (and at least one), got {len(images)} and {len(landmarks)}")

    def static():
        n = min(n_static, len(images))
        rows = [_row(compare_one(models, images[i], landmarks[i], renderer, kinds[0], seed=i), diff) for i in range(n)]
        ncols = len(rows[0][0])
        imgs = [im for r in rows for im in r[0]]
        titles = [t for r in rows for t in r[1]]
        return viz.image_grid(imgs, ncols=ncols, titles=titles, size=2.0,
                              suptitle=f"model comparer (static): {kinds[0]}, faces 0-{n - 1}, landmark ME per face")

    def widget():
        import ipywidgets as w

        out = w.Output()
        face = w.IntSlider(value=0, min=0, max=len(images) - 1, description="test face")
        kind = w.Dropdown(options=kinds, value=kinds[0], description="occluder")
        seed = w.IntSlider(value=0, min=0, max=50, description="seed")

        def draw(*_):
            r = compare_one(models, images[face.value], landmarks[face.value], renderer, kind.value, seed.value)
            imgs, titles = _row(r, diff)
            with out:
                out.clear_output(wait=True)
                fig = viz.image_grid(imgs, ncols=len(imgs), titles=titles, size=2.4)
                viz.show_figure(fig)

        for c in (face, kind, seed):
            c.observe(draw, names="value")
        draw()
        return w.VBox([w.HBox([face, kind, seed]), out]).add_class("occ3d-model-comparer")

    return viz.interactive_or_static(widget, static)
