"""OCI request signing: pick the oci SDK signer for the auth mode, describe it safely, refresh it on a 401."""

from __future__ import annotations

import os
import threading
from typing import Any

from odsc_magics.errors import AuthenticationError, ConfigurationError

__all__ = ["TOKEN_MODES", "Credentials", "load_credentials", "profile_value"]

TOKEN_MODES = frozenset({"security_token", "instance_principal", "resource_principal"})


def profile_value(config_file: str, profile: str, key: str) -> Any:
    """One value of an OCI config profile, or None when the file, profile or key is missing."""
    import oci

    try:
        return oci.config.from_file(config_file, profile).get(key)
    except (oci.exceptions.ClientError, OSError, ValueError):
        return None


class Credentials:
    """A requests auth object around the oci SDK signer of one auth mode; refresh may swap the signer."""

    def __init__(
        self,
        mode: str,
        signer: Any,
        *,
        region: str | None,
        description: str,
        oci_config: dict,
        config_file: str | None = None,
        profile: str | None = None,
    ) -> None:
        self.mode = mode
        self.signer = signer
        self.region = region
        self.description = description
        self.oci_config = oci_config
        self.config_file = config_file
        self.profile = profile
        self._lock = threading.Lock()
        self.generation = 0

    def __call__(self, request: Any) -> Any:
        return self.signer(request)

    def __repr__(self) -> str:
        return f"Credentials({self.description})"

    @property
    def refreshable(self) -> bool:
        return self.mode in TOKEN_MODES

    def refresh(self, seen_generation: int | None = None) -> bool:
        """Renew a token-based signer once and return True; False for api_key (nothing to renew).

        ``seen_generation`` lets concurrent callers that saw the same 401 share one renewal. A renewal
        that fails raises AuthenticationError saying why (never the token) and what to do.
        """
        if not self.refreshable:
            return False
        with self._lock:
            if seen_generation is not None and seen_generation != self.generation:
                return True
            try:
                if self.mode == "security_token":
                    self.signer = _security_token_signer(self.oci_config, self.config_file, self.profile)
                else:
                    self.signer.refresh_security_token()
            except ConfigurationError as exc:
                raise AuthenticationError(
                    f"The request was not authenticated and the {self.description} token could not be "
                    f"renewed: {exc.message}",
                    hint=exc.hint,
                ) from None
            except Exception as exc:
                raise AuthenticationError(
                    f"The request was not authenticated and renewing the {self.description} token failed "
                    f"({type(exc).__name__}).",
                    hint=_RENEW_HINTS.get(self.mode)
                    or f"Run `oci session authenticate --profile-name {self.profile}` (or `oci session refresh`).",
                ) from None
            self.generation += 1
            return True


_RENEW_HINTS = {
    "instance_principal": "The instance's metadata service or the identity endpoint did not answer: check the "
    "instance's network and its dynamic group, then run the cell again.",
    "resource_principal": "The notebook session's resource principal token could not be renewed: check that the "
    "session is ACTIVE and its network, then run the cell again.",
}


def _load_profile(config_file: str, profile: str) -> dict:
    import oci

    where = f"profile {profile} of {config_file}"
    try:
        return oci.config.from_file(config_file, profile)
    except oci.exceptions.ConfigFileNotFound:
        raise ConfigurationError(
            f"OCI config file {config_file} not found.",
            hint="Create it with `oci setup config`, or set `%config LLMMagics.config_file = '...'` "
            "(env ODSC_MAGICS_CONFIG_FILE), or use another auth mode.",
        ) from None
    except oci.exceptions.ProfileNotFound:
        raise ConfigurationError(
            f"Profile {profile} not found in {config_file}.",
            hint="Set `%config LLMMagics.profile = '...'` (env ODSC_MAGICS_PROFILE) to one of its profiles.",
        ) from None
    except (oci.exceptions.ClientError, ValueError) as exc:
        raise ConfigurationError(
            f"The {where} cannot be used: {type(exc).__name__}.",
            hint="Check its key_file path and entries (see `oci setup config`).",
        ) from None


