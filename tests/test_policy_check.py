"""The offline policy run end to end: `python -m policypack.check`, as CI and users run it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from policypack import check
from policypack.policies import POLICIES
from policypack.policy_config import load_policy_config

ROOT = Path(__file__).resolve().parent.parent
# Importing pulumi_aws's deprecated resource classes warns; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pulumi_aws")

KEY_A = "arn:aws:kms:us-east-1:111122223333:key/11111111-2222-3333-4444-555555555555"


def offline(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "policypack.check", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )


def write_stack(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "Pulumi.test.yaml"
    path.write_text(body)
    return path


def write_config(tmp_path: Path, config: dict) -> Path:
    path = tmp_path / "policy-config.json"
    path.write_text(json.dumps(config))
    return path


@pytest.mark.parametrize("first_preview", [False, True], ids=["up", "first-preview"])
def test_dev_stack_passes(first_preview):
    result = offline("--stack", "dev", *(["--first-preview"] if first_preview else []))
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    mode = "the first `pulumi preview` of a new stack" if first_preview else "after `pulumi up`"
    assert out.startswith(f"Offline policy check of s3-prefix-keys/dev as {mode}")
    assert f"{len(POLICIES)} policies enabled" in out
    assert "Policies:\n" in out and "s3-prefix-keys@v0.1.0 (local: policypack)" in out
    assert "[mandatory]" not in out
    # One version throughout: no pulumi-policy "can't run policy" note, which says v0.0.1.
    assert "v0.0.1" not in out and "can't run policy" not in out
    if first_preview:
        # Deferred checks are said, by the pack's advisory preview-deferred-checks, one per policy.
        said = "        - [advisory]  preview-deferred-checks  (pulumi:pulumi:Stack: s3-prefix-keys-dev)\n"
        assert out.count(said) == 2
        assert ("enforcer-delivery-is-resilient checks at `pulumi up`: redrivePolicy.maxReceiveCount of "
                "aws:sqs/queue:Queue 'enforcer-queue'\n") in out
        assert "key-mapping-valid checks at `pulumi up`: whether kms_key_arn is the key's ARN (not its ID) of " in out
        assert "⚠️  s3-prefix-keys@v0.1.0" in out
        assert out.rstrip().endswith(
            "Result: no policy violations; 2 policy(ies) deferred checks on unknown values to `pulumi up`"
        )
    else:
        assert "✅ s3-prefix-keys@v0.1.0" in out
        assert out.rstrip().endswith("Result: no policy violations")


@pytest.mark.parametrize("first_preview", [False, True], ids=["up", "first-preview"])
def test_mandatory_violation_exits_non_zero(tmp_path, first_preview):
    # A stricter policy configuration than dev meets: visibility is known in both modes.
    config = write_config(tmp_path, {"enforcer-delivery-is-resilient": {"visibilityMultiplier": 8}})
    result = offline("--stack", "dev", "--config", str(config), *(["--first-preview"] if first_preview else []))
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    assert "❌ s3-prefix-keys@v0.1.0 (local: policypack)" in out
    assert "        - [mandatory]  enforcer-delivery-is-resilient  (aws:sqs/queue:Queue: enforcer-queue)\n" in out
    assert "          The enforcement queue retries and dead-letters failures" in out  # the description line
    assert "below 8 x the timeout of aws:lambda/function:Function 'enforcer-function' (120s)" in out
    assert "Result: 1 mandatory" in out


def test_max_receive_count_threshold_only_decidable_after_create(tmp_path):
    config = write_config(tmp_path, {"enforcer-delivery-is-resilient": {"minMaxReceiveCount": 6}})
    up = offline("--stack", "dev", "--config", str(config))
    assert up.returncode == 1 and "maxReceiveCount 5; below 6" in up.stdout
    preview = offline("--stack", "dev", "--config", str(config), "--first-preview")
    assert preview.returncode == 0, preview.stdout
    assert "maxReceiveCount 5" not in preview.stdout
    assert "redrivePolicy.maxReceiveCount of aws:sqs/queue:Queue 'enforcer-queue'" in preview.stdout


def test_advisory_violations_do_not_fail(tmp_path):
    stack = write_stack(tmp_path, f"""config:
  aws:region: us-east-1
  s3-prefix-keys:buckets:
    tenant-data:
      prefixes:
        a/:
          kmsKeyArn: {KEY_A}
