"""The pack's policy configuration (``--policy-pack-config``): each policy's level and properties,
resolved and checked against its schema as the Pulumi CLI does."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pulumi_policy import EnforcementLevel, Policy

from policypack.policies import PACK_ENFORCEMENT_LEVEL, PACK_NAME, POLICIES


class PolicyConfigError(ValueError):
    """Invalid policy pack configuration; ``problems`` holds one line per offending key."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid policy pack configuration:\n" + "\n".join(f"  - {p}" for p in problems))


@dataclass(frozen=True)
class PolicySettings:
    level: EnforcementLevel
    properties: Mapping[str, Any]


_LEVELS = {lvl.value: lvl for lvl in EnforcementLevel}
_JSON_TYPES = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}


def _check_schema_value(where: str, value: Any, schema: Mapping[str, Any], problems: list[str]) -> None:
    kind = schema.get("type")
    types = _JSON_TYPES.get(kind) if isinstance(kind, str) else None
    if types and (not isinstance(value, types) or (kind in ("integer", "number") and isinstance(value, bool))):
        problems.append(f"{where}: expected {kind}, got {json.dumps(value)}")
        return
    if "minimum" in schema and isinstance(value, (int, float)) and value < schema["minimum"]:
        problems.append(f"{where}: must be >= {schema['minimum']}, got {value}")
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{where}: must be one of {schema['enum']}, got {json.dumps(value)}")
    if kind == "array" and isinstance(schema.get("items"), Mapping):
        for i, item in enumerate(value):
            _check_schema_value(f"{where}[{i}]", item, schema["items"], problems)


def resolve_policy_config(
    raw: Mapping[str, Any] | None, policies: Iterable[Policy] = POLICIES
) -> dict[str, PolicySettings]:
    """Each policy's effective level and properties, as the CLI derives them from the JSON file.

    ``"all"`` sets every policy's level; a policy's own entry (a level string, or an
    object with ``enforcementLevel`` and its properties) overrides it. Properties are
    checked against the policy's config schema, and unknown policies or properties
    are errors (a typo would otherwise silently fall back to the default).
    """
    raw = dict(raw or {})
    policies = list(policies)
    by_name = {p.name: p for p in policies}
    problems: list[str] = []
    for name in raw:
        if name != "all" and name not in by_name:
            problems.append(f"{name}: no such policy in {PACK_NAME} (policies: {', '.join(sorted(by_name))})")

    def level_of(where: str, value: Any) -> EnforcementLevel | None:
        if value is None:
            return None
        if isinstance(value, str) and value in _LEVELS:
            return _LEVELS[value]
        problems.append(f"{where}: enforcement level must be one of {', '.join(_LEVELS)}, got {json.dumps(value)}")
        return None

    all_level = level_of("all", raw.get("all"))
    out: dict[str, PolicySettings] = {}
    for p in policies:
        entry = raw.get(p.name)
        level = p.enforcement_level or PACK_ENFORCEMENT_LEVEL
        if all_level is not None:
            level = all_level
        props: dict[str, Any] = {}
        if isinstance(entry, Mapping):
            if "enforcementLevel" in entry:
                level = level_of(f"{p.name}.enforcementLevel", entry["enforcementLevel"]) or level
            schema = p.config_schema.properties if p.config_schema else {}
            for k, v in entry.items():
                if k == "enforcementLevel":
                    continue
                if k not in schema:
                    allowed = ", ".join(sorted(schema)) or "none besides enforcementLevel"
                    problems.append(f"{p.name}.{k}: unknown property (allowed: {allowed})")
                    continue
                _check_schema_value(f"{p.name}.{k}", v, schema[k], problems)
                props[k] = v
            for req in (p.config_schema.required or []) if p.config_schema else []:
                if req not in entry:
                    problems.append(f"{p.name}.{req}: required")
        elif entry is not None:
            level = level_of(p.name, entry) or level
        if p.config_schema:  # the CLI applies schema defaults
            for k, s in p.config_schema.properties.items():
                if k not in props and "default" in s:
                    props[k] = copy.deepcopy(s["default"])
        out[p.name] = PolicySettings(level, props)
    if problems:
        raise PolicyConfigError(problems)
    return out


def load_policy_config(path: str | Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise PolicyConfigError([f"{path}: no such file"]) from None
    except ValueError as exc:
        raise PolicyConfigError([f"{path}: not JSON ({exc})"]) from None
    if not isinstance(data, dict):
        raise PolicyConfigError([f"{path}: expected a JSON object of policy name -> level or settings"])
    return data
