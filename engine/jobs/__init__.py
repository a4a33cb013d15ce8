"""Jobs: the units of work the GUI's engine thread, the CLI and the service run (kind-agnostic where they can be)."""
