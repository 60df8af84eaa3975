"""Teaching aids for the notebooks: widgets, explorers and small probes."""
