"""The study layer: the results registry, training fingerprints, the sweep and the claims."""