def _api_key_signer(cfg: dict, where: str) -> Any:
    import oci

    try:
        return oci.signer.Signer.from_config(cfg)
    except oci.exceptions.InvalidConfig as exc:
        keys = ", ".join(sorted(getattr(exc, "errors", {}) or {})) or "some entries"
        raise ConfigurationError(
            f"The {where} is incomplete or invalid ({keys}).",
            hint="An api_key profile needs user, tenancy, fingerprint, key_file and region.",
        ) from None
    except oci.exceptions.MissingPrivateKeyPassphrase:
        raise ConfigurationError(
            f"The key file of the {where} is encrypted and the profile has no pass_phrase.",
            hint="Add pass_phrase to that profile, or use an unencrypted key.",
        ) from None
    except (oci.exceptions.InvalidPrivateKey, ValueError, TypeError):
        raise ConfigurationError(
            f"The key file of the {where} is not a usable private key (or the pass_phrase is wrong).",
            hint="Point key_file at the PEM private key whose public key is uploaded for that user.",
        ) from None
    except OSError:
        raise ConfigurationError(
            f"The key file of the {where} cannot be read.",
            hint="Check the key_file path in that profile and its permissions.",
        ) from None


def _security_token_signer(cfg: dict, config_file: str | None, profile: str | None) -> Any:
    import oci

    where = f"profile {profile} of {config_file}"
    token_file = cfg.get("security_token_file")
    if not token_file:
        raise ConfigurationError(
            f"The {where} has no security_token_file.",
            hint=f"Create a session with `oci session authenticate --profile-name {profile}`.",
        )
    try:
        with open(os.path.expanduser(token_file), encoding="utf-8") as fh:
            token = fh.read().strip()
        key = oci.signer.load_private_key_from_file(cfg["key_file"], cfg.get("pass_phrase"))
    except (OSError, KeyError, oci.exceptions.ClientError, ValueError, TypeError):
        raise ConfigurationError(
            f"The session token or key of the {where} cannot be loaded.",
            hint=f"Run `oci session authenticate --profile-name {profile}` (or `oci session refresh`).",
        ) from None
    return oci.auth.signers.SecurityTokenSigner(token, key)


def load_credentials(mode: str, *, config_file: str, profile: str, region: str | None = None) -> Credentials:
    """The signer of ``mode``: api_key, security_token, instance_principal or resource_principal."""
    import oci

    config_file = os.path.expanduser(config_file)
    if mode in ("api_key", "security_token"):
        cfg = _load_profile(config_file, profile)
        where = f"profile {profile} of {config_file}"
        signer = (
            _api_key_signer(cfg, where)
            if mode == "api_key"
            else _security_token_signer(cfg, config_file, profile)
        )
        region = region or cfg.get("region")
        if region:
            cfg = {**cfg, "region": region}
        return Credentials(
            mode,
            signer,
            region=region,
            description=f"{mode} ({where})",
            oci_config=cfg,
            config_file=config_file,
            profile=profile,
        )
    if mode == "instance_principal":
        try:
            signer = oci.auth.signers.InstancePrincipalsSecurityTokenSigner()
        except Exception as exc:
            raise ConfigurationError(
                f"Instance principal auth is not available here ({type(exc).__name__}).",
                hint="It works only on an OCI compute instance in a dynamic group; choose another "
                "`%config LLMMagics.auth`.",
            ) from None
        region = region or getattr(signer, "region", None)
        return Credentials(
            mode, signer, region=region, description="instance_principal", oci_config={"region": region}
        )
    if mode == "resource_principal":
        try:
            signer = oci.auth.signers.get_resource_principals_signer()
        except Exception as exc:
            raise ConfigurationError(
                f"Resource principal auth is not available here ({type(exc).__name__}).",
                hint="It works in OCI notebook sessions, jobs and functions; "
                "elsewhere set `%config LLMMagics.auth = 'api_key'`.",
            ) from None
        region = region or getattr(signer, "region", None) or os.environ.get("OCI_RESOURCE_PRINCIPAL_REGION")
        version = os.environ.get("OCI_RESOURCE_PRINCIPAL_VERSION", "?")
        return Credentials(
            mode,
            signer,
            region=region,
            description=f"resource_principal (OCI_RESOURCE_PRINCIPAL_VERSION {version})",
            oci_config={"region": region},
        )
    raise ConfigurationError(
        f"Unknown auth mode {mode!r}.",
        hint="Use one of api_key, security_token, instance_principal, resource_principal.",
    )
