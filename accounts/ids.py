"""Public identifiers: what tokens, URLs and emails show instead of database ids."""

import secrets

from authorizer.tokens import CLIENT_ID_FORMAT

# Lower-case letters and digits without look-alikes (0/o, 1/l/i).
_ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"
# What a client id can look like (Credential.client_id: "cli_" + public_id's characters) is part of
# the token contract (authorizer/tokens.py); anything else names no credential and need not be looked up.
__all__ = ["CLIENT_ID_FORMAT", "public_id"]


def public_id(prefix: str, length: int = 20) -> str:
    """`prefix_` + `length` random characters (about 4.95 bits each)."""
    return f"{prefix}_" + "".join(secrets.choice(_ALPHABET) for _ in range(length))
