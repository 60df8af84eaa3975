"""Explorers for the notebooks: the face explorer of notebook 01 and the occlusion explorer of notebook 02.

Each is an ipywidgets panel in a live JupyterLab session and, headless (papermill, nbval, CI; see
:func:`occ3d_lib.core.viz.headless`), a static figure of a few settings. The functions that compute
what a panel shows (:func:`face_coeffs`, :func:`explore_one`) are plain functions the tests call.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import torch
from torch import Tensor

from occ3d_lib.core import viz
from occ3d_lib.face import coeffs
from occ3d_lib.occlusion.apply import OcclusionResult, occlude
from occ3d_lib.occlusion.kinds import NATURAL_KINDS
from occ3d_lib.render import lighting
from occ3d_lib.render.renderer import FaceRenderer, RenderOutput

#: The face explorer's knobs: name -> (coefficient group, component). Notebook 01, section 6.
FACE_KNOBS: dict[str, tuple[str, int]] = {
    "face_width": ("id", 0), "face_height": ("id", 1), "nose": ("id", 9), "mouth_open": ("exp", 0),
    "smile": ("exp", 1), "brow_raise": ("exp", 2), "skin_tone": ("tex", 0), "redness": ("tex", 1),
}


def face_coeffs(face_width: float = 0.0, face_height: float = 0.0, nose: float = 0.0, mouth_open: float = 0.0,
                smile: float = 0.0, brow_raise: float = 0.0, skin_tone: float = 0.0, redness: float = 0.0,
                light_x: float = 0.25, light_y: float = 0.2, yaw: float = 0.3, pitch: float = 0.0,
                roll: float = 0.0) -> Tensor:
    """The (1, 257) coefficients of the face explorer's knobs: eight named components (in standard
    deviations, :data:`FACE_KNOBS`), a white light from (``light_x``, ``light_y``) and the pose in
    radians. Notebook 01, section 6."""
    values = dict(face_width=face_width, face_height=face_height, nose=nose, mouth_open=mouth_open, smile=smile,
                  brow_raise=brow_raise, skin_tone=skin_tone, redness=redness)
    c = torch.zeros(1, coeffs.N_COEFFS)
    for name, (part, k) in FACE_KNOBS.items():
        c[0, coeffs.SLICES[part].start + k] = float(values[name])
    c[0, coeffs.SLICES["gamma"]] = lighting.white_gamma(torch.tensor([[0.0, -light_y, 0.2, light_x, 0, 0, 0, 0, 0]]))[0]
    c[0, coeffs.SLICES["angle"]] = torch.tensor([pitch, yaw, roll])
    return c


def component_sweep(renderer: FaceRenderer, part: str, k: int, gamma: Tensor, yaw: float = 0.35,
                    background: float = 0.85) -> Tensor:
    """Component ``k`` of ``part`` at -3, 0 and +3 standard deviations, at ``yaw`` under the light ``gamma``.

    Notebook 01, section 1 (Eq. 3).

    Args:
        renderer: the :class:`~occ3d_lib.render.renderer.FaceRenderer` (its image size S).
        part: the coefficient group: 'id', 'exp' or 'tex'.
        k: the component's index within ``part``.
        gamma: the SH light ``(1, 27)``.
        yaw: the head's yaw in radians.
        background: the grey level of the background in [0, 1].

    Returns:
        Images ``(3, 3, S, S)`` in [0, 1], one per value -3, 0, +3.
    """
    c = torch.zeros(3, coeffs.N_COEFFS)
    c[:, coeffs.SLICES[part].start + k] = torch.tensor([-3.0, 0.0, 3.0])
    c[:, coeffs.SLICES["angle"]] = torch.tensor([0.0, yaw, 0.0])
    c[:, coeffs.SLICES["gamma"]] = gamma
    s = renderer.image_size
    return renderer(c, torch.full((3, 3, s, s), background)).image


def face_explorer(renderer: FaceRenderer) -> Any:
    """Sliders over :func:`face_coeffs` drawing the face and its landmarks, or headless a grid of eight settings.

    Notebook 01, section 6.

    Args:
        renderer: the :class:`~occ3d_lib.render.renderer.FaceRenderer` that draws the face.

    Returns:
        An ipywidgets ``interactive`` in a live session; headless None (the grid is drawn with ``plt.show()``).
    """
    s = renderer.image_size

    def render(**kw: float) -> RenderOutput:
        return renderer(face_coeffs(**kw), torch.full((1, 3, s, s), 0.85))

    def widget() -> Any:
        import ipywidgets as w

        def slider(lo: float, hi: float, v: float = 0.0) -> Any:
            return w.FloatSlider(value=v, min=lo, max=hi, step=0.1, continuous_update=False)

        def draw(**kw: float) -> None:
            out = render(**kw)
            viz.image_grid(out.image, ncols=1, landmarks=out.landmarks, size=4)
            plt.show()

        return w.interactive(draw, face_width=slider(-3, 3), face_height=slider(-3, 3), nose=slider(-3, 3),
                             mouth_open=slider(-1, 3), smile=slider(-3, 3), brow_raise=slider(-3, 3),
                             skin_tone=slider(-3, 3), redness=slider(-3, 3), light_x=slider(-0.6, 0.6, 0.25),
                             light_y=slider(-0.6, 0.6, 0.2), yaw=slider(-1.2, 1.2, 0.3), pitch=slider(-0.6, 0.6),
                             roll=slider(-0.8, 0.8))

    def static() -> None:
        settings = {"default": {}, "wide face": {"face_width": 3.0}, "mouth open": {"mouth_open": 3.0},
                    "smile": {"smile": 3.0}, "darker skin": {"skin_tone": 2.5}, "light from right": {"light_x": -0.5},
                    "yaw -0.8": {"yaw": -0.8}, "pitch up, roll": {"pitch": -0.4, "roll": 0.3}}
        imgs = torch.cat([render(**kw).image for kw in settings.values()])
        viz.image_grid(imgs, ncols=4, titles=list(settings), size=2.0)
        plt.show()

    return viz.interactive_or_static(widget, static)


def explore_one(image: Tensor, landmarks: Tensor, kind: str = "shofi", size: float | None = None,
                color: Sequence[float] | None = None, position: tuple[float, float] | None = None,
                seed: int = 0, fill: str = "natural") -> OcclusionResult:
    """Occlude one face with explicit knobs: ``size`` (area fraction of each shape, squares /
    'full' / patterns), ``color`` (RGB in [0, 1]), ``position`` (u, v) in [0, 1]^2, ``seed``.
    image ``(3, H, W)``, landmarks ``(68, 2)`` -> a batch-of-one :class:`OcclusionResult`.
    What the explorer widget calls. Taught in notebook 02, section 10."""
    if not isinstance(image, Tensor) or image.ndim != 3:
        raise ValueError(f"image must be one (C, H, W) tensor, got {getattr(image, 'shape', type(image))}")
    cr = None if size is None else (float(size), float(size))
    return occlude(image[None], kind, int(seed), landmarks[None], fill="solid" if color is not None else fill,
                   color=color, coverage_range=cr, position=position)


def occlusion_explorer(image: Tensor, landmarks: Tensor, kinds: Sequence[str] = ("shofi", "dsofi", "dhofi", "full",
                                                                                 "star", "crown", "ellipse",
                                                                                 "polygon", "scribble",
                                                                                 *NATURAL_KINDS)) -> Any:
    """An ipywidgets explorer (kind, size, colour, position, seed) over one face, or a static figure headless.

    Headless (``viz.headless()``) it draws a few settings: the same kind at three sizes, at three
    positions and in three colours. Taught in notebook 02, section 10 (paper Sec. 4.1.1: occluder size
    and colour).

    Args:
        image: the face ``(3, H, W)`` in [0, 1].
        landmarks: its landmarks ``(68, 2)`` in pixels.
        kinds: the kind menu (the first is selected).

    Returns:
        An ipywidgets ``VBox`` in a live session, else the static matplotlib Figure.
    """
    kinds = list(kinds)

    def static():
        settings = [("shofi", s, None, (0.5, 0.5)) for s in (0.3, 0.45, 0.6)]
        settings += [("shofi", 0.3, None, p) for p in ((0.0, 0.0), (1.0, 0.0), (0.5, 1.0))]
        settings += [("star", 0.2, c, (0.5, 0.4)) for c in ((1.0, 0.1, 0.1), (0.1, 0.8, 0.1), (0.1, 0.2, 1.0))]
        imgs, titles = [], []
        for kind, size, col, pos in settings:
            r = explore_one(image, landmarks, kind, size, col, pos, seed=0)
            imgs.append(r.images[0])
            titles.append(f"{kind} size {size:.2f}\npos {pos}, cov {r.coverage[0]:.2f}")
        return viz.image_grid(imgs, ncols=3, titles=titles, size=2.0,
                              suptitle="occlusion explorer (static): size, position, colour")

    def widget():
        import ipywidgets as w

        out = w.Output()
        kind = w.Dropdown(options=kinds, value=kinds[0], description="kind")
        size = w.FloatSlider(value=0.3, min=0.02, max=0.8, step=0.01, description="size")
        color = w.ColorPicker(value="#d03030", description="colour")
        natural = w.Checkbox(value=False, description="natural colour")
        pu = w.FloatSlider(value=0.5, min=0, max=1, step=0.05, description="position x")
        pv = w.FloatSlider(value=0.5, min=0, max=1, step=0.05, description="position y")
        seed = w.IntSlider(value=0, min=0, max=50, description="seed")

        def draw(*_):
            hexc = color.value.lstrip("#")
            rgb = None if natural.value else tuple(int(hexc[i:i + 2], 16) / 255 for i in (0, 2, 4))
            r = explore_one(image, landmarks, kind.value, size.value, rgb, (pu.value, pv.value), seed.value)
            with out:
                out.clear_output(wait=True)
                fig = viz.image_grid([image, r.images[0], r.masks[0].float().expand(3, -1, -1)], ncols=3,
                                     titles=["face", f"{kind.value}: coverage {r.coverage[0]:.2f}", "mask"], size=2.6)
                viz.show_figure(fig)

        for c in (kind, size, color, natural, pu, pv, seed):
            c.observe(draw, names="value")
        draw()
        box = w.VBox([w.HBox([kind, seed, natural]), w.HBox([size, color]), w.HBox([pu, pv]), out])
        return box.add_class("occ3d-occlusion-explorer")  # a stable hook for the browser test

    return viz.interactive_or_static(widget, static)
