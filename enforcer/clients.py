"""botocore configuration shared by every AWS client the engine creates."""

from __future__ import annotations

from botocore.config import Config


def aws_config(retry_mode: str = "standard", max_attempts: int = 5, pool: int = 10) -> Config:
    """Retries by botocore itself: ``standard`` in Lambda (a failed message is retried
    by SQS anyway), ``adaptive`` for long backfills, whose client-side rate limiting
    backs off KMS and S3 throttling instead of hammering them."""
    return Config(
        retries={"mode": retry_mode, "max_attempts": max_attempts},
        max_pool_connections=pool,
        connect_timeout=5,
        read_timeout=60,
    )
