"""A moto server for benchmarks: the project's moto patches, a fixed delay per request,
and a count of requests per operation.

    python -m bench.emulator --port 5055 --latency-ms 20

Runs in a process of its own so that both tools under test (``ops backfill`` and
``aws s3 cp``) talk to the very same server over HTTP, and its CPU is not shared with
either. The delay is a sleep in a WSGI middleware before moto sees the request: every
request pays the same round trip, whichever client sent it.

Control endpoints (neither delayed nor counted):

* ``GET  /_bench/stats``            -> {"latency_ms": 20, "requests": {"s3.HeadObject": 2000, ...}}
* ``POST /_bench/reset``            -> zero the counts
* ``POST /_bench/latency?ms=100``   -> change the delay
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from urllib.parse import parse_qs

_CREDENTIAL_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request")
_REPO = Path(__file__).resolve().parent.parent


def s3_operation(method: str, path: str, query: dict[str, list[str]], copy_source: bool) -> str:
    """The S3 API operation of a path-style request (what the clients here send)."""
    has_key = "/" in path.strip("/")
    if not has_key:
        if method == "GET":
            if "versions" in query:
                return "ListObjectVersions"
            if "list-type" in query:
                return "ListObjectsV2"
            for sub in ("ownershipControls", "encryption", "versioning", "notification", "acl", "location"):
                if sub in query:
                    return f"GetBucket{sub[0].upper()}{sub[1:]}"
            return "ListObjects"
        if method == "PUT":
            for sub in ("ownershipControls", "encryption", "versioning", "notification", "acl"):
                if sub in query:
                    return f"PutBucket{sub[0].upper()}{sub[1:]}"
            return "CreateBucket"
        return {"HEAD": "HeadBucket", "DELETE": "DeleteBucket", "POST": "DeleteObjects"}.get(method, method)
    if method == "HEAD":
        return "HeadObject"
    if method == "GET":
        for sub, name in (("tagging", "GetObjectTagging"), ("acl", "GetObjectAcl"), ("uploadId", "ListParts"),
                          ("attributes", "GetObjectAttributes")):
            if sub in query:
                return name
        return "GetObject"
    if method == "PUT":
        if "encryption" in query:
            return "UpdateObjectEncryption"
        if "tagging" in query:
            return "PutObjectTagging"
        if "acl" in query:
            return "PutObjectAcl"
        if "partNumber" in query:
            return "UploadPartCopy" if copy_source else "UploadPart"
        return "CopyObject" if copy_source else "PutObject"
    if method == "POST":
        if "uploads" in query:
            return "CreateMultipartUpload"
        if "uploadId" in query:
            return "CompleteMultipartUpload"
        return "PostObject"
    if method == "DELETE":
        return "AbortMultipartUpload" if "uploadId" in query else "DeleteObject"
    return method


def operation_of(environ: dict) -> str:
    match = _CREDENTIAL_SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
    service = match.group(1) if match else "unknown"
    if service == "s3":
        query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        return "s3." + s3_operation(
            environ["REQUEST_METHOD"], environ.get("PATH_INFO", "/"), query, "HTTP_X_AMZ_COPY_SOURCE" in environ
        )
    target = environ.get("HTTP_X_AMZ_TARGET")  # JSON protocols: "TrentService.CreateKey"
    return f"{service}.{target.rsplit('.', 1)[-1]}" if target else f"{service}.{environ['REQUEST_METHOD']}"


class LatencyAndCount:
    """WSGI middleware: sleep ``delay`` seconds per request, count it by operation."""

    def __init__(self, app, delay_seconds: float):
        self.app = app
        self.delay = delay_seconds
        self.requests: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_bench/"):
            return self._control(environ, start_response, path)
        operation = operation_of(environ)
        with self._lock:
            self.requests[operation] += 1
        if self.delay:
            time.sleep(self.delay)
        return self.app(environ, start_response)

    def _control(self, environ, start_response, path):
        if path == "/_bench/reset":
            with self._lock:
                self.requests.clear()
        elif path == "/_bench/latency":
            ms = float(parse_qs(environ.get("QUERY_STRING", "")).get("ms", ["0"])[0])
            self.delay = ms / 1000
        with self._lock:
            body = json.dumps({"latency_ms": self.delay * 1000, "requests": dict(self.requests)}).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]


def serve(port: int, latency_ms: float) -> None:
    # Imported here: the benchmark driver imports this module for ``Emulator`` only.
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    from ops import moto_patches

    # One log line per request would cost the emulator CPU that both tools compete for.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    moto_patches.apply()
    app = LatencyAndCount(DomainDispatcherApplication(create_backend_app), latency_ms / 1000)
    server = make_server("127.0.0.1", port, app, threaded=True, request_handler=MotoRequestHandler)
    print(f"emulator listening on http://127.0.0.1:{port} ({latency_ms:g} ms per request)", flush=True)
    server.serve_forever()


# -- for the benchmark driver ------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Emulator:
    """Start ``python -m bench.emulator`` as a subprocess and talk to its control endpoints."""

    def __init__(self, latency_ms: float = 0, port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.emulator", "--port", str(self.port), "--latency-ms", str(latency_ms)],
            cwd=_REPO,
            env={**os.environ, "PYTHONPATH": str(_REPO)},
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                self.stats()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"the emulator did not start on port {self.port}") from None
                time.sleep(0.1)

    def _call(self, path: str, method: str = "GET") -> dict:
        request = urllib.request.Request(self.url + path, method=method, data=b"" if method == "POST" else None)
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def stats(self) -> dict:
        return self._call("/_bench/stats")

    def reset(self) -> None:
        self._call("/_bench/reset", "POST")

    def set_latency(self, ms: float) -> None:
        self._call(f"/_bench/latency?ms={ms}", "POST")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def __enter__(self) -> Emulator:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=5055)
    parser.add_argument("--latency-ms", type=float, default=20)
    args = parser.parse_args(argv)
    serve(args.port, args.latency_ms)


if __name__ == "__main__":
    main()
