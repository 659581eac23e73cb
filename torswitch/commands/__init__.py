"""Subcommand groups of the `torswitch` command, one module each (see torswitch.cli)."""
