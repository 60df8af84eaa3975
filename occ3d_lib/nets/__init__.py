"""The networks: ReconNet and MultiOcclusionNet, Deep3DFaceRecon checkpoints, the FaceNet wrapper.

models, predict (running a network over many images), checkpoints, facenet, pretrained (the shipped
networks). Notebooks 03 to 05 use them.
"""
