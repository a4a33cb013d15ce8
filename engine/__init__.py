"""MLX Quant Studio engine: plain Python + MLX, no Qt.

Everything the GUI does goes through this package, so tests and the command
line can do it too.
"""

__version__ = "0.1.0"
