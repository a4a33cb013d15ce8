"""Language models through mlx-lm: load (folders, Hugging Face ids, GGUF), quantize,
perplexity, streaming generation and speed.

``engine.llm.detect`` is import-light (no MLX) so the GUI can classify folders.
"""
