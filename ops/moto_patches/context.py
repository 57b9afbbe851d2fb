"""Per-request state the patches share: the S3 request being served, its caller, and the
commit hook (the test seam that lets a newer PUT land while a copy is in flight).

:func:`commit_hook` runs ``fn(bucket, key)`` inside CopyObject and CompleteMultipartUpload
after the source was read and before the destination is committed (and before patch 6
evaluates If-Match). The hook may call back into moto (no lock is held while it runs).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from moto.s3.responses import S3Response

_tls = threading.local()  # .requests (S3Response stack: in-process calls nest), .completing, .s3_eventbridge
_hook: Callable[[str, str], None] | None = None
_hook_running = False  # global, not per thread: in server mode the hook's calls run elsewhere


# --------------------------------------------------------------------------- request context


def _stack() -> list[Any]:
    if not hasattr(_tls, "requests"):
        _tls.requests = []
    return _tls.requests


def _current() -> Any | None:
    stack = _stack()
    return stack[-1] if stack else None


def _header(name: str) -> str | None:
    req = _current()
    return req.headers.get(name) if req is not None else None


def _caller() -> tuple[str, str] | None:
    """(UserId, Account) exactly as moto's STS GetCallerIdentity answers for this request's key."""
    req = _current()
    if req is None:
        return None
    try:
        from moto.sts.models import sts_backends
        from moto.utilities.utils import get_partition

        sts = sts_backends[req.current_account][get_partition(req.region)]
        user_id, _arn, account = sts.get_caller_identity(req.get_access_key(), req.region)
        return user_id, account
    except Exception:  # noqa: BLE001 - a notification must never fail the request
        return None


def _wrap_entry(original: Callable[..., Any]) -> Callable[..., Any]:
    def entry(self: S3Response, *args: Any, **kwargs: Any) -> Any:
        stack = _stack()
        stack.append(self)
        try:
            return original(self, *args, **kwargs)
        finally:
            stack.pop()

    return entry


# --------------------------------------------------------------------------- commit hook


def _run_commit_hook(bucket: str, key: str) -> None:
    global _hook_running
    fn = _hook
    if fn is None or _hook_running:
        return
    _hook_running = True
    try:
        fn(bucket, key)
    finally:
        _hook_running = False


@contextmanager
def commit_hook(fn: Callable[[str, str], None]) -> Iterator[None]:
    """Run ``fn(bucket, key)`` in CopyObject / CompleteMultipartUpload between reading the
    source and committing the destination (before If-Match is checked)."""
    global _hook
    previous, _hook = _hook, fn
    try:
        yield
    finally:
        _hook = previous
