"""Latency injection and call counting for boto3 clients (benchmarks only).

A ``before-call`` hook fires once per API call, before moto answers it, so sleeping
there adds a fixed round trip to every call the code under test makes, and counting
there counts what AWS would bill.
"""

from __future__ import annotations

import threading
import time
from collections import Counter


class CallMeter:
    def __init__(self, delay_seconds: float = 0.020):
        self.delay = delay_seconds
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()

    def attach(self, *clients) -> CallMeter:
        for client in clients:
            service = client.meta.service_model.service_name
            client.meta.events.register(f"before-call.{service}", self._hook(service))
        return self

    def _hook(self, service: str):
        def hook(model, **_):
            with self._lock:
                self.calls[f"{service}.{model.name}"] += 1
            if self.delay:
                time.sleep(self.delay)

        return hook

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    def per_object(self, objects: int) -> dict[str, float]:
        return {op: n / objects for op, n in sorted(self.calls.items())}
