"""Data: the synthetic dataset, real image sets, face alignment, landmark detection, tracks and the Context.

synthetic (rendered faces with exact labels), real (CelebA, AFLW2000-3D, a photo folder), align (five-point
alignment to the 224 px crop), landmarks (dlib's 68 landmarks), tracks (which face model, dataset, teacher
and FaceNet a run uses), context (Context: profile, run folder, device, tracks and the shared face model,
renderer and dataset that every later stage takes).
"""