""")
    result = offline("--stack", "test", "--stack-file", str(stack))
    assert result.returncode == 0, result.stdout + result.stderr
    # Reported on the bucket's integration: the bucket itself is not created in this stack.
    assert "[advisory]  bucket-default-encryption-is-kms  (s3-prefix-keys:index:BucketIntegration: " \
           "tenant-data)" in result.stdout
    assert "bucket 'tenant-data'" in result.stdout and "[mandatory]" not in result.stdout


def test_invalid_stack_config_exits_2_naming_the_path(tmp_path):
    stack = write_stack(tmp_path, """config:
  aws:region: us-east-1
  s3-prefix-keys:buckets:
    tenant-data:
      prefixes:
        a/:
          kmsKeyArn: alias/tenant-a
""")
    result = offline("--stack", "test", "--stack-file", str(stack))
    assert result.returncode == 2
    assert result.stdout == ""
    assert "s3-prefix-keys:buckets.tenant-data.prefixes[\"a/\"].kmsKeyArn" in result.stderr
    assert "is a key alias" in result.stderr


def test_invalid_policy_config_exits_2(tmp_path):
    config = write_config(tmp_path, {"bucket-has-key-mapping": {"exemptBucket": ["x"]}})
    result = offline("--stack", "dev", "--config", str(config))
    assert result.returncode == 2
    assert "bucket-has-key-mapping.exemptBucket: unknown property (allowed: exemptBuckets)" in result.stderr


def test_run_check_is_the_library_entry_point(tmp_path):
    report = check.run_check("dev", check.DEFAULT_CONFIG, first_preview=False)
    assert report.exit_code == 0 and report.diagnostics == []
    assert report.levels == {p.name: (p.enforcement_level.value) for p in POLICIES}
    stricter = write_config(tmp_path, {"all": "disabled", "enforcer-delivery-is-resilient": {
        "enforcementLevel": "mandatory", "visibilityMultiplier": 8}})
    report = check.run_check("dev", stricter, first_preview=True)
    assert report.first_preview and report.exit_code == 1
    assert [d.policy for d in report.mandatory] == ["enforcer-delivery-is-resilient"]
    assert sum(1 for level in report.levels.values() if level != "disabled") == 1
    # "all": "disabled" silences preview-deferred-checks too: the offline run says what it left unsaid.
    assert report.deferrals == [] and list(report.unsaid) == ["enforcer-delivery-is-resilient"]


PROD_EXAMPLE = ROOT / "Pulumi.prod.yaml.example"
EXTERNAL = "acme.analytics.exports"  # manageNotification: false in the example


@pytest.mark.parametrize("first_preview", [False, True], ids=["up", "first-preview"])
def test_prod_example_meets_every_mandatory_policy(tmp_path, first_preview):
    # Two config buckets: one strict (its bucket policy is checked against the mapping),
    # one on EventBridge with default encryption, whose notification configuration is
    # another tool's: the CI policy config says so. The strict one keeps SSE-S3 as its
    # default, which the advisory policy points out.
    policy_config = load_policy_config(check.DEFAULT_CONFIG)
    policy_config["bucket-notification-routes-to-enforcer"]["externalNotificationBuckets"] = [EXTERNAL]
    config = write_config(tmp_path, policy_config)
    report = check.run_check("prod", config, first_preview, stack_file=PROD_EXAMPLE)
    assert report.exit_code == 0 and report.mandatory == []
    # What waits for `pulumi up` is said by the pack, never by pulumi-policy's v0.0.1 note.
    assert all(d.policy == "preview-deferred-checks" for d in report.deferrals) and report.unsaid == {}
    assert bool(report.deferrals) == first_preview
    advisories = report.violations
    assert [(d.policy, d.resource_type, d.resource_name) for d in advisories] == [
        ("bucket-default-encryption-is-kms", "s3-prefix-keys:index:BucketIntegration", "acme-tenant-data")
    ]
    assert "bucket 'acme-tenant-data'" in advisories[0].message


@pytest.mark.parametrize("first_preview", [False, True], ids=["up", "first-preview"])
def test_external_notification_bucket_fails_until_listed_in_the_policy_config(first_preview):
    result = offline("--stack", "prod", "--stack-file", str(PROD_EXAMPLE), *(["--first-preview"] if first_preview else []))
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    assert ("        - [mandatory]  bucket-notification-routes-to-enforcer  "
            f"(s3-prefix-keys:index:BucketIntegration: {EXTERNAL})\n") in out
    assert f"bucket '{EXTERNAL}' has prefix key mappings ('tenant-a/', 'tenant-c/reports/'" in out
    assert "its BucketIntegration has `manageNotification: false`" in out
    assert "list the bucket in this policy's `externalNotificationBuckets` config" in out
    assert "Result: 1 mandatory" in out
