"""What the enforcer Lambda is deployed with: its code archive and a dependency layer.

Both are built from files on this machine, so a deployment ships exactly what the
tests ran against:

* the code archive holds only the ``enforcer`` package's ``.py`` files: no tests,
  no ``__pycache__``, nothing from ``components/`` or ``ops/``;
* the layer holds the installed, pinned distributions the handler imports
  (Powertools and boto3) with everything they require, found through
  ``importlib.metadata`` and laid out under ``python/`` as Lambda layers expect.
  boto3/botocore are shipped rather than taken from the runtime because the
  runtime's copy may predate ``UpdateObjectEncryption``; the engine would then fall
  back to a full copy on every object.

Archives are built as ``pulumi.AssetArchive`` of individual files (rather than a
``FileArchive`` of whole directories) so that byte-code caches and other local
leftovers never reach the archive and its hash only changes when the code does.
"""

from __future__ import annotations

import importlib.metadata as metadata
from collections.abc import Iterable
from pathlib import Path

import pulumi
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
ENFORCER_PACKAGE = ROOT / "enforcer"

LAMBDA_RUNTIME = "python3.12"
LAMBDA_ARCHITECTURE = "arm64"
HANDLER = "enforcer.handler.handler"

# What the handler imports directly; their own requirements come along.
LAYER_DISTRIBUTIONS = ("aws-lambda-powertools", "boto3")

# The layer is built on this machine but runs on arm64 Lambda: only pure-Python
# files can be shipped like that.
_COMPILED_SUFFIXES = (".so", ".pyd", ".dylib", ".dll")


class PackagingError(RuntimeError):
    pass


def enforcer_code_archive(package_dir: Path = ENFORCER_PACKAGE) -> pulumi.AssetArchive:
    """The function's code: ``enforcer/**/*.py`` at the archive root, nothing else."""
    files = sorted(
        p
        for p in package_dir.rglob("*.py")
        if not {"__pycache__", "tests"} & set(p.relative_to(package_dir).parts)
    )
    if not (package_dir / "handler.py").is_file():
        raise PackagingError(f"{package_dir} has no handler.py; the function's handler is {HANDLER}")
    return pulumi.AssetArchive(
        {
            f"{package_dir.name}/{p.relative_to(package_dir).as_posix()}": pulumi.FileAsset(str(p))
            for p in files
        }
    )


def _lambda_marker_environment() -> dict[str, str]:
    # Requirement markers are evaluated for the Lambda runtime, not for this machine.
    env = dict(default_environment())
    version = LAMBDA_RUNTIME.removeprefix("python")
    env.update(
        python_version=version,
        python_full_version=f"{version}.0",
        platform_machine="aarch64",
        sys_platform="linux",
        platform_system="Linux",
        os_name="posix",
        implementation_name="cpython",
        platform_python_implementation="CPython",
        extra="",
    )
    return env


def dependency_closure(roots: Iterable[str] = LAYER_DISTRIBUTIONS) -> list[metadata.Distribution]:
    """The installed distributions ``roots`` need at run time, sorted by name.

    Optional extras are not followed (``boto3[crt]`` would pull a compiled library).
    """
    env = _lambda_marker_environment()
    found: dict[str, metadata.Distribution] = {}
    pending = [canonicalize_name(r) for r in roots]
    while pending:
        name = pending.pop()
        if name in found:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise PackagingError(
                f"{name} is required by the Lambda layer but is not installed in this environment; "
                "run `make setup` (it installs the pinned requirements)"
            ) from None
        found[name] = dist
        for spec in dist.requires or []:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate(env):
                pending.append(canonicalize_name(req.name))
    return [found[n] for n in sorted(found)]


def _distribution_files(dist: metadata.Distribution) -> list[tuple[str, Path]]:
    """(path inside site-packages, file on disk) for one distribution, from its RECORD."""
    out = []
    for entry in dist.files or []:
        rel = entry.as_posix()
        # RECORD also lists console scripts (../../bin/...) and byte-code caches.
        if rel.startswith("..") or "__pycache__" in entry.parts or rel.endswith(".pyc"):
            continue
        if rel.endswith(_COMPILED_SUFFIXES):
            raise PackagingError(
                f"{dist.metadata['Name']} ships a compiled file ({rel}); the layer is built here "
                f"but runs on {LAMBDA_ARCHITECTURE}, so only pure-Python packages can go in it"
            )
        path = Path(str(dist.locate_file(entry)))
        if path.is_file():
            out.append((rel, path))
    if not out:
        raise PackagingError(f"{dist.metadata['Name']} has no installed files (no RECORD)")
    return out


def layer_archive(distributions: Iterable[metadata.Distribution]) -> pulumi.AssetArchive:
    """Each distribution's files under ``python/``, the directory Lambda adds to sys.path."""
    assets: dict[str, pulumi.Asset] = {}
    for dist in distributions:
        for rel, path in _distribution_files(dist):
            assets[f"python/{rel}"] = pulumi.FileAsset(str(path))
    return pulumi.AssetArchive(dict(sorted(assets.items())))


def layer_description(distributions: Iterable[metadata.Distribution]) -> str:
    """``name==version`` of every shipped distribution, within Lambda's 256-character limit."""
    text = "Enforcer dependencies: " + ", ".join(
        f"{d.metadata['Name']}=={d.version}" for d in distributions
    )
    return text if len(text) <= 256 else text[:253] + "..."
