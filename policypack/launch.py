"""How the Pulumi CLI starts this Python policy pack: argv, working directory, environment.

``pulumi preview --policy-pack policypack`` does not import the pack; it starts a Python
process whose ``PolicyPack()`` prints a port and serves the analyzer protocol on it.
:func:`launch` computes that process from the pack directory and the ``runtime.options``
of ``PulumiPolicy.yaml``, as a pure function, so a test can start the pack exactly as the
CLI does and the virtualenv the pack names can be checked without the CLI.

What the CLI does, from pulumi/pulumi at commit 1b5949891b3c (3.260 dev; the README
requires 3.272), paths under
https://github.com/pulumi/pulumi/blob/1b5949891b3cefcb9974752b24a5ecef0acc86c8/ :

* ``sdk/go/common/resource/plugin/analyzer_plugin.go`` ``NewPolicyAnalyzer``: when a
  language plugin for the pack's runtime exists (``pulumi-language-python`` always
  ships with the CLI), the pack is run through that plugin's ``RunPlugin`` with args
  ``[<engine address>]``. Since v3.221.0 (pulumi/pulumi#21684, "Use RunPlugin instead of
  policy shim plugins") this replaces the ``pulumi-analyzer-policy-python`` shell shim,
  which was deleted (``sdk/python/dist/pulumi-analyzer-policy-python``).
* ``sdk/go/common/resource/plugin/plugin.go`` ``newPlugin``: for a directory with
  ``PulumiPolicy.yaml``, root directory = program directory = the pack directory made
  absolute, options = its ``runtime.options``.
* ``sdk/python/cmd/pulumi-language-python/main.go`` ``RunPlugin`` for kind ``analyzer``:
  with a ``__main__.py`` in the pack it runs ``<python> -u -m pulumi.policy <engine
  address> <pack dir>`` with the working directory set to the pack directory, and
  appends ``PULUMI_ORGANIZATION``, ``PULUMI_PROJECT``, ``PULUMI_STACK``,
  ``PULUMI_DRY_RUN`` (Go ``strconv.FormatBool``) and ``PULUMI_CONFIG`` (JSON of the
  stack's config, a map of string to string) to the environment, each only when
  non-empty. It learns them from the engine's ``ConfigureStack`` call, which a proxy
  (``sdk/policy_proxy.go``) answers first and then forwards to the pack once it has
  read the pack's port (one ``%d\\n`` line on stdout); ``Handshake`` is not forwarded.
* ``parseOptions`` (same file) and ``sdk/python/toolchain/pip.go``: with ``toolchain:
  pip`` the ``virtualenv`` option is joined to the root directory unless absolute
  (``resolveVirtualEnvironmentPath``), python is ``<venv>/bin/python``, and the
  environment is activated (``toolchain.go`` ``ActivateVirtualEnv``: ``<venv>/bin``
  prepended to ``PATH``, ``PYTHONHOME`` dropped, ``VIRTUAL_ENV=<venv>``). Nothing checks
  that the venv exists first: the start simply fails. The deleted shim resolved the
  option the same way (relative to its working directory, the pack directory) and
  passed ``.`` instead of the absolute pack directory.
* ``pulumi preview`` installs no dependencies for a local pack (only ``pulumi install``
  in a pack directory, and packs downloaded from a Pulumi Cloud organization, go through
  ``InstallDependencies``: ``pkg/cmd/pulumi/policy/io.go``,
  ``pkg/backend/httpstate/policypack.go``), so the virtualenv must already exist.
* ``sdk/python/lib/pulumi/policy/__main__.py`` (the installed ``pulumi`` 3.272.0): reads ``PULUMI_CONFIG``,
  configures the runtime from ``PULUMI_PROJECT``/``PULUMI_STACK``/``PULUMI_DRY_RUN``/
  ``PULUMI_ORGANIZATION``, then ``runpy.run_path(<pack dir>)``, which puts the pack
  directory (not the repository root) first on ``sys.path``.

POSIX only (``bin/``; Windows uses ``Scripts\\python.exe``). Toolchains other than pip
and packs without ``__main__.py`` start differently and are refused here.
"""

from __future__ import annotations

import json
import os.path
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

PACK_DIR = Path(__file__).resolve().parent


class LaunchError(ValueError):
    """The pack cannot be started as configured; the message names the setting and the fix."""


