"""The enforcer function as Lambda starts it: its environment (the program's variables, the
role's credentials) and a cold start of ``enforcer.handler``."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from ops.sandbox.provisioning import Provisioned

SANDBOX_MAPPING_CACHE_SECONDS = 1


def enforcer_environment(prov: Provisioned) -> dict[str, str]:
    """The function's environment: the program's variables plus the role's credentials."""
    config = prov.config
    return {
        "MAPPING_TABLE_NAME": prov.names.mapping_table,
        "LOG_TABLE_NAME": prov.names.log_table,
        "ALERT_TOPIC_ARN": prov.alert_topic_arn,
        "LOG_RETENTION_DAYS": str(config.journal_retention_days),
        "OLD_VERSION_ACTION": config.old_version_action,
        "ENFORCER_PRINCIPAL_ID": prov.enforcer_principal,
        "REKEY_METHOD": "auto",
        # The sandbox applies stack-file changes live (reload.py); the deployed function's
        # 60 s cache (its rows change only at `pulumi up`) would hide a new prefix here.
        "MAPPING_CACHE_SECONDS": str(SANDBOX_MAPPING_CACHE_SECONDS),
        "AWS_ENDPOINT_URL": prov.endpoint_url,
        "AWS_REGION": prov.region,
        "AWS_DEFAULT_REGION": prov.region,
        "AWS_ACCESS_KEY_ID": prov.enforcer_credentials["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": prov.enforcer_credentials["aws_secret_access_key"],
        "AWS_SESSION_TOKEN": prov.enforcer_credentials["aws_session_token"],
        "AWS_LAMBDA_FUNCTION_NAME": prov.names.function_name,
    }


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def load_handler(prov: Provisioned):
    """A cold start of ``enforcer.handler`` under the function's environment.

    The module builds its clients and settings at import, which is when the variables
    are read; afterwards the process environment is put back, so the sandbox's own
    clients keep the uploader's identity.
    """
    with environment(enforcer_environment(prov)):
        sys.modules.pop("enforcer.handler", None)
        return importlib.import_module("enforcer.handler")
