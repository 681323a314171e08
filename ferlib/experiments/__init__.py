"""Experiments: a frozen config per experiment (`smoke` and `paper` presets) and its `run`."""