@dataclass(frozen=True)
class Launch:
    argv: list[str]
    cwd: Path
    env: dict[str, str]


def runtime_options(pack_dir: Path = PACK_DIR) -> dict[str, Any]:
    """``runtime.options`` of the pack's ``PulumiPolicy.yaml`` (``runtime`` may be a bare name)."""
    path = Path(pack_dir) / "PulumiPolicy.yaml"
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise LaunchError(f"{path}: no such file; a policy pack directory needs a PulumiPolicy.yaml") from None
    runtime = doc.get("runtime")
    name = runtime.get("name") if isinstance(runtime, Mapping) else runtime
    if name != "python":
        raise LaunchError(f"{path}: runtime is {name!r}; only `runtime: python` is modelled here")
    options = runtime.get("options") if isinstance(runtime, Mapping) else None
    return dict(options or {})


def virtualenv_dir(pack_dir: Path, options: Mapping[str, Any]) -> Path:
    """The virtualenv the CLI runs the pack in: ``virtualenv`` joined to the pack directory."""
    toolchain = options.get("toolchain", "pip")
    if toolchain != "pip":
        raise LaunchError(f"PulumiPolicy.yaml: toolchain {toolchain!r} is not modelled here; use `toolchain: pip`")
    option = options.get("virtualenv")
    if not isinstance(option, str) or not option:
        # RunPlugin would run the first python3 on PATH, with an unpredictable pulumi-policy.
        raise LaunchError("PulumiPolicy.yaml: runtime.options.virtualenv is not set; "
                          "set it to the environment `make setup` builds (`virtualenv: ../.venv`)")
    # filepath.Join and filepath.Abs clean the path: no trailing slash, `..` resolved lexically.
    return Path(os.path.normpath(os.path.join(os.path.abspath(pack_dir), option)))


def stack_env(
    *, organization: str, project: str, stack: str, dry_run: bool, config: Mapping[str, str],
) -> dict[str, str]:
    """The variables RunPlugin adds from the engine's ``ConfigureStack`` request."""
    values = {
        "PULUMI_ORGANIZATION": organization,
        "PULUMI_PROJECT": project,
        "PULUMI_STACK": stack,
        "PULUMI_DRY_RUN": "true" if dry_run else "false",
        "PULUMI_CONFIG": json.dumps(dict(config), separators=(",", ":")) if config else "",
    }
    return {k: v for k, v in values.items() if v}


def engine_config(stack_config: Mapping[str, Any]) -> dict[str, str]:
    """A stack file's ``config:`` map as the engine sends it: every value a string, objects as JSON."""
    out = {}
    for key, value in stack_config.items():
        if isinstance(value, str):
            out[key] = value
        else:
            out[key] = json.dumps(value, separators=(",", ":"))
    return out


def launch(
    engine_address: str,
    *,
    pack_dir: Path = PACK_DIR,
    options: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    stack: Mapping[str, str] | None = None,
) -> Launch:
    """The process ``pulumi preview --policy-pack <pack_dir>`` starts.

    ``options`` defaults to ``PulumiPolicy.yaml``'s; ``environ`` is the CLI's own
    environment; ``stack`` is :func:`stack_env` of the stack being previewed.
    """
    pack_dir = Path(os.path.abspath(pack_dir))
    options = runtime_options(pack_dir) if options is None else options
    if not (pack_dir / "__main__.py").is_file():
        raise LaunchError(f"{pack_dir}: no __main__.py; the CLI runs `python -m pulumi.policy` on the pack "
                          "directory, which needs one")
    venv = virtualenv_dir(pack_dir, options)
    python = venv / "bin" / "python"
    if not python.exists():
        raise LaunchError(
            f"PulumiPolicy.yaml: virtualenv {options.get('virtualenv')!r} resolves to {venv} (relative to "
            f"{pack_dir}), which has no bin/python; run `make setup` to build it")
    env = {k: v for k, v in dict(environ or {}).items() if k not in ("PYTHONHOME", "VIRTUAL_ENV")}
    bin_dir = str(venv / "bin")
    env["PATH"] = f"{bin_dir}:{env['PATH']}" if "PATH" in env else bin_dir
    env["VIRTUAL_ENV"] = str(venv)
    env.update(stack or {})
    return Launch(argv=[str(python), "-u", "-m", "pulumi.policy", engine_address, str(pack_dir)],
                  cwd=pack_dir, env=env)
