"""Latency, throughput and memory measurement."""
