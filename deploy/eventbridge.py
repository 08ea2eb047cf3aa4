"""Turn on a bucket's EventBridge delivery without touching its other notifications.

S3 keeps one notification configuration per bucket and every write replaces it whole, so
the Terraform resource that could switch EventBridge on would also remove the queues,
topics and functions someone else configured. This reads the configuration, adds
EventBridge, and writes back everything that was there.
"""

from __future__ import annotations

from typing import Any


def enable_eventbridge(s3: Any, bucket: str) -> bool:
    """Add EventBridge delivery to `bucket`'s notifications; False if it was already on."""
    current = dict(s3.get_bucket_notification_configuration(Bucket=bucket))
    current.pop("ResponseMetadata", None)
    if "EventBridgeConfiguration" in current:
        return False
    current["EventBridgeConfiguration"] = {}
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=current)
    return True
