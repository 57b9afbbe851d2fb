"""Entry point the Pulumi CLI runs for `pulumi preview --policy-pack policypack`.

`PolicyPack()` starts the pack's gRPC server and blocks, so this module does nothing
else and nothing else constructs it. The offline run is `python -m policypack.check`.
"""

import sys
from pathlib import Path

# The CLI runs the pack from this directory; the policies import the repository's
# config model and key-ARN rules (components.config, enforcer.arns).
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from pulumi_policy import PolicyPack  # noqa: E402

from policypack.policies import PACK_ENFORCEMENT_LEVEL, POLICIES  # noqa: E402

PolicyPack(name="s3-prefix-keys", policies=POLICIES, enforcement_level=PACK_ENFORCEMENT_LEVEL)
