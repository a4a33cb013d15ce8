"""Import checkpoints trained elsewhere into MLX model bundles."""
