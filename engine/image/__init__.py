"""The image-classifier kind: architectures, bundles, datasets, importers, quantization, evaluation."""
