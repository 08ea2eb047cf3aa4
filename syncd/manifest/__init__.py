"""Import manifests: classify items, group them, and write what labeling platforms import."""
