"""AWS clients for the operator commands: every command that talks to AWS takes
``--endpoint-url`` and ``--region``, so it runs against the sandbox as well."""

from __future__ import annotations

from dataclasses import dataclass

import boto3

from enforcer.clients import aws_config


@dataclass(frozen=True)
class Target:
    endpoint_url: str | None = None
    region: str | None = None

    def client(self, service: str, *, retry_mode: str = "adaptive", pool: int = 32):
        # adaptive: long operator runs should slow down on S3/KMS throttling by themselves
        return boto3.client(
            service,
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            config=aws_config(retry_mode, pool=pool),
        )
