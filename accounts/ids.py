"""Public identifiers: what tokens, URLs and emails show instead of database ids."""

import secrets

# Lower-case letters and digits without look-alikes (0/o, 1/l/i).
_ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"


def public_id(prefix: str, length: int = 20) -> str:
    """`prefix_` + `length` random characters (about 4.95 bits each)."""
    return f"{prefix}_" + "".join(secrets.choice(_ALPHABET) for _ in range(length))
