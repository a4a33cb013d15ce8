"""The Qt desktop app. It never runs MLX on the UI thread (see engine_thread.py)."""
