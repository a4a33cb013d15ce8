"""A local HTTP inference service for image classifiers and language models.

The service is an optional extra (``pip install "mlx-quant-studio[serve]"``): only
``app.py`` and ``server.py`` import FastAPI and uvicorn, and they are imported
lazily, so the app and the CLI run without them.

Threads: uvicorn's event loop parses requests and decodes images (PIL, numpy);
every MLX operation runs on the one ``InferenceWorker`` thread that loaded the
model (MLX streams are thread-local). See ``worker.py``.
"""
