"""Datasets, manifests, protocols, folds and the uint8 image cache."""
