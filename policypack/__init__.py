"""The s3-prefix-keys CrossGuard policy pack.

``policies`` holds the policies (importable anywhere), ``check`` is the offline run
(``python -m policypack.check --stack dev``). ``__main__`` is what the Pulumi CLI runs;
it starts the pack's gRPC server and blocks, so never run ``python -m policypack``.
"""
