"""What the app bundle is: names, version, Info.plist, hidden imports and exclusions.

packaging/mlx_quant_studio.spec builds from these; tests/packaging checks them without
running PyInstaller.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from engine.kinds.files import DOCUMENT_TYPES  # noqa: E402

APP_NAME = "MLX Quant Studio"
LINUX_NAME = "mlx-quant-studio"
BUNDLE_ID = "org.mlxquantstudio.app"
MIN_MACOS = "14.0"  # MLX's wheels need macOS 14 on Apple silicon

# MLX's C++ extension imports these itself (nanobind module init in mlx/core), so PyInstaller's
# bytecode scan never sees them; without them `import mlx.core` fails in the frozen app.
HIDDEN_IMPORTS = [
    "mlx._reprlib_fix",
    "mlx.__array_api_info",
]

# Optional importers use these only when the user has them; the app never needs them, and the
# bytecode scan would otherwise pull them in (torch alone is ~750 MB). h5py stays: a Keras/HDF5
# importer reads weights with it.
EXCLUDES = [
    "torch",
    "torchvision",
    "torchaudio",
    "tensorflow",
    "tensorboard",
    "keras",
    "tf_keras",
    "jax",
    "jaxlib",
    "onnxruntime",
    "sklearn",
    "scipy",
    "pandas",
    "IPython",
    "ipykernel",
    "jupyter_client",
    "notebook",
    "tkinter",
    "_tkinter",
    "PyQt5",
    "PyQt6",
    "PySide2",
    "pytest",
    "hypothesis",
    "fastapi",
    "uvicorn",
    "httpx",
]

# Shipped with the app (engine/core/paths.py finds them under <bundle>/resources).
RESOURCES = ["resources/default_model", "resources/data", "resources/samples", "resources/icon.png"]


def version() -> str:
    """engine.__version__, read from the source so building does not import the engine."""
    text = (ROOT / "engine" / "__init__.py").read_text(encoding="utf-8")
    return re.search(r'__version__ = "([^"]+)"', text).group(1)


def document_types() -> tuple[list[dict], list[dict]]:
    """CFBundleDocumentTypes and UTImportedTypeDeclarations from engine.kinds.files.DOCUMENT_TYPES."""
    doc_types, imported = [], []
    for t in DOCUMENT_TYPES:
        doc_types.append(
            {
                "CFBundleTypeName": t.name,
                "CFBundleTypeRole": "Viewer",
                "LSItemContentTypes": [t.uti],
                # Images and folders belong to Preview and Finder; the app is only an alternative.
                "LSHandlerRank": "Default" if t.declared else "Alternate",
            }
        )
        if t.declared:
            imported.append(
                {
                    "UTTypeIdentifier": t.uti,
                    "UTTypeDescription": t.name,
                    "UTTypeConformsTo": ["public.data"],
                    "UTTypeTagSpecification": {"public.filename-extension": list(t.extensions)},
                }
            )
    return doc_types, imported


def info_plist() -> dict:
    """Info.plist entries for BUNDLE (PyInstaller adds CFBundleExecutable, CFBundleIconFile, ...)."""
    doc_types, imported = document_types()
    v = version()
    return {
        "CFBundleName": APP_NAME,
        "CFBundleDisplayName": APP_NAME,
        "CFBundleIdentifier": BUNDLE_ID,
        "CFBundleShortVersionString": v,
        "CFBundleVersion": v,
        "CFBundleDevelopmentRegion": "en",
        "NSHighResolutionCapable": True,
        "NSRequiresAquaSystemAppearance": False,  # allow Dark Mode
        "LSMinimumSystemVersion": MIN_MACOS,
        "LSArchitecturePriority": ["arm64"],
        "LSRequiresNativeExecution": True,  # never under Rosetta: MLX needs Apple silicon
        "LSApplicationCategoryType": "public.app-category.developer-tools",
        "NSHumanReadableCopyright": "MIT License",
        "CFBundleDocumentTypes": doc_types,
        "UTImportedTypeDeclarations": imported,
    }
