"""Operator-side helpers: the local Lambda runtime shim and the moto fidelity patches."""
