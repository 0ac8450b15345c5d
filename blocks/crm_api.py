"""The CRM REST API's address and credentials, as a Prefect block (SPEC §3, §9)."""

from __future__ import annotations

import functools
import ipaddress
import ssl
from typing import Literal
from urllib.parse import urlsplit

import httpx
from prefect.blocks.core import Block
from pydantic import Field, SecretStr, model_validator


def is_loopback_host(host: str) -> bool:
    """localhost, 127.0.0.0/8 or ::1: plain HTTP there never leaves the machine."""
    name = host.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class CrmApiCredentials(Block):
    """
    Where the CRM's REST API lives and how to authenticate to it: a bearer token, an API key
    in a header, or HTTP basic. Secrets are `SecretStr` (masked in the UI, repr and logs) and
    are only read when `get_client()` builds the HTTP client.

    Plain `http://` is refused unless the host is loopback or `allow_insecure_http` is set,
    so a token never crosses a network in clear text by accident.

    Example:
        ```python
        from blocks.crm_api import CrmApiCredentials
        with CrmApiCredentials.load("crm-api").get_client() as client:
            client.get("/interactions", params={"start_date": "2025-07-01"})
        ```
    """

    _block_type_name = "CRM API Credentials"
    _block_type_slug = "crm-api-credentials"
    _description = "Base URL and credentials (bearer, API key or basic) for the CRM REST API."

    base_url: str = Field(
        default=...,
        description="Root URL of the API, e.g. https://crm.example.com/api/v2; paths are "
        "joined to it.",
        title="Base URL",
    )
    auth_kind: Literal["bearer", "api_key", "basic"] = Field(
        default="bearer",
        description="'bearer' (Authorization: Bearer <token>), 'api_key' (<token> in the header "
        "named by api_key_header) or 'basic' (username and password).",
    )
    token: SecretStr | None = Field(
        default=None, description="The bearer token, or the API key when auth_kind is 'api_key'."
    )
    api_key_header: str = Field(
        default="X-API-Key", description="Header that carries the API key (auth_kind 'api_key')."
    )
    username: str | None = Field(default=None, description="User for HTTP basic auth.")
    password: SecretStr | None = Field(default=None, description="Password for HTTP basic auth.")
    verify_tls: bool = Field(
        default=True, description="Verify the server's TLS certificate. Leave on outside tests.",
        title="Verify TLS",
    )
    timeout_seconds: float = Field(
        default=30.0, gt=0, description="Connect/read timeout of each request, in seconds."
    )
    allow_insecure_http: bool = Field(
        default=False,
        description="Allow plain http:// to a non-loopback host (credentials travel unencrypted).",
        title="Allow insecure HTTP",
    )

    @model_validator(mode="after")
    def _check(self) -> CrmApiCredentials:
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url {self.base_url!r} must be an http(s) URL with a host")
        remote_http = parts.scheme == "http" and not is_loopback_host(parts.hostname)
        if remote_http and not self.allow_insecure_http:
            raise ValueError(
                f"base_url uses plain http to {parts.hostname}: credentials would travel "
                "unencrypted; use https, or set allow_insecure_http=True if you accept that"
            )
        if self.auth_kind in ("bearer", "api_key") and not _secret(self.token):
            raise ValueError(f"auth_kind {self.auth_kind!r} needs a token")
        if self.auth_kind == "basic" and not (self.username and _secret(self.password)):
            raise ValueError("auth_kind 'basic' needs a username and a password")
        return self

    def auth_headers(self) -> dict[str, str]:
        """The headers that authenticate a request (none for basic, which uses httpx auth)."""
        if self.auth_kind == "bearer":
            return {"Authorization": f"Bearer {_secret(self.token)}"}
        if self.auth_kind == "api_key":
            return {self.api_key_header: _secret(self.token)}
        return {}

    def get_client(self) -> httpx.Client:
        """An httpx client bound to base_url, with auth, TLS verification and timeout applied.

        The caller closes it (use it as a context manager).
        """
        auth = (httpx.BasicAuth(self.username or "", _secret(self.password))
                if self.auth_kind == "basic" else None)
        return httpx.Client(
            base_url=self.base_url.rstrip("/"),
            headers={"Accept": "application/json", **self.auth_headers()},
            auth=auth,
            verify=_default_tls_context() if self.verify_tls else False,
            timeout=self.timeout_seconds,
            follow_redirects=False,  # a redirect could carry the credential to another host
        )


@functools.cache
def _default_tls_context() -> ssl.SSLContext:
    """httpx's verifying context, built once: loading the CA bundle costs ~0.1 s per client."""
    return httpx.create_ssl_context()


def _secret(value: SecretStr | None) -> str:
    return value.get_secret_value() if value is not None else ""
