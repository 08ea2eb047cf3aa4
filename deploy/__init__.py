"""Builds the function packages (`syncd deploy package`) and prepares buckets for them."""
