"""``ops mappings``: list, add and remove prefix mappings in a stack's configuration.

Every change is planned as a list of :class:`ConfigEdit` (one ``pulumi config set
--path`` / ``rm --path`` each, with the exact key), applied to a copy of the stack file
and validated with the shared model (``load_stack_file``) *before* anything is
written: the whole resulting configuration must validate, so ``ops`` can never write
a config that ``pulumi preview`` would reject.

Then it is written either through the Automation API (``stack.set_config(key,
ConfigValue(value), path=True)``), when the Pulumi CLI is installed and the stack
exists in the current backend, or by editing ``Pulumi.<stack>.yaml`` with a ruamel.yaml
round trip that keeps comments, key order, quoting and indentation.
"""

from __future__ import annotations

import copy
import io
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import YAMLError
from ruamel.yaml.util import load_yaml_guess_indent

from components.config import (
    NAMESPACE,
    ConfigError,
    MappingRow,
    StackConfig,
    all_mapping_rows,
    config_path,
    load_stack_file,
    stack_file,
    yaml_syntax_problem,
)

BUCKETS = "buckets"
PREFIXES = "prefixes"


class MappingError(Exception):
    """Bad input or a change the model rejects; the CLI prints it and exits 2."""


def config_key(*segments: str) -> str:
    """The key ``pulumi config set --path`` takes, e.g.
    ``s3-prefix-keys:buckets["my.bucket"].prefixes["tenant-a/"].kmsKeyArn``."""
    return f"{NAMESPACE}:{config_path(*segments)}"


def mapping_key(bucket: str, prefix: str, field_name: str | None = None) -> str:
    """The config key of one prefix mapping, or of one of its fields."""
    segments = [BUCKETS, bucket, PREFIXES, prefix]
    if field_name:
        segments.append(field_name)
    return config_key(*segments)


@dataclass(frozen=True)
class ConfigEdit:
    """One ``pulumi config set --path`` (``set``) or ``pulumi config rm --path`` (``remove``)."""

    action: Literal["set", "remove"]
    segments: tuple[str, ...]  # below the namespace: ("buckets", bucket, "prefixes", prefix, field)
    value: str | bool | None = None

    @property
    def key(self) -> str:
        return config_key(*self.segments)

    @property
    def config_value(self) -> str:
        """The value as the CLI takes it; with ``--path``, ``true``/``false`` are stored as booleans."""
        if isinstance(self.value, bool):
            return "true" if self.value else "false"
        return str(self.value)

    def command(self, stack: str) -> str:
        """The equivalent CLI command, for the operator's record."""
        if self.action == "set":
            return f"pulumi config set --stack {stack} --path '{self.key}' {self.config_value}"
        return f"pulumi config rm --stack {stack} --path '{self.key}'"


def _set(segments: tuple[str, ...], value: str | bool) -> ConfigEdit:
    return ConfigEdit("set", segments, value)


def _remove(segments: tuple[str, ...]) -> ConfigEdit:
    return ConfigEdit("remove", segments)


def plan_add(
    buckets: Mapping[str, Any], bucket: str, prefix: str, key_arn: str, dsse: bool = False,
    bucket_key: bool | None = None,
) -> list[ConfigEdit]:
    """Edits that make ``prefix`` map to exactly this key and type.

    Fields of an existing mapping that the new one does not set (a former
    ``dualLayer: true``) are removed, so they cannot linger and silently change its
    type. The order is what makes a write that stops halfway (the Pulumi CLI failing
    on the third of four calls) safe: the new key first, so the prefix is never left
    unmapped; then the removals; then ``bucketKey`` before ``dualLayer``, so no step
    leaves ``bucketKey: true`` beside ``dualLayer: true``.
    """
    base = (BUCKETS, bucket, PREFIXES, prefix)
    wanted: dict[str, str | bool] = {"kmsKeyArn": key_arn}
    if bucket_key is not None:
        wanted["bucketKey"] = bucket_key
    if dsse:
        wanted["dualLayer"] = True
    old = _prefixes_of(buckets, bucket).get(prefix)
    stale = [name for name in old if name not in wanted] if isinstance(old, Mapping) else []
    edits = [_set((*base, "kmsKeyArn"), key_arn)]
    edits += [_remove((*base, name)) for name in stale]
    edits += [_set((*base, name), value) for name, value in wanted.items() if name != "kmsKeyArn"]
    return edits


def plan_remove(buckets: Mapping[str, Any], bucket: str, prefix: str, label: str) -> list[ConfigEdit]:
    """Edits that unmap ``prefix``; the bucket's last mapping removes the bucket entry.

    A bucket without prefixes is invalid (the model says so), and removing it from the
    config is what un-integrates it on the next ``pulumi up``.
    """
    if bucket not in buckets:
        known = ", ".join(sorted(buckets)) or "none"
        raise MappingError(
            f"bucket {bucket!r} is not in {label} (configured buckets: {known}); check --bucket"
        )
    prefixes = _prefixes_of(buckets, bucket)
    if prefix not in prefixes:
        raise MappingError(
            f"{mapping_key(bucket, prefix)} is not set in {label}: prefix {prefix!r} is not mapped "
            f"(mapped prefixes of {bucket}: {', '.join(sorted(prefixes)) or 'none'}); check --prefix, "
            "including its trailing '/'"
        )
    if len(prefixes) == 1:
        return [_remove((BUCKETS, bucket))]
    return [_remove((BUCKETS, bucket, PREFIXES, prefix))]


