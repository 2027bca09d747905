"""The emails a local moto server's SES has accepted, read back for a person or a test.

moto keeps every message sent through SES's SendRawEmail (what django-ses uses) and
lists them at `GET <moto>/moto-api/data.json`, oldest first; they are gone when the
server stops or is reset. Nothing is delivered anywhere: this is the only way to read them.
"""

import json
import re
from dataclasses import dataclass
from email import message_from_string, policy
from email.message import EmailMessage
from urllib.request import urlopen

# As the welcome email (templates/emails/purchase_welcome.txt) prints them, each on its own line.
_CLIENT_ID = re.compile(r"^Client ID: (\S+)$", re.M)
_CLIENT_SECRET = re.compile(r"^Client secret: (\S+)$", re.M)


@dataclass(frozen=True)
class Mail:
    message_id: str  # SES's id
    sender: str
    to: list[str]
    subject: str
    date: str
    text: str  # the text/plain part ("" if there is none)


def _text(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    return part.get_content().replace("\r\n", "\n") if part is not None else ""


def mail_sent(endpoint_url: str, *, timeout: float = 10) -> list[Mail]:
    """Every email the moto server at `endpoint_url` has accepted, oldest first."""
    with urlopen(f"{endpoint_url.rstrip('/')}/moto-api/data.json", timeout=timeout) as response:
        data = json.load(response)
    mails = []
    for raw in data.get("ses", {}).get("RawMessage", []):
        message = message_from_string(raw["raw_data"], policy=policy.default)
        mails.append(
            Mail(
                message_id=raw["id"],
                sender=str(message.get("From", raw.get("source", ""))),
                to=list(dict.fromkeys(raw.get("destinations") or [])),  # moto may list an address twice
                subject=str(message.get("Subject", "")),
                date=str(message.get("Date", "")),
                text=_text(message),
            )
        )
    return mails


def mail_to(endpoint_url: str, address: str) -> list[Mail]:
    """The emails sent to `address` (case-insensitive), oldest first."""
    wanted = address.strip().lower()
    return [m for m in mail_sent(endpoint_url) if wanted in (a.lower() for a in m.to)]


def credentials_in(mails: list[Mail]) -> tuple[str, str] | None:
    """The client id and secret of the newest of `mails` that holds them (a welcome email,
    first or resent), or None: later "credits added" and low-balance emails hold none."""
    for mail in reversed(mails):
        client_id, secret = _CLIENT_ID.search(mail.text), _CLIENT_SECRET.search(mail.text)
        if client_id and secret:
            return client_id.group(1), secret.group(1)
    return None
