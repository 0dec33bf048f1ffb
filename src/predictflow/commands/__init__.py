"""The `predictflow` subcommands, grouped by what they act on; `predictflow.cli` assembles them.

Each parses its options, calls one library function and prints the facts (`--json`) or a short
text. Imports are lazy: `--help` and read-only commands load only what they use.
"""
