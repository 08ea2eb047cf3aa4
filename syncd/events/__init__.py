"""Bucket events: payload parsers per provider → `ObjectEvent`, and the ordered applier."""
