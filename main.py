"""MLX Quant Studio entry point: `python main.py` starts the app, `python main.py COMMAND` the CLI."""

import sys

GUI_FLAGS = {"--selftest"}


def main(argv: list[str]) -> int:
    from engine.cli import COMMANDS

    if argv and (argv[0] in COMMANDS or (argv[0].startswith("-") and argv[0] not in GUI_FLAGS)):
        from engine.cli import main as cli_main

        return cli_main(argv)
    from gui.app import run

    return run(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
