"""Metrics for classifiers (and, later, language models)."""
