"""Datasets, image decoding and preprocessing."""
