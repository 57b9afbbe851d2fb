"""Pulumi components and the shared stack configuration model."""
