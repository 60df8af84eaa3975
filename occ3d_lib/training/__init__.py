"""Training: the loop, the losses and the stages of the paper.

train (Trainer: seeded, resumable, cached by config hash), recipe (the one recipe every stage follows:
its TrainConfig from the profile, its folder, history and freezing), distributed (torch.distributed
helpers), losses (Eqs. 1, 6-9), stages (teacher and SOPI, Secs. 3.1-3.2.1), embedder (the FaceNet
trained on synthetic identities), mopi (Sec. 3.2.2). Notebooks 03 and 04 teach it.
"""
