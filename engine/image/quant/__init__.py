"""Weight quantization of whole models, convolutions included."""
