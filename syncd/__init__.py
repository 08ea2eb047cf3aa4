"""syncd keeps labeling-platform datasets in step with buckets and folders."""

__version__ = "0.1.0"
