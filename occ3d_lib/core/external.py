"""Files the user brings: where they are looked for and where to download them.

A path a notebook parameter names is resolved by :func:`user_path`; a missing file is a
``FileNotFoundError`` from :func:`require_file` that says what the file is, where to download it and
where to put it. What each real-track file is and where it comes from is written in data/README.md.
"""
from __future__ import annotations

import os
from pathlib import Path

from occ3d_lib.core.artifacts import REPO_ROOT


def user_path(path: str | Path) -> Path:
    """A path a user passed as a notebook parameter: ``~`` expanded; a relative path that does not exist
    from the working directory is taken from the repository root (notebooks run in ``notebooks/``)."""
    p = Path(os.path.expanduser(str(path)))
    if p.is_absolute() or p.exists():
        return p
    return REPO_ROOT / p


def require_file(path: str | Path, what: str, where_from: str, put_at: str | Path | None = None) -> Path:
    """``path`` if it exists; else a ``FileNotFoundError`` saying what it is, where to get it and where to put it."""
    path = Path(path)
    if path.exists():
        return path
    where = f" and put it at {put_at}" if put_at is not None else f" and put it at {path}"
    raise FileNotFoundError(f"{what} not found at {path}. Download it from {where_from}{where}. See data/README.md.")


# ------------------------------------------------------------------------ where each file comes from
#: Deep3DFaceRecon's index files that building BFM_model_front.mat needs (docs/facts.md §2).
BFM_INDEX_FILES = ("BFM_front_idx.mat", "BFM_exp_idx.mat", "facemodel_info.mat", "std_exp.txt")

#: What to do when BFM_model_front.mat (or a file needed to build it) is missing.
BFM_HELP = (
    "Get it one of two ways. (a) If you have Deep3DFaceRecon's BFM folder, copy its BFM_model_front.mat there. "
    "(b) Build it: register and download the Basel Face Model 2009 (01_MorphableModel.mat) from "
    "https://faces.dmi.unibas.ch/bfm/main.php?nav=1-2&id=downloads , the expression basis Exp_Pca.bin from "
    "Guo et al.'s CoarseData (https://github.com/Juyong/3DFace), and the index files "
    f"{', '.join(BFM_INDEX_FILES)} from https://github.com/sicxu/Deep3DFaceRecon_pytorch/tree/master/BFM ; then run "
    "`python -m occ3d_lib.face.bfm build-bfm --bfm 01_MorphableModel.mat --exp Exp_Pca.bin "
    "--index-dir <folder with the index files> --out data/BFM/BFM_model_front.mat`. "
    "See data/README.md. Notebook parameter: face_model = \"data/BFM/BFM_model_front.mat\".")

#: Where Guo et al.'s expression basis comes from.
EXP_PCA_HELP = ("Download the expression basis Exp_Pca.bin from Guo et al.'s CoarseData "
                "(https://github.com/Juyong/3DFace) and pass its path with --exp. See data/README.md.")

#: Where Deep3DFaceRecon's 3D landmark template comes from (5-point alignment, docs/facts.md §8).
LM3D_HELP = ("it is in https://github.com/sicxu/Deep3DFaceRecon_pytorch/tree/master/BFM (similarity_Lm3D_all.mat); "
             "put it at data/BFM/similarity_Lm3D_all.mat")

#: What to do when the teacher checkpoint (Deep3DFaceRecon's epoch_20.pth) is missing.
TEACHER_HELP = (
    "Download Deep3DFaceRecon_pytorch's pretrained model (the 'face_recon_feat0.2_augment' folder linked from "
    "https://github.com/sicxu/Deep3DFaceRecon_pytorch#inference-with-a-pre-trained-model ; it contains "
    "epoch_20.pth), put epoch_20.pth at data/deep3d/epoch_20.pth and set the notebook parameter "
    "teacher = \"data/deep3d/epoch_20.pth\" (or teacher = \"train\" to train a teacher here). "
    "See data/README.md.")

#: Where the real image sets come from (docs/facts.md §11).
CELEBA_FROM = ("the CelebA site, https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html (Google Drive 'Img/img_align_celeba.zip', "
               "'Eval/list_eval_partition.txt', 'Anno/identity_CelebA.txt', 'Anno/list_landmarks_align_celeba.txt'; "
               "non-commercial research use only)")
AFLW2000_FROM = ("the 3DDFA project page, http://www.cbsr.ia.ac.cn/users/xiangyuzhu/projects/3DDFA/main.htm "
                 "(AFLW2000-3D.zip; research use only)")


# ------------------------------------------------------------------------------------------ FaceNet
#: Published weights: file name in ``$TORCH_HOME/checkpoints`` and the size of its logits layer.
FACENET_WEIGHTS: dict[str, tuple[str, int]] = {
    "vggface2": ("20180402-114759-vggface2.pt", 8631),
    "casia-webface": ("20180408-102900-casia-webface.pt", 10575),
}
FACENET_RELEASE_URL = "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/"



def torch_home() -> Path:
    """``$TORCH_HOME`` or ``$XDG_CACHE_HOME/torch`` or ``~/.cache/torch`` (facenet-pytorch's rule)."""
    return Path(os.path.expanduser(os.getenv("TORCH_HOME", os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "torch"))))


def facenet_weights_path(name: str, must_exist: bool = False) -> Path:
    """``$TORCH_HOME/checkpoints/<file>`` of the published FaceNet weights ``name`` ('vggface2':
    20180402-114759-vggface2.pt, 'casia-webface': 20180408-102900-casia-webface.pt; facenet-pytorch's
    release files). With ``must_exist`` a missing file is a ``FileNotFoundError`` naming the download
    URL and the folder."""
    if name not in FACENET_WEIGHTS:
        raise ValueError(f"unknown FaceNet weights {name!r}; valid: {sorted(FACENET_WEIGHTS)}")
    path = torch_home() / "checkpoints" / FACENET_WEIGHTS[name][0]
    if must_exist:
        require_file(path, f"FaceNet weights {name!r} ({FACENET_WEIGHTS[name][0]})",
                     f"{FACENET_RELEASE_URL}{FACENET_WEIGHTS[name][0]} (facenet-pytorch release, MIT licence; trained "
                     f"on {'VGGFace2' if name == 'vggface2' else 'CASIA-WebFace'})",
                     f"{path} (set TORCH_HOME to use another folder), or use facenet = \"synthetic\"")
    return path
