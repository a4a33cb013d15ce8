"""Headless reports: PNG plots (matplotlib's Agg backend) and text tables."""
