"""The emulator: moto's server on 127.0.0.1 with ``ops.moto_patches`` applied, its port
checked first, and clients that talk to it with the sandbox's own credentials.

By default the server runs in a process of its own (:func:`serve`):
moto is pure Python, so in the sandbox's process it would share one interpreter lock
with the enforcer's pollers and their threads; apart, each has a core (the figures are
in docs/ops.md, "The sandbox under load"). ``separate_process=False`` keeps it in this
process, where tests can reach moto's backends and patches directly.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

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


def client(
    service: str, endpoint_url: str, region: str, credentials: Mapping[str, str] | None = None, config=None
):
    """A client of the emulator; explicit credentials, so a developer's real ones are never sent."""
    creds = credentials or UPLOADER_CREDENTIALS
    session = _session(creds["aws_access_key_id"], creds["aws_secret_access_key"], creds.get("aws_session_token"))
    return session.client(service, endpoint_url=endpoint_url, region_name=region, config=config)


# How long a fresh interpreter may take to import moto and answer (about 2 s here).
SERVER_START_SECONDS = 60
# Set to a file name, the server process profiles moto's request handling (cProfile,
# every request thread) and writes the pstats there when it stops (bench/sandbox_load.py).
PROFILE_VARIABLE = "S3PK_PROFILE_EMULATOR"
_PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _reset(endpoint_url: str) -> None:
    urllib.request.urlopen(urllib.request.Request(f"{endpoint_url}/moto-api/reset", method="POST"), timeout=10)


@contextmanager
def moto_speedups() -> Iterator[None]:
    """Two costs of moto 5.2.5 that grow with load, removed without changing an answer
    (profiled under bench/sandbox_load.py; figures in docs/ops.md):

    * its dispatcher lists moto's package directory (hundreds of ``stat`` calls) twice
      per request, inside the lock every request takes
      (``DomainDispatcherApplication.get_backend_for_host``). The list does not change
      while the server runs: computed once.
    * ReceiveMessage checks each message's retention through ``get_queue_attributes``,
      which computes every attribute of the queue, message counts included, three
      times: O(queue depth) per message received. It reads the one attribute instead.
    """
    from moto import backends
    from moto.core.utils import unix_time
    from moto.sqs.models import SQSBackend

    original_modules = backends.list_of_moto_modules
    original_retention = SQSBackend.is_message_valid_based_on_retention_period
    modules = tuple(original_modules())

    def is_message_valid_based_on_retention_period(self, queue_name, message):
        retention = int(self.get_queue(queue_name).message_retention_period)
        return retention + message.sent_timestamp / 1000 > unix_time()

    backends.list_of_moto_modules = lambda: modules
    SQSBackend.is_message_valid_based_on_retention_period = is_message_valid_based_on_retention_period
    try:
        yield
    finally:
        backends.list_of_moto_modules = original_modules
        SQSBackend.is_message_valid_based_on_retention_period = original_retention


@contextmanager
def running(port: int, separate_process: bool = True) -> Iterator[str]:
    """Patched moto on HOST:port with empty backends, for the ``with`` block; yields its URL.

    On leaving, the server stops (and, in this process, moto's own behaviour is restored)."""
    check_port_free(port)
    if separate_process:
        with _server_process(port) as endpoint_url:
            yield endpoint_url
        return
    from moto.server import ThreadedMotoServer

    # werkzeug logs every request at INFO; the sandbox reports what matters itself.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    endpoint_url = f"http://{HOST}:{port}"
    with moto_patches.patched(), moto_speedups():
        server = ThreadedMotoServer(ip_address=HOST, port=port, verbose=False)
        server.start()
        try:
            # Backends live in this process: another sandbox started here before (tests)
            # must not leave its buckets and tables behind.
            _reset(endpoint_url)
            yield endpoint_url
        finally:
            server.stop()


@contextmanager
def _server_process(port: int) -> Iterator[str]:
    endpoint_url = f"http://{HOST}:{port}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(_PROJECT_ROOT), os.environ.get("PYTHONPATH")]))}
    # A session of its own: Ctrl-C reaches the sandbox, which stops its pollers first and
    # then this server, so that no request in flight meets a dead server.
    process = subprocess.Popen(
        [sys.executable, "-c", f"from ops.sandbox.emulator import serve; serve({port}, parent={os.getpid()}, "
         f"profile={os.environ.get(PROFILE_VARIABLE)!r})"],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + SERVER_START_SECONDS
        while True:
            try:
                _reset(endpoint_url)
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if process.poll() is not None:
                    raise SandboxError(
                        f"the emulator process exited with code {process.returncode} before serving port {port}; "
                        "its error is printed above"
                    ) from None
                if time.monotonic() > deadline:
                    raise SandboxError(f"the emulator did not answer on port {port} within {SERVER_START_SECONDS}s") from None
                time.sleep(0.1)
        yield endpoint_url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _exit_with_parent(parent: int) -> None:
    # Killed without cleanup (kill -9), the sandbox cannot stop its server: the server
    # notices that it was re-parented and frees the port.
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(0)


class _Profiled:
    """WSGI middleware: a cProfile per concurrent request (werkzeug starts a thread per
    connection; the profiles are reused), enabled while moto answers. Wall-clock time: a
    request waiting for moto's dispatcher lock or a long poll counts too."""

    def __init__(self, app):
        import cProfile

        self.app = app
        self.profiles: list[cProfile.Profile] = []
        self.free: list[cProfile.Profile] = []
        self.lock = threading.Lock()
        self.new = cProfile.Profile

    def __call__(self, environ, start_response):
        with self.lock:
            if not self.free:
                self.profiles.append(self.new())
                self.free.append(self.profiles[-1])
            profile = self.free.pop()
        profile.enable()
        try:
            return self.app(environ, start_response)
        finally:
            profile.disable()
            with self.lock:
                self.free.append(profile)

    def dump(self, path: str) -> None:
        import pstats

        with self.lock:
            if self.profiles:
                pstats.Stats(*self.profiles).dump_stats(path)


def serve(port: int, parent: int | None = None, profile: str | None = None) -> None:
    """The server process (``running`` starts it): patched moto on HOST:port until SIGTERM."""
    import signal

    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    moto_patches.apply()
    stay = moto_speedups()
    stay.__enter__()  # for the life of this process (``stay`` keeps it from being collected and undone)
    # What ThreadedMotoServer runs, built here so that the profiler can wrap it.
    app = DomainDispatcherApplication(create_backend_app)
    profiled = _Profiled(app) if profile else None
    server = make_server(HOST, port, profiled or app, threaded=True, request_handler=MotoRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    if parent:
        threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    while not stopped.wait(1):
        pass
    server.shutdown()
    if profiled:
        profiled.dump(profile)
