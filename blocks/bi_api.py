"""Prefect block holding where and how to reach the BI tool's HTTP API."""

from __future__ import annotations

import ipaddress

import httpx
from prefect.blocks.core import Block
from pydantic import ConfigDict, Field, SecretStr, model_validator

USER_AGENT = "customer-performance-pipeline"


def is_loopback_host(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1): traffic never leaves the machine."""
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class BiApiCredentials(Block):
    """Base URL and bearer token of the BI tool's HTTP API, used to push the dashboard.

    The token is a secret: it is sent only in the Authorization header and never appears
    in the block's repr, the logs or an artifact. Plain http:// is refused for anything
    but a loopback host unless `allow_insecure_http` is set, so a token is not sent in
    clear text across a network by accident.

    Example:
        Push a payload with a client built from a saved block:
        ```python
        from blocks.bi_api import BiApiCredentials

        with BiApiCredentials.load("bi-api").get_client() as client:
            client.post("/dashboards/customer-performance", json={"period": "2025-07"})
        ```
    """

    # A validation error would otherwise echo the raw input, token included.
    model_config = ConfigDict(hide_input_in_errors=True)

    _block_type_name = "BI API Credentials"
    _block_type_slug = "bi-api-credentials"
    _description = "Base URL and bearer token of a BI tool's HTTP API (dashboard pushes)."

    base_url: str = Field(
        default=...,
        title="Base URL",
        description="Root of the BI API; request paths are appended to it.",
        examples=["https://bi.example.com/api"],
    )
    token: SecretStr = Field(
        default=...,
        description="Bearer token sent as 'Authorization: Bearer <token>'.",
    )
    verify_tls: bool = Field(
        default=True,
        title="Verify TLS",
        description="Check the server's certificate. Turn off only for a self-signed test server.",
    )
    timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description="Connect, read and write time-out of each request, in seconds.",
    )
    allow_insecure_http: bool = Field(
        default=False,
        title="Allow insecure HTTP",
        description="Permit http:// to a non-loopback host (the token then travels unencrypted).",
    )

    @model_validator(mode="after")
    def _safe_url(self) -> BiApiCredentials:
        try:
            url = httpx.URL(self.base_url)
        except httpx.InvalidURL:
            raise ValueError(
                "base_url is not a valid URL"
            ) from None  # not echoed: it may hold secrets
        if url.userinfo:
            raise ValueError(
                "base_url must not carry credentials; put the token in the 'token' field"
            )
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"base_url {self.base_url!r} must be an http(s) URL with a host")
        if url.scheme == "http" and not is_loopback_host(url.host) and not self.allow_insecure_http:
            raise ValueError(
                f"base_url {self.base_url!r} uses plain http to {url.host}: the token would travel "
                "unencrypted. Use https, or set allow_insecure_http=True if you accept that."
            )
        return self

    def get_client(self) -> httpx.Client:
        """An httpx client for the API: base URL, bearer auth, time-out, TLS checks; no redirects
        (a redirect would resend the token to wherever it points)."""
        return httpx.Client(
            base_url=self.base_url,
            headers={
                "Authorization": f"Bearer {self.token.get_secret_value()}",
                "Accept": "application/json",
                "User-Agent": USER_AGENT,
            },
            timeout=httpx.Timeout(self.timeout_seconds),
            verify=self.verify_tls,
            follow_redirects=False,
        )
