"""The emulator: moto's server on 127.0.0.1 with ``ops.moto_patches`` applied, its port
checked first, and clients that talk to it with the sandbox's own credentials."""

from __future__ import annotations

import functools
import logging
import socket
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import boto3

from ops import moto_patches

DEFAULT_PORT = 4566
HOST = "127.0.0.1"
# moto accepts any credentials; these are the ones the printed exports name.
UPLOADER_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


class SandboxError(Exception):
    """Bad input or a broken setup: the CLI prints the message and exits 2."""


def check_port_free(port: int, host: str = HOST) -> None:
    """Fail before starting anything: moto's server thread would die on the bind
    error while ``start()`` waits for it forever."""
    if not 1 <= port <= 65535:
        raise SandboxError(f"--port {port} is not a TCP port; use 1-65535 (default {DEFAULT_PORT})")
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # As werkzeug binds: connections of a stopped sandbox in TIME_WAIT do not count,
    # a listening socket does.
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        probe.bind((host, port))
    except OSError as exc:
        raise SandboxError(
            f"port {port} on {host} is in use ({exc.strerror}); another sandbox or emulator "
            f"(LocalStack also defaults to 4566) is running. Stop it, or pass a free port: --port 4567"
        ) from None
    finally:
        probe.close()


def free_port(host: str = HOST) -> int:
    """A port nothing listens on right now (for tests and scripts running several sandboxes)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


@functools.lru_cache(maxsize=8)
def _session(access_key: str, secret_key: str, token: str | None) -> boto3.session.Session:
    # One session per identity: a session caches the service models it has loaded,
    # and loading them again for every client costs about 0.3 s each.
    return boto3.session.Session(
        aws_access_key_id=access_key, aws_secret_access_key=secret_key, aws_session_token=token
    )


def client(service: str, endpoint_url: str, region: str, credentials: Mapping[str, str] | None = None):
    """A client of the emulator; explicit credentials, so a developer's real ones are never sent."""
    creds = credentials or UPLOADER_CREDENTIALS
    session = _session(creds["aws_access_key_id"], creds["aws_secret_access_key"], creds.get("aws_session_token"))
    return session.client(service, endpoint_url=endpoint_url, region_name=region)


@contextmanager
def running(port: int) -> Iterator[str]:
    """Patched moto on HOST:port with empty backends, for the ``with`` block; yields its URL.

    On leaving, the server stops and moto's own behaviour is restored."""
    check_port_free(port)
    from moto.server import ThreadedMotoServer

    # werkzeug logs every request at INFO; the sandbox reports what matters itself.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    endpoint_url = f"http://{HOST}:{port}"
    with moto_patches.patched():
        server = ThreadedMotoServer(ip_address=HOST, port=port, verbose=False)
        server.start()
        try:
            # Backends live in this process: another sandbox started here before (tests)
            # must not leave its buckets and tables behind.
            urllib.request.urlopen(urllib.request.Request(f"{endpoint_url}/moto-api/reset", method="POST"))
            yield endpoint_url
        finally:
            server.stop()
