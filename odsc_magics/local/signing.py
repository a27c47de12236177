"""Verification of OCI HTTP request signatures (draft-cavage, rsa-sha256) against the local profile's key."""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import re
import time
from collections.abc import Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

MAX_SKEW_S = 300.0
REQUIRED = ("date", "(request-target)", "host")
REQUIRED_WITH_BODY = ("content-length", "content-type", "x-content-sha256")
_PARAM = re.compile(r'([A-Za-z]+)\s*=\s*"([^"]*)"')


class SignatureError(Exception):
    """The request's signature is missing or does not hold; the message says why (never echoes it)."""


def parse_authorization(value: str) -> dict[str, str]:
    """The parameters of a ``Signature keyId="…",algorithm="…",headers="…",signature="…"`` header."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "signature":
        raise SignatureError("the authorization header does not use the Signature scheme")
    params = {key.lower(): val for key, val in _PARAM.findall(rest)}
    for needed in ("keyid", "signature", "headers"):
        if needed not in params:
            raise SignatureError(f"the Signature authorization header lacks its {needed} parameter")
    return params


class Verifier:
    """Checks one request against the profile's public key and ``keyId``."""

    def __init__(self, public_key, key_id: str, *, max_skew_s: float = MAX_SKEW_S) -> None:
        self.public_key = public_key
        self.key_id = key_id
        self.max_skew_s = max_skew_s
        self._last_date: tuple[str | None, float] = (None, 0.0)

    def verify(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        body_sha256: bytes | None = None,
        now: float | None = None,
    ) -> None:
        """Raise SignatureError unless the request is signed by the local profile and unaltered.

        ``target`` is the raw path and query as sent; ``body_sha256`` may carry the body's digest if known.
        """
        auth = headers.get("authorization")
        if not auth:
            raise SignatureError("the request is not signed (no authorization header)")
        params = parse_authorization(auth)
        algorithm = params.get("algorithm", "rsa-sha256").lower()
        if algorithm != "rsa-sha256":
            raise SignatureError(f"signature algorithm {algorithm!r} is not supported (use rsa-sha256)")
        if params["keyid"] != self.key_id:
            raise SignatureError("the signing key (keyId) is not the local profile's API key")
        signed = params["headers"].lower().split()
        required = REQUIRED + (REQUIRED_WITH_BODY if method.upper() in {"POST", "PUT", "PATCH"} else ())
        missing = [name for name in required if name not in signed]
        if missing:
            raise SignatureError(f"the signature does not cover the required headers: {' '.join(missing)}")

        lines = []
        for name in signed:
            if name == "(request-target)":
                lines.append(f"(request-target): {method.lower()} {target}")
                continue
            value = headers.get(name)
            if value is None:
                raise SignatureError(f"the signed header {name!r} is absent from the request")
            lines.append(f"{name}: {value}")

        self._check_date(headers["date"], now)
        if "x-content-sha256" in signed:
            digest = body_sha256 if body_sha256 is not None else hashlib.sha256(body).digest()
            claimed = headers["x-content-sha256"].strip()
            if not hmac.compare_digest(claimed, base64.b64encode(digest).decode("ascii")):
                raise SignatureError("x-content-sha256 does not match the request body")
        if "content-length" in signed:
            try:
                declared = int(headers["content-length"])
            except ValueError:
                raise SignatureError("content-length is not a number") from None
            if declared != len(body):
                raise SignatureError("content-length does not match the request body")

        try:
            signature = base64.b64decode(params["signature"], validate=True)
        except ValueError:
            raise SignatureError("the signature is not valid base64") from None
        try:
            self.public_key.verify(signature, "\n".join(lines).encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            raise SignatureError("the signature does not verify with the local profile's public key") from None

    def _check_date(self, value: str, now: float | None) -> None:
        if value == self._last_date[0]:
            sent = self._last_date[1]
        else:
            try:
                sent = email.utils.parsedate_to_datetime(value).timestamp()
            except (TypeError, ValueError):
                raise SignatureError("the date header is not an RFC 1123 date") from None
            self._last_date = (value, sent)
        skew = abs((time.time() if now is None else now) - sent)
        if skew > self.max_skew_s:
            raise SignatureError(
                f"the date header is {skew:.0f} s away from the server's clock (at most 300 s allowed)"
            )
