"""The PyInstaller spec and the bundle's Info.plist, checked without running PyInstaller."""

from __future__ import annotations

import ast
import importlib.util
import plistlib
import re
import sys
from pathlib import Path

import pytest

from engine.kinds.files import BUNDLE, CHECKPOINT, IMAGE, classify

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "packaging" / "mlx_quant_studio.spec"
sys.path.insert(0, str(ROOT / "packaging"))
import bundle_info  # noqa: E402


def spec_calls() -> dict[str, ast.Call]:
    tree = ast.parse(SPEC.read_text(encoding="utf-8"), filename=str(SPEC))
    calls = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            calls.setdefault(node.func.id, node)
    return calls


def keyword(call: ast.Call, name: str) -> ast.expr:
    return next(k.value for k in call.keywords if k.arg == name)


def test_spec_parses_and_builds_from_the_shared_lists():
    calls = spec_calls()
    assert {"Analysis", "PYZ", "EXE", "COLLECT", "BUNDLE"} <= set(calls)
    analysis = calls["Analysis"]
    assert ast.unparse(keyword(analysis, "hiddenimports")) == "HIDDEN_IMPORTS"
    assert ast.unparse(keyword(analysis, "excludes")) == "EXCLUDES"
    assert "main.py" in ast.unparse(analysis.args[0])
    assert "Agg" in ast.unparse(keyword(analysis, "hooksconfig"))
    bundle = calls["BUNDLE"]
    assert ast.unparse(keyword(bundle, "info_plist")) == "info_plist()"
    assert ast.unparse(keyword(bundle, "bundle_identifier")) == "BUNDLE_ID"
    # The metallib gets a top-level link beside the libmlx.dylib link (see the spec's comment).
    assert '("mlx.metallib", metallibs[0], "SYMLINK")' in SPEC.read_text(encoding="utf-8")


def test_hidden_imports_cover_every_python_module_mlx_core_imports_from_cpp():
    import mlx.core

    binary = Path(mlx.core.__file__).read_bytes()
    # Module names the extension passes to an import call are whole NUL-terminated C strings, unlike
    # names quoted inside docstrings; keep those that are Python source modules of the mlx package.
    named = {m.decode() for m in re.findall(rb"(?<=\x00)mlx\.[A-Za-z_][A-Za-z0-9_]*(?=\x00)", binary)}
    python_modules = {n for n in named if (s := importlib.util.find_spec(n)) and s.origin and s.origin.endswith(".py")}
    assert {"mlx._reprlib_fix", "mlx.__array_api_info"} <= python_modules
    assert python_modules <= set(bundle_info.HIDDEN_IMPORTS)


def test_heavy_optional_frameworks_are_excluded():
    assert {"torch", "tensorflow", "keras", "onnxruntime", "jax", "tkinter"} <= set(bundle_info.EXCLUDES)
    for runtime in ("mlx", "mlx_lm", "numpy", "PIL", "PySide6", "pyqtgraph", "matplotlib", "platformdirs"):
        assert runtime not in bundle_info.EXCLUDES


def test_resources_exist_and_version_matches_the_engine():
    import engine

    for r in bundle_info.RESOURCES:
        assert (ROOT / r).exists(), r
    assert bundle_info.version() == engine.__version__


def test_info_plist_serialises_and_declares_the_documents_the_app_routes(tmp_path):
    info = bundle_info.info_plist()
    plistlib.loads(plistlib.dumps(info))  # only plist types
    assert info["CFBundleIdentifier"] == "org.mlxquantstudio.app"
    assert info["NSHighResolutionCapable"] is True
    assert info["LSMinimumSystemVersion"] == "14.0"
    assert info["CFBundleShortVersionString"] == bundle_info.version()

    utis = {t for d in info["CFBundleDocumentTypes"] for t in d["LSItemContentTypes"]}
    assert {"public.png", "public.jpeg", "public.tiff", "com.microsoft.bmp", "org.webmproject.webp"} <= utis
    assert "public.folder" in utis
    declared = {d["UTTypeIdentifier"]: d for d in info["UTImportedTypeDeclarations"]}
    assert declared.keys() <= utis
    extensions = {e for d in declared.values() for e in d["UTTypeTagSpecification"]["public.filename-extension"]}
    assert {"safetensors", "pth", "keras", "h5", "onnx", "gguf"} <= extensions

    # Every extension the bundle claims is routed by the app to the matching place.
    for ext in extensions:
        f = tmp_path / f"model.{ext}"
        f.write_bytes(b"\0")
        assert classify(f) == CHECKPOINT, ext
    for ext in ("png", "jpg", "jpeg", "tif", "tiff", "bmp", "webp"):
        f = tmp_path / f"image.{ext.upper()}"
        f.write_bytes(b"\0")
        assert classify(f) == IMAGE, ext
    (tmp_path / "bundle").mkdir()
    (tmp_path / "bundle" / "config.json").write_text("{}")
    assert classify(tmp_path / "bundle") == BUNDLE
    assert classify(tmp_path) is None  # a folder without config.json
    assert classify(tmp_path / "missing.png") is None


@pytest.mark.skipif(importlib.util.find_spec("PyInstaller") is None, reason="PyInstaller not installed")
def test_pyinstaller_knows_the_spec_keywords():
    """The keywords the spec passes exist in the installed PyInstaller (a typo would fail the build)."""
    import inspect

    from PyInstaller.building.api import COLLECT, EXE, PYZ  # noqa: F401
    from PyInstaller.building.build_main import Analysis
    from PyInstaller.building.osx import BUNDLE

    calls = spec_calls()
    params = set(inspect.signature(Analysis.__init__).parameters)
    assert {k.arg for k in calls["Analysis"].keywords} <= params
    # EXE, COLLECT and BUNDLE take **kwargs; check against the names they read.
    for name, cls in (("EXE", EXE), ("BUNDLE", BUNDLE)):
        source = inspect.getsource(cls.__init__)
        for k in calls[name].keywords:
            assert f"'{k.arg}'" in source or f'"{k.arg}"' in source or f" {k.arg}=" in source, (name, k.arg)
