"""API tokens for the services: `LAKEHOUSE_API_TOKENS` holds only their SHA-256.

An entry is `sha256:<hex of the token>=<subject>:<role>`; `lakehouse token create` prints a
fresh token once and its entry. A service bound to anything but loopback refuses to start
without tokens; with tokens, every request needs `Authorization: Bearer <token>`: 401 without
or with an unknown token, 403 when the token's role may not use the service
(`services:` in governance/policy.yaml).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from dataclasses import dataclass
from pathlib import Path

import yaml

from lakehouse.config import Settings
from lakehouse.errors import ConfigError

DEFAULT_POLICY = Path(__file__).with_name("policy.yaml")


def hash_token(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def new_token(subject: str, role: str) -> tuple[str, str]:
    """(token, its LAKEHOUSE_API_TOKENS entry)."""
    token = secrets.token_urlsafe(32)
    return token, f"{hash_token(token)}={subject}:{role}"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_tokens_to_bind(settings: Settings, host: str, service: str) -> None:
    if not is_loopback(host) and not settings.api_tokens:
        raise ConfigError(
            f"{service} on {host} would be reachable from the network without authentication: "
            "set LAKEHOUSE_API_TOKENS (lakehouse token create --subject NAME --role ROLE) or "
            "bind 127.0.0.1"
        )


def service_roles(service: str, path: Path | None = None) -> set[str]:
    doc = yaml.safe_load((path or DEFAULT_POLICY).read_text("utf-8")) or {}
    return set((doc.get("services") or {}).get(service) or [])


@dataclass(frozen=True)
class Caller:
    subject: str
    role: str


class AuthError(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class TokenCheck:
    """Checks a request's Authorization header against the hashed tokens."""

    def __init__(self, settings: Settings, service: str) -> None:
        self.service = service
        self.entries: dict[str, Caller] = {}
        for entry in settings.api_tokens:
            digest, _, who = entry.partition("=")
            subject, _, role = who.partition(":")
            self.entries[digest] = Caller(subject, role)
        self.roles = service_roles(service, settings.policy_path)

    @property
    def enabled(self) -> bool:
        return bool(self.entries)

    def caller(self, authorization: str | None) -> Caller:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise AuthError(401, "missing bearer token (Authorization: Bearer <token>)")
        digest = hash_token(token.strip())
        found = next((c for d, c in self.entries.items() if hmac.compare_digest(d, digest)), None)
        if found is None:
            raise AuthError(401, "unknown token")
        if found.role not in self.roles:
            raise AuthError(
                403,
                f"role {found.role} may not use {self.service} "
                f"(policy services.{self.service}: {', '.join(sorted(self.roles))})",
            )
        return found
