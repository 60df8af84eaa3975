"""The face: 257 coefficients, the 3D morphable model and where it comes from.

coeffs (the coefficient split of Eq. 3-5), facemodel (FaceModel: shape, albedo, landmarks, normals),
procedural (the embedded BFM-layout model), bfm (reading and building BFM_model_front.mat; its
command line is ``python -m occ3d_lib.face.bfm``). Notebook 01 teaches it.
"""
