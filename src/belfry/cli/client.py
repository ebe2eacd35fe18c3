"""The CLI's HTTP client for the Belfry API."""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Any

import httpx

from belfry.cli.errors import EXIT_BAD_INPUT, EXIT_FAILURE, CliError
from belfry.server.defaults import DEFAULT_PORT, default_state_dir

__all__ = ["ApiClient", "resolve_server", "resolve_token"]


def resolve_server(option: str | None) -> str:
    return (option or os.environ.get("BELFRY_SERVER") or f"http://127.0.0.1:{DEFAULT_PORT}").rstrip(
        "/"
    )


def resolve_token(option: str | None) -> str | None:
    """--token, else $BELFRY_TOKEN, else the first admin token a local single-node server
    wrote to its state directory (so one machine works with no setup)."""
    if option:
        return option
    if token := os.environ.get("BELFRY_TOKEN"):
        return token
    path: Path = default_state_dir() / "admin-token"
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


class ApiClient:
    def __init__(self, server: str, token: str | None, timeout: float = 30.0) -> None:
        self.server = server
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=server, headers=headers, timeout=timeout, verify=_trust()
        )

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._send(method, path, **kwargs)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The answer to one request; a refusal or an unreachable server is a CliError."""
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise CliError(f"the Belfry server at {self.server} did not answer in time") from None
        except httpx.HTTPError as error:
            raise CliError(
                f"cannot reach the Belfry server at {self.server}: {_reason(error)} "
                "(is `belfry server` running? set --server or BELFRY_SERVER)"
            ) from None
        if response.status_code == 401:
            raise CliError(
                "the server refused the token (set --token or BELFRY_TOKEN; "
                "`belfry token create --db URL` on the server host makes one)"
            )
        if response.status_code == 403:
            raise CliError(f"not allowed: {_detail(response)}")
        if response.status_code in (413, 422):
            raise CliError(_detail(response), EXIT_BAD_INPUT)
        if response.status_code >= 400:
            raise CliError(_detail(response), EXIT_FAILURE)
        return response

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=_given(params))

    def get_all(self, path: str, **params: Any) -> list[Any]:
        """Every item of a paged list: the first page, then each page its answer's
        ``Link: <URL>; rel="next"`` header names (RFC 8288), until one names none."""
        items: list[Any] = []
        response = self._send("GET", path, params=_given(params))
        while True:
            items.extend(response.json())
            following = response.links.get("next", {}).get("url")
            if not following:
                return items
            # A reference without a host is taken against --server, as any path is.
            response = self._send("GET", following)

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, json=body)

    def put(self, path: str, body: Any = None) -> Any:
        return self.request("PUT", path, json=body)

    def patch(self, path: str, body: Any = None) -> Any:
        return self.request("PATCH", path, json=body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)


def _given(params: dict[str, Any]) -> dict[str, Any]:
    """Query parameters without the options left out (None)."""
    return {key: value for key, value in params.items() if value is not None}


def _trust() -> ssl.SSLContext:
    """The certificates to trust: $BELFRY_CA (a private CA's bundle) only, if set; else
    the system's trust store (like the workers)."""
    bundle = os.environ.get("BELFRY_CA")
    try:
        return ssl.create_default_context(cafile=bundle) if bundle else ssl.create_default_context()
    except (OSError, ssl.SSLError) as error:
        raise CliError(f"BELFRY_CA: cannot read {bundle}: {error}", EXIT_BAD_INPUT) from None


def _reason(error: httpx.HTTPError) -> str:
    text = str(error) or type(error).__name__
    return text.splitlines()[0]


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except ValueError:
        return f"server error {response.status_code}"
    if isinstance(detail, list):
        # FastAPI validation errors: name the field of each.
        parts = []
        for item in detail:
            location = ".".join(str(p) for p in item.get("loc", []) if p != "body")
            parts.append(f"{location}: {item.get('msg')}" if location else str(item.get("msg")))
        return "; ".join(parts)
    return str(detail)
