"""The Lambda's environment contract, read once at cold start by ``handler.py``.

Nothing else in the package reads the environment, so ``ops`` can import the engine
on a laptop without pretending to be a Lambda.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

GIB = 1024**3


class SettingsError(RuntimeError):
    pass


def _int(env: Mapping[str, str], name: str, default: int, minimum: int, maximum: int | None = None,
         why_maximum: str = "") -> int:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise SettingsError(f"{name}={value} must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise SettingsError(f"{name}={value} must be at most {maximum}{why_maximum}")
    return value


def _choice(env: Mapping[str, str], name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = env.get(name) or default
    if value not in allowed:
        raise SettingsError(f"{name}={value!r} must be one of {', '.join(allowed)}")
    return value


@dataclass(frozen=True)
class Settings:
    mapping_table: str
    log_table: str
    alert_topic_arn: str | None = None
    log_retention_days: int = 90
    old_version_action: str = "delete"
    principal_id: str | None = None
    rekey_method: str = "auto"
    multipart_threshold: int = 5 * GIB
    mapping_cache_seconds: int = 60
    concurrency: int = 10

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        missing = [n for n in ("MAPPING_TABLE_NAME", "LOG_TABLE_NAME") if not env.get(n)]
        if missing:
            raise SettingsError(
                f"required environment variable(s) not set: {', '.join(missing)} "
                "(the Pulumi program sets them; set them by hand when running the handler elsewhere)"
            )
        principal = env.get("ENFORCER_PRINCIPAL_ID") or None
        if principal and not principal.startswith("AWS:"):
            raise SettingsError(
                f"ENFORCER_PRINCIPAL_ID={principal!r} must look like AWS:<role unique id>:<function name>"
            )
        return cls(
            mapping_table=env["MAPPING_TABLE_NAME"],
            log_table=env["LOG_TABLE_NAME"],
            alert_topic_arn=env.get("ALERT_TOPIC_ARN") or None,
            log_retention_days=_int(env, "LOG_RETENTION_DAYS", 90, 1),
            old_version_action=_choice(env, "OLD_VERSION_ACTION", "delete", ("delete", "keep")),
            principal_id=principal,
            rekey_method=_choice(env, "REKEY_METHOD", "auto", ("auto", "copy")),
            # Objects up to the threshold take a single CopyObject, which S3 refuses above 5 GiB.
            multipart_threshold=_int(env, "MULTIPART_THRESHOLD_BYTES", 5 * GIB, 1, 5 * GIB,
                                     " (5 GiB, the largest object CopyObject copies)"),
            mapping_cache_seconds=_int(env, "MAPPING_CACHE_SECONDS", 60, 0),
            concurrency=_int(env, "ENFORCER_CONCURRENCY", 10, 1),
        )
