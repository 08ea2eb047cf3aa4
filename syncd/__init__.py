"""syncd keeps labeling-platform datasets in step with buckets and folders.

The Python API is `syncd.open(config) -> syncd.project.Project`; see that module.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from syncd.project import Project

__version__ = "0.1.0"


def open(config: str | Path | None = None, *, catalog: str | None = None) -> Project:
    """The project of `config` (else `$SYNCD_CONFIG`, else `./syncd.yaml`), its catalog
    at `catalog` or where the config says."""
    # Imported here: handlers import syncd.events and must not pay for the whole library.
    from syncd.project import Project

    return Project.open(config, catalog=catalog)
