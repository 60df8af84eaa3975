"""The networks: ReconNet and MultiOcclusionNet, Deep3DFaceRecon checkpoints, the FaceNet wrapper.

models, checkpoints, facenet. Notebooks 03 and 04 use them.
"""
