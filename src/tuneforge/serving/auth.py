"""API-key authentication: `Authorization: Bearer KEY` on every path except health checks (and
the image page, `GET /`, which holds no data: its requests carry the key the user pastes).

Keys come from `--api-key-file` (one per line, `#` comments) or `$TUNEFORGE_API_KEYS`
(comma-separated). Only their SHA-256 digests are kept in memory, and a presented key is
compared against every digest with `hmac.compare_digest` (no early exit), so neither a memory
dump nor response timing reveals a key. Admin keys (reload endpoint) are a separate set.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from pathlib import Path

from tuneforge.errors import ConfigError

OPEN_PATHS = ("/v2/health/live", "/v2/health/ready", "/health", "/v2")
# The image page (GET only): a browser loads it without a key, then sends the key it is given.
PAGE_PATHS = ("/",)


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


class KeySet:
    def __init__(self, keys: list[str]) -> None:
        self._digests = [_digest(k) for k in keys if k]

    def __len__(self) -> int:
        return len(self._digests)

    def match(self, key: str | None) -> str | None:
        """The key's id (first 8 hex of its digest, safe to log) if it is valid, else None."""
        if not key:
            return None
        presented, found = _digest(key), False
        for digest in self._digests:
            found |= hmac.compare_digest(presented, digest)
        return presented.hex()[:8] if found else None


def read_keys(file: Path | None, env_var: str) -> list[str]:
    keys: list[str] = []
    if file is not None:
        if not Path(file).exists():
            raise ConfigError(f"API key file {file} not found.")
        for line in Path(file).read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                keys.append(line)
    keys += [k.strip() for k in os.environ.get(env_var, "").split(",") if k.strip()]
    short = [k for k in keys if len(k) < 16]
    if short:
        raise ConfigError(
            f"{len(short)} API key(s) are shorter than 16 characters; use long random keys, "
            'e.g. python -c "import secrets; print(secrets.token_urlsafe(32))".'
        )
    return keys


def server_keys(file: Path | None, insecure_no_auth: bool) -> list[str] | None:
    """The API keys a server requires (--api-key-file and $TUNEFORGE_API_KEYS); None means no
    authentication, which only an explicit --insecure-no-auth gives."""
    keys = read_keys(file, "TUNEFORGE_API_KEYS")
    if insecure_no_auth:
        return None
    if not keys:
        raise ConfigError(
            "No API keys: pass --api-key-file FILE or set TUNEFORGE_API_KEYS "
            "(or --insecure-no-auth for a local experiment)."
        )
    return keys


def bearer(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" else None
    return None


class AuthMiddleware:
    """Pure ASGI (no body buffering): rejects before the body is read."""

    def __init__(self, app, keys: KeySet | None) -> None:
        self.app, self.keys = app, keys

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or self.keys is None or scope["path"] in OPEN_PATHS:
            return await self.app(scope, receive, send)
        if scope["path"] in PAGE_PATHS and scope["method"] in ("GET", "HEAD"):
            return await self.app(scope, receive, send)
        key_id = self.keys.match(bearer(scope["headers"]))
        if key_id is None:
            return await send_json(
                send,
                401,
                {"detail": "Missing or invalid API key: send 'Authorization: Bearer KEY'."},
                [(b"www-authenticate", b"Bearer")],
            )
        scope.setdefault("state", {})["key_id"] = key_id
        return await self.app(scope, receive, send)


async def send_json(send, status: int, body: dict, headers: list | None = None) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})