def _prefixes_of(buckets: Mapping[str, Any], bucket: str) -> Mapping[str, Any]:
    entry = buckets.get(bucket)
    prefixes = entry.get(PREFIXES) if isinstance(entry, Mapping) else None
    return prefixes if isinstance(prefixes, Mapping) else {}


# ---------------------------------------------------------------------------
# the stack file, round trip


@dataclass(frozen=True)
class Indentation:
    """The file's own style, so a round trip changes only the edited lines."""

    mapping: int = 2
    sequence: int = 2  # from the parent's column to a sequence item's content
    offset: int = 0  # from the parent's column to the dash

    @classmethod
    def guess(cls, text: str) -> Indentation:
        # ruamel's guess measures sequences only (it reports their item indent); the
        # mapping step is measured here: a `key:` line and the deeper key under it.
        _, sequence, offset = load_yaml_guess_indent(text)
        mapping = None
        lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
        for line, following in zip(lines, lines[1:], strict=False):
            if line.rstrip().endswith(":") and not following.lstrip().startswith("-"):
                step = _column(following) - _column(line)
                if step > 0:
                    mapping = step
                    break
        mapping = mapping or sequence or 2
        return cls(mapping, sequence or mapping, offset or 0)


def _column(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _yaml(indentation: Indentation = Indentation()) -> YAML:
    yaml = YAML()  # round trip: comments, order and quoting survive
    yaml.preserve_quotes = True
    yaml.indent(mapping=indentation.mapping, sequence=indentation.sequence, offset=indentation.offset)
    yaml.width = 4096  # never fold a long key ARN onto a second line
    return yaml


@dataclass
class StackDocument:
    """A ``Pulumi.<stack>.yaml`` loaded for a round trip."""

    path: Path
    doc: Any
    indentation: Indentation = Indentation()

    @classmethod
    def load(cls, path: Path) -> StackDocument:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise MappingError(
                f"{path}: no such stack file; create the stack (`pulumi stack init <name>`) or pass an "
                "existing one with --stack"
            ) from None
        except (IsADirectoryError, UnicodeDecodeError):
            raise MappingError(f"{path}: not a text stack file; pass another --stack") from None
        try:
            indentation = Indentation.guess(text)
            doc = _yaml().load(text)
        except DuplicateKeyError as exc:
            raise MappingError(f"{path}: duplicate key {exc.problem}; each key may appear once") from None
        except YAMLError as exc:
            raise MappingError(yaml_syntax_problem(path, exc)) from None
        if doc is None:
            doc = CommentedMap()
        if not isinstance(doc, dict):
            raise MappingError(f"{path}: not a Pulumi stack file (expected a mapping with a `config:` key)")
        return cls(path, doc, indentation)

    @property
    def buckets(self) -> Mapping[str, Any]:
        config = self.doc.get("config") or {}
        buckets = config.get(f"{NAMESPACE}:{BUCKETS}") or {}
        return buckets if isinstance(buckets, Mapping) else {}

    def edited(self, edits: list[ConfigEdit]) -> StackDocument:
        doc = copy.deepcopy(self.doc)
        for edit in edits:
            apply_edit(doc, edit)
        return StackDocument(self.path, doc, self.indentation)

    def dumps(self) -> str:
        out = io.StringIO()
        _yaml(self.indentation).dump(self.doc, out)
        return out.getvalue()


def apply_edit(doc: Any, edit: ConfigEdit) -> None:
    """Apply one edit to a round-trip document, as ``pulumi config set/rm --path`` would."""
    if doc.get("config") is None:
        doc["config"] = CommentedMap()
    node, key = doc["config"], f"{NAMESPACE}:{edit.segments[0]}"
    if edit.action == "set":
        for segment in edit.segments[1:]:
            if not isinstance(node.get(key), dict):
                node[key] = CommentedMap()
            node, key = node[key], segment
        node[key] = edit.value
        return
    chain = []  # (container, key) from the top-level key down to the removed one
    for segment in (*edit.segments[1:], None):
        if not isinstance(node, dict) or key not in node:
            return  # already absent: `pulumi config rm` is a no-op too
        chain.append((node, key))
        if segment is not None:
            node, key = node[key], segment
    container, last = chain.pop()
    del container[last]
    # Drop maps the removal left empty (`prefixes: {}` would be a config error).
    while chain and container == {}:
        container, last = chain.pop()
        del container[last]


def validate_text(text: str) -> StackConfig:
    """Validate a would-be stack file exactly as every other tool will read it."""
    with tempfile.TemporaryDirectory() as tmp:
        candidate = Path(tmp) / "Pulumi.candidate.yaml"
        candidate.write_text(text)
        return load_stack_file(candidate)


def write_atomically(path: Path, text: str) -> None:
    """Replace the file in one step: an interrupted write never leaves half a config."""
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------------
# the change, end to end


class Writer(StrEnum):
    AUTO = "auto"  # the Automation API when it can, else the file
    PULUMI = "pulumi"
    FILE = "file"


@dataclass
class ChangeResult:
    stack: str
    path: Path
    edits: list[ConfigEdit]
    written_via: Writer
    config: StackConfig
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


# (stack name, root) -> an automation Stack, or raises; deploy.py provides the real one.
StackOpener = Callable[[str, Path], Any]


def write_through_pulumi(pulumi_stack: Any, stack: str, edits: list[ConfigEdit]) -> None:
    """One ``set_config``/``remove_config`` per edit, in order; a CLI failure is a
    MappingError that names the failed edit and the ones already applied."""
    from pulumi.automation import CommandError, ConfigValue

    from ops.deploy import first_error_line

    for n, edit in enumerate(edits):
        try:
            if edit.action == "set":
                pulumi_stack.set_config(edit.key, ConfigValue(edit.config_value), path=True)
            else:
                pulumi_stack.remove_config(edit.key, path=True)
        except CommandError as exc:
            applied = edits[:n]
            lines = [f"pulumi could not {edit.action} {edit.key}: {first_error_line(exc)}"]
            if applied:
                lines.append(f"{len(applied)} of {len(edits)} edits were applied before it:")
                lines += [f"  {done.command(stack)}" for done in applied]
            else:
                lines.append("No edit was applied; the stack's configuration is unchanged.")
            lines.append("Not applied (run these once the cause is fixed, or repeat the ops command):")
            lines += [f"  {todo.command(stack)}" for todo in edits[n:]]
            raise MappingError("\n".join(lines)) from None


def change_mappings(
    stack: str,
    plan: Callable[[StackDocument], list[ConfigEdit]],
    root: str | Path | None = None,
    writer: Writer = Writer.AUTO,
    open_stack: StackOpener | None = None,
) -> ChangeResult:
    """Plan, validate the whole resulting config, then write it (Automation API or file)."""
    path = stack_file(stack, root)
    current = StackDocument.load(path)
    edits = plan(current)
    candidate = current.edited(edits)
    try:
        config = validate_text(candidate.dumps())
    except ConfigError as exc:
        raise MappingError(f"{path.name} would be invalid after this change, nothing was written:\n{exc}") from None

    notes: list[str] = []
    if writer in (Writer.AUTO, Writer.PULUMI):
        from ops import deploy

        try:
            deploy.check_pulumi_cli(Path(path.parent))
            opener = open_stack or deploy.open_stack_for_config
            pulumi_stack = opener(stack, path.parent)
        except deploy.DeployError as exc:
            if writer is Writer.PULUMI:
                raise MappingError(str(exc)) from None
            notes.append(f"{exc.short}; edited {path.name} directly (what `pulumi config set --path` writes)")
        else:
            write_through_pulumi(pulumi_stack, stack, edits)
            try:
                config = load_stack_file(path)
            except ConfigError as exc:  # the CLI wrote something the model rejects: say so loudly
                raise MappingError(f"after `pulumi config set`, {path.name} does not validate:\n{exc}") from None
            return ChangeResult(stack, path, edits, Writer.PULUMI, config, notes)

    write_atomically(path, candidate.dumps())
    return ChangeResult(stack, path, edits, Writer.FILE, config, notes)


def prefix_warning(prefix: str) -> str | None:
    """Why a valid prefix may not mean what it says: S3 prefixes are literal string
    prefixes, so ``t1`` also covers ``t10/`` and ``t1-archive/``."""
    if prefix.endswith("/") or not prefix.strip():
        return None
    return (
        f"prefix {prefix!r} has no trailing '/', so it also matches every key that starts with it, "
        f"such as {prefix}0/ and {prefix}-old/; if you meant the folder, map --prefix {prefix}/ instead"
    )


def add_mapping(
    stack: str, bucket: str, prefix: str, key_arn: str, dsse: bool = False, bucket_key: bool | None = None,
    **kwargs: Any,
) -> ChangeResult:
    result = change_mappings(
        stack, lambda doc: plan_add(doc.buckets, bucket, prefix, key_arn, dsse, bucket_key), **kwargs
    )
    warning = prefix_warning(prefix)
    if warning:
        result.warnings.append(warning)
    return result


def remove_mapping(stack: str, bucket: str, prefix: str, **kwargs: Any) -> ChangeResult:
    return change_mappings(
        stack, lambda doc: plan_remove(doc.buckets, bucket, prefix, doc.path.name), **kwargs
    )


def list_mappings(stack: str, root: str | Path | None = None) -> tuple[StackConfig, list[MappingRow]]:
    """The stack's validated config and its mapping rows (the rows the program writes)."""
    try:
        config = load_stack_file(stack_file(stack, root))
    except ConfigError as exc:
        raise MappingError(str(exc)) from None
    return config, all_mapping_rows(config)
