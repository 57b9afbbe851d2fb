"""A lock per bucket, for the per-container caches that concurrent records fill."""

from __future__ import annotations

import threading


class BucketLocks:
    """One lock per bucket, made on first use.

    Records of one batch run concurrently. Those that miss a bucket's cache entry at the
    same moment take its lock, so one of them asks AWS and the others read its answer,
    while records of other buckets go on unhindered.
    """

    def __init__(self) -> None:
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def of(self, bucket: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(bucket, threading.Lock())
