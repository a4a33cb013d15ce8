"""MLX Quant Studio entry point: `python main.py` starts the app, `python main.py COMMAND` the CLI."""

import os
import sys

# Flags the app itself takes; any other first argument that is not an existing file is a CLI command.
GUI_FLAGS = {"--selftest"}


def wants_gui(argv: list[str]) -> bool:
    return not argv or argv[0] in GUI_FLAGS or os.path.exists(argv[0])


def main(argv: list[str]) -> int:
    if wants_gui(argv):
        from gui.app import run

        return run(argv)
    from engine.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
