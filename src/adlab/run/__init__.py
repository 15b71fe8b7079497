"""Runs: training, evaluation, prediction and late fusion, each ending in a run directory."""
