"""The local backend's identity: its API key pair, OCI config profile, tenancy, compartment and project."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

REGION = "us-ashburn-1"
REGION_KEY = "iad"
PROFILE = "DEFAULT"
_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"


def new_ocid(kind: str, *, regional: bool = True) -> str:
    """A random OCID shaped like the platform's: ``ocid1.<kind>.oc1.iad.<60 chars>``."""
    unique = "".join(secrets.choice(_ALPHABET) for _ in range(60))
    return f"ocid1.{kind}.oc1.{REGION_KEY if regional else ''}.{unique}"


@dataclass
class Identity:
    """Who the local backend's single user is; everything the control plane needs to know about it."""

    tenancy: str
    user: str
    fingerprint: str
    compartment_id: str
    project_id: str
    config_file: str
    key_file: str
    profile: str = PROFILE
    region: str = REGION

    @property
    def key_id(self) -> str:
        """The ``keyId`` a request signed with this profile carries."""
        return f"{self.tenancy}/{self.user}/{self.fingerprint}"


def fingerprint_of(public_key) -> str:
    """Colon-separated hex MD5 of the DER public key, as the OCI console shows it."""
    from cryptography.hazmat.primitives import serialization

    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    digest = hashlib.md5(der).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o600)


def _write_config(identity: Identity) -> None:
    text = (
        f"[{identity.profile}]\n"
        f"user={identity.user}\n"
        f"fingerprint={identity.fingerprint}\n"
        f"key_file={identity.key_file}\n"
        f"tenancy={identity.tenancy}\n"
        f"region={identity.region}\n"
    )
    Path(identity.config_file).write_text(text)


def planned(state_dir: Path) -> dict:
    """What the backend of ``state_dir`` signs with and where, read without creating anything.

    config_file, profile and region always; compartment_id and project_id once its first start made them.
    """
    try:
        stored = json.loads((state_dir / "identity.json").read_text())
    except (OSError, ValueError):
        stored = {}
    stored = stored if isinstance(stored, dict) else {}
    values = {
        "config_file": str(state_dir / "config"),
        "profile": stored.get("profile") or PROFILE,
        "region": stored.get("region") or REGION,
    }
    for key in ("compartment_id", "project_id"):
        if stored.get(key):
            values[key] = stored[key]
    return values


def load_or_create(state_dir: Path) -> Identity:
    """Read ``identity.json`` of the state dir, creating the key pair and config profile on first start."""
    state_dir.mkdir(parents=True, exist_ok=True)
    record = state_dir / "identity.json"
    key_path = state_dir / "key.pem"
    config_path = state_dir / "config"
    if record.exists() and key_path.exists():
        data = json.loads(record.read_text())
        identity = Identity(**{**data, "config_file": str(config_path), "key_file": str(key_path)})
        if not config_path.exists():
            _write_config(identity)
        return identity

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write_private(
        key_path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        ),
    )
    (state_dir / "key_public.pem").write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    identity = Identity(
        tenancy=new_ocid("tenancy", regional=False),
        user=new_ocid("user", regional=False),
        fingerprint=fingerprint_of(key.public_key()),
        compartment_id=new_ocid("compartment", regional=False),
        project_id=new_ocid("datascienceproject"),
        config_file=str(config_path),
        key_file=str(key_path),
    )
    _write_config(identity)
    stored = {k: v for k, v in asdict(identity).items() if k not in {"config_file", "key_file"}}
    tmp = record.with_suffix(".tmp")
    tmp.write_text(json.dumps(stored, indent=1))
    os.replace(tmp, record)
    return identity


def load_public_key(state_dir: Path):
    """The public key requests must be signed for (derived from ``key.pem``)."""
    from cryptography.hazmat.primitives import serialization

    private = serialization.load_pem_private_key((state_dir / "key.pem").read_bytes(), password=None)
    return private.public_key()


def b64_sha256(data: bytes) -> str:
    """Base64 SHA-256, the ``x-content-sha256`` form."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")
