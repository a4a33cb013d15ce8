"""Measurement that knows no model kind: metrics, memory, environment, the results store, plots."""
