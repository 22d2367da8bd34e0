"""Access tokens: a file with one token per line (`#` comments), compared in constant time.

A token's identity is a hash of it: the job store records that, never the token itself.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets


def token_identity(token: str) -> str:
    """Who owns a job: a short SHA-256 of the token (the token itself is never stored)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()[:24]


LOCAL_IDENTITY = "local"  # the one owner of a loopback server started without a token file


def read_tokens(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        lines = (line.split("#", 1)[0].strip() for line in f)
        return [line for line in lines if line]


def new_token(path: str) -> str:
    """Append a fresh random token to `path` (created readable by its owner only) and return it."""
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        f.write(token + "\n")
    return token


class TokenSet:
    """The accepted tokens; `identify` compares against every one in constant time."""

    def __init__(self, tokens: list[str]) -> None:
        self._tokens = [t.encode("utf-8") for t in tokens]

    @classmethod
    def from_file(cls, path: str | None) -> TokenSet | None:
        """None (no authentication) without a token file: only allowed on loopback (config checks)."""
        return None if path is None else cls(read_tokens(path))

    def identify(self, presented: str) -> str | None:
        """The identity of a presented token, or None when it is not one of ours."""
        given = presented.encode("utf-8")
        found = False
        for token in self._tokens:
            found |= hmac.compare_digest(token, given)
        return token_identity(presented) if found else None
