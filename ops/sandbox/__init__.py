"""``ops sandbox``: the whole product on this machine, on an embedded moto server. This
package re-exports its entry points; each is defined (and patched, in tests) in its module.

What runs, and what each piece stands in for:

* **AWS**: ``moto.server.ThreadedMotoServer`` on 127.0.0.1:PORT, in a process of its own
  (apart from the pollers, so each has a core), with ``ops.moto_patches`` applied there (UpdateObjectEncryption, conditional copies, SSE-S3 by
  default, ``userIdentity.principalId`` on S3 events...), so any client (awscli, boto3,
  another terminal) talks to it over HTTP like to AWS.
* **The stack**: provisioned from ``Pulumi.<stack>.yaml`` through the same config model
  (``load_stack_file``), the same mapping-row code (``MappingRow.item()``), the same
  notification folding (``notification_prefixes``), the same EventBridge rule pattern
  and the same demo definition (``DEMO``) as the Pulumi program.
* **Lambda's SQS event source mapping**: :class:`EventSourceMapping` long-polls the
  queue, builds the event Lambda would (``sqs_event``), applies the deployed filter
  criteria with the same matcher the Pulumi tests use (``esm_accepts`` over
  ``enforcer_filter_patterns``; filtered messages are deleted, as Lambda does), hands
  the rest to ``enforcer.handler.handler`` and honours ``batchItemFailures``: failed
  messages become visible again and SQS's own redrive policy moves them to the DLQ
  after ``maxReceiveCount`` receives. Up to ``lambda.maxConcurrency`` batches run at once,
  each in an execution environment of its own, as the mapping's ``maximumConcurrency``.
* **What it is doing**: a one-line status (received, processed, in flight, queue and DLQ
  depth) and a note when the queue falls behind, from :mod:`ops.status_model`, the
  model ``ops status`` shares.
* **The function's identity**: the handler runs with credentials of an assumed IAM
  role whose session is named after the function, so its principal is
  ``AWS:AROA…:<function name>`` exactly as in Lambda, and the filters drop the events
  its own copies cause.

``run_seed`` is the original sample README's *Testing* section, end to end.

Modules, lowest first: ``emulator`` (the server, its patches and port, clients),
``provisioning`` (the config model to emulator resources), ``enforcer_function`` (the
function's environment and cold start), ``esm_runner`` (the event source mapping),
``render`` (tables), ``lifecycle`` (``Sandbox``: all of it started and stopped together)
and ``seed`` (the scenario and its checks).
"""

from ops.sandbox.emulator import DEFAULT_PORT, HOST, SandboxError, free_port
from ops.sandbox.esm_runner import BatchOutcome, EsmStats, EventSourceMapping
from ops.sandbox.lifecycle import Sandbox
from ops.sandbox.provisioning import Provisioned, SandboxNames, demo_bucket_name, log_rows
from ops.sandbox.seed import SeedReport, run_seed

__all__ = [
    "DEFAULT_PORT",
    "HOST",
    "BatchOutcome",
    "EsmStats",
    "EventSourceMapping",
    "Provisioned",
    "Sandbox",
    "SandboxError",
    "SandboxNames",
    "SeedReport",
    "demo_bucket_name",
    "free_port",
    "log_rows",
    "run_seed",
]
