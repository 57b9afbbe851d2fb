"""The s3-prefix-keys CrossGuard policy pack.

``policies`` assembles the policies (importable anywhere) from one module per family over
``stack_graph``; ``check`` is the offline run
(``python -m policypack.check --stack dev``). ``__main__`` is what the Pulumi CLI runs;
it starts the pack's gRPC server and blocks, so never run ``python -m policypack``.
"""
