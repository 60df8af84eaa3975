"""Teaching aids for the notebooks: explorers (ipywidgets panels with a static headless fallback) and probes.

explorers (the face explorer of notebook 01, the occlusion explorer of notebook 02, and the functions
behind them), probes (a ridge-regression landmark probe and the rasteriser function notebook 01
gradchecks), compare (notebook 05's model comparer), photo (a learner's own photo, notebook 05 section 11b)
and live (a loss curve redrawn while a stage trains, and runtime notes from the published run; notebooks 03-04).
"""
