"""Telling S3's refusals apart, and remembering those that hold for a whole key.

UpdateObjectEncryption answers 403 AccessDenied for an Object Lock, for a key of another
account, for a missing KMS permission and for a missing S3 permission alike. Only the
message and the lock state HEAD reported separate them; this module reads both, with
no AWS call of its own, so that ``decide()`` receives the class as data.
"""

from __future__ import annotations

import re
import threading

from enforcer.decision import ObjectState, Refusal, UpdateRefused

# Codes with which S3 refuses an UpdateObjectEncryption it will not do for this object.
# Any other error goes through ``rekey.raise_classified`` (transient, gone, conflict...).
CLIENT_LACKS_IT = "NotInThisBoto3"  # not S3's: the runtime's boto3 predates the call
UNSUPPORTED_CODES = frozenset({"InvalidRequest", "NotImplemented", "MethodNotAllowed", CLIENT_LACKS_IT})
DENIED_CODES = frozenset({"AccessDenied", "KMS.AccessDeniedException"})
REFUSAL_CODES = UNSUPPORTED_CODES | DENIED_CODES

# Key ARNs only: a key ID or an alias in a message names no key the operator can grant.
_KEY_ARN = re.compile(r"arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[A-Za-z0-9-]+")


def named_key(message: str) -> str | None:
    """The KMS key ARN a refusal's message names (KMS denials name their resource)."""
    found = _KEY_ARN.search(message or "")
    return found.group(0) if found else None


_KMS_DENIAL_WORDING = ("kms:", "customer master key", "kms.accessdeniedexception")


def is_kms_denial(code: str, message: str) -> bool:
    """A denial KMS made of a call S3 placed on the enforcer's behalf.

    S3 relays it either with KMS's own code prefixed (``KMS.AccessDeniedException``) or
    as AccessDenied whose message names the KMS action (``... kms:Decrypt ...``), or
    KMS's own wording for a key the caller may not use ("The ciphertext refers to a
    customer master key that does not exist, does not exist in this region, or you are
    not allowed to access"). The other-account message says "KMS key", never ``kms:``.
    """
    text = (message or "").lower()
    return code == "KMS.AccessDeniedException" or (
        code == "AccessDenied" and any(m in text for m in _KMS_DENIAL_WORDING)
    )


def classify(code: str, message: str, state: ObjectState | None) -> UpdateRefused:
    """Why S3 refused UpdateObjectEncryption of the object HEAD described as ``state``.

    User Guide, "Updating server-side encryption for existing data"
    (https://docs.aws.amazon.com/AmazonS3/latest/userguide/update-sse-encryption.html):
    the call is refused for objects under an Object Lock retention mode or legal hold, for
    a key another account owns (unless AWS Support enabled the organization's keys), and
    for unencrypted, DSSE-KMS and SSE-C sources (InvalidRequest). The messages matched
    here are S3's (ops/moto_patches/ reproduces them).
    """
    message = message or ""
    detail = f"{code}: {message}" if message and message != code else code
    if code in UNSUPPORTED_CODES:
        return UpdateRefused(Refusal.UNSUPPORTED, detail)
    if "Object Lock" in message:
        return UpdateRefused(Refusal.OBJECT_LOCK, message)
    if is_kms_denial(code, message):  # before the next test: a KMS message may name an organization
        return UpdateRefused(Refusal.KMS_DENIED, detail)
    if "same account" in message or "organization" in message.lower():
        return UpdateRefused(Refusal.OTHER_ACCOUNT_KEY, message)
    if state is not None and (state.lock_mode is not None or state.legal_hold):
        # A bare AccessDenied on an object HEAD showed any lock state for, a lapsed
        # retention included: undocumented, but a copy that keeps the version is right
        # under either reading, where calling it a missing grant would alert for nothing.
        return UpdateRefused(Refusal.OBJECT_LOCK, f"{detail} (HEAD showed Object Lock settings)")
    return UpdateRefused(Refusal.S3_DENIED, detail)


class KeyRefusals:
    """Refusals that hold for every object of a key, remembered for the container's life.

    A key of another account is refused for every object; so is a key whose KMS
    permission UpdateObjectEncryption needs and the role lacks. Later objects go straight
    to a copy instead of paying a refused request each: once per key per container.
    """

    def __init__(self) -> None:
        self._by_key: dict[str, UpdateRefused] = {}
        self._by_pair: dict[tuple[str | None, str], UpdateRefused] = {}
        self._lock = threading.Lock()

    def remember(self, refused: UpdateRefused, state: ObjectState, target_key: str) -> None:
        with self._lock:
            if refused.refusal is Refusal.OTHER_ACCOUNT_KEY:
                self._by_key[target_key] = refused
            elif refused.refusal is Refusal.KMS_DENIED:
                key = named_key(refused.detail)
                if key:
                    self._by_key[key] = refused
                else:
                    # Unnamed: it was the old key or the new one, so only that pair is known.
                    self._by_pair[(state.kms_key_arn, target_key)] = refused

    def recall(self, state: ObjectState, target_key: str) -> UpdateRefused | None:
        with self._lock:
            return (
                self._by_key.get(target_key)
                or (self._by_key.get(state.kms_key_arn) if state.kms_key_arn else None)
                or self._by_pair.get((state.kms_key_arn, target_key))
            )

    def blind_update_pays(self, target_key: str) -> bool:
        """Whether an UpdateObjectEncryption sent without a HEAD first can still succeed.

        A KMS denial may concern the old key, which only a HEAD shows: once one is known,
        inspecting first costs less than a refused request followed by the HEAD anyway.
        """
        with self._lock:
            if target_key in self._by_key:
                return False
            return not any(r.refusal is Refusal.KMS_DENIED for r in (*self._by_key.values(), *self._by_pair.values()))
