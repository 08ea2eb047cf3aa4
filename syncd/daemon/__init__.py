"""The daemon: syncd run."""
