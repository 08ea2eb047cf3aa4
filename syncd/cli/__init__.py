"""The `syncd` command: thin modules that parse arguments, call the library, render output."""

from syncd.cli.main import main

__all__ = ["main"]
