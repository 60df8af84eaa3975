"""Rendering a face: camera (Eq. 5), lighting (Eq. 4, spherical harmonics), rasterisers, renderer.

camera, lighting, raster (occ3d's batched rasteriser), raster_reference (a plain-loop rasteriser the tests
and notebook 01 compare against), raster_pytorch3d (PyTorch3D as a backend), renderer (FaceRenderer).
Notebook 01 teaches it.
"""
