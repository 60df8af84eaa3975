"""Synthetic occlusion: the kinds of the paper (DSOFI, DHOFI, SHOFI, full, random pattern) and sets of them.

shapes (occluder shapes, drawings and fills), occlude (occlude, multi-occlusion sets, the training
occluder, evaluation sets). Notebook 02 teaches it.
"""
