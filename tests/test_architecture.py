"""The guardrails of docs/architecture.md, run by the test command itself.

ruff (lint and format) and the import-linter contracts (the layers, no Qt in the engine, the web
stack inside the service) must pass; the engine has no import cycles; the command line imports
only the command it runs.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        found = shutil.which(name)
        if found is None:
            pytest.fail(f"{name} is not installed: it is part of the test extra")
        return found
    return str(path)


def run(*cmd: str, cwd: Path = ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300, env=env)


def test_ruff_check():
    out = run(tool("ruff"), "check", ".")
    assert out.returncode == 0, out.stdout + out.stderr


def test_ruff_format():
    out = run(tool("ruff"), "format", "--check", ".")
    assert out.returncode == 0, out.stdout + out.stderr


def test_import_contracts_hold():
    out = run(tool("lint-imports"), "--no-cache")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "broken" in out.stdout and " 0 broken" in out.stdout
    assert "Layers: gui > cli > serve > jobs > runtime > kinds > llm > image > measure > " in out.stdout


def test_an_upward_import_breaks_the_layers_contract(tmp_path):
    """The contract is no decoration: core importing the jobs layer fails lint-imports."""
    for part in ("engine", "gui", "pyproject.toml"):
        src = ROOT / part
        if src.is_dir():
            shutil.copytree(src, tmp_path / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, tmp_path / part)
    (tmp_path / "engine" / "core" / "cycle.py").write_text("from engine.jobs import image  # noqa: F401\n")
    env = {"PATH": str(BIN), "PYTHONPATH": str(tmp_path), "HOME": str(tmp_path)}
    out = run(tool("lint-imports"), "--no-cache", cwd=tmp_path, env=env)
    assert out.returncode != 0
    assert "BROKEN" in out.stdout and "engine.core.cycle -> engine.jobs.image" in out.stdout, out.stdout


def engine_cycles() -> list[list[str]]:
    """Strongly connected components (of more than one module) of the engine's import graph."""
    import grimp

    graph = grimp.build_graph("engine", exclude_type_checking_imports=True)
    modules = sorted(m for m in graph.modules if m.startswith("engine"))
    edges = {
        m: sorted(i for i in graph.find_modules_directly_imported_by(m) if i.startswith("engine")) for m in modules
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for m in modules:
        if m not in index:
            visit(m)
    return found


def test_no_import_cycles_in_the_engine():
    assert engine_cycles() == []


def imported_by(code: str) -> set[str]:
    out = run(sys.executable, "-c", f"import sys\n{code}\nprint('\\n'.join(sorted(sys.modules)))")
    assert out.returncode == 0, out.stderr
    return set(out.stdout.split())


def test_top_level_help_imports_no_model_code():
    mods = imported_by("import main\ntry:\n    main.main(['--help'])\nexcept SystemExit:\n    pass")
    heavy = sorted(m for m in mods if m.startswith(("mlx", "mlx_lm", "engine.image", "engine.llm", "engine.jobs")))
    assert heavy == []
    assert not [m for m in mods if m.startswith("engine.cli.")], "no command module for the top-level help"


def test_quantize_help_imports_only_the_quantize_command():
    mods = imported_by("import main\ntry:\n    main.main(['quantize', '--help'])\nexcept SystemExit:\n    pass")
    commands = sorted(m for m in mods if m.startswith("engine.cli."))
    # quantize's own module and the two helpers it names: the recipe options and the language-model half.
    assert commands == ["engine.cli.language", "engine.cli.quant", "engine.cli.quantize"]
    assert not [m for m in mods if m.startswith(("mlx", "engine.llm", "engine.jobs", "engine.runtime"))]
    # The --method option's names and defaults, read without loading the algorithms (or MLX).
    image = sorted(m for m in mods if m.startswith("engine.image"))
    assert set(image) <= {
        "engine.image",
        "engine.image.quant",
        "engine.image.quant.methods",
        "engine.image.quant.methods.names",
        "engine.image.quant.methods.options",
    }, image
