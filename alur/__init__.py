"""Alur: the shared runtime, local infrastructure and the `alur` command line."""
