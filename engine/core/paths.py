"""Where the app keeps its data: results database, saved variants, settings."""

from __future__ import annotations

import os
import re
from pathlib import Path

APP_NAME = "MLXQuantStudio"
DATA_DIR_ENV = "MQS_DATA_DIR"

PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the checkout (engine/core/paths.py)
RESOURCES = PACKAGE_ROOT / "resources"
DEFAULT_MODEL_DIR = RESOURCES / "default_model"
DEFAULT_DATA = RESOURCES / "data" / "mnist_heldout.npz"
DEFAULT_VAL_DATA = RESOURCES / "data" / "mnist_val.npz"
SAMPLES_DIR = RESOURCES / "samples"
DEFAULT_LM_DIR = RESOURCES / "default_lm"


def user_data_dir() -> Path:
    """The directory for the results database and saved models.

    ``$MQS_DATA_DIR`` overrides the platform default (tests point it at a
    temporary directory).
    """
    override = os.environ.get(DATA_DIR_ENV)
    if override:
        path = Path(override).expanduser()
    else:
        import platformdirs

        path = Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path


def results_db_path() -> Path:
    return user_data_dir() / "results.sqlite3"


def variants_dir() -> Path:
    path = user_data_dir() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


_HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def is_hf_id(spec: str) -> bool:
    """``org/name`` that is no existing local path: a Hugging Face id."""
    return bool(_HF_ID.match(spec)) and not spec.startswith((".", "~")) and not Path(spec).expanduser().exists()
