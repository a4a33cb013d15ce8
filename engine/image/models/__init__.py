"""Image-classifier architectures in MLX (NHWC), one file each."""
