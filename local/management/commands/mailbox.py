import os
import shlex
from urllib.error import URLError

from django.core.management.base import BaseCommand, CommandError, CommandParser

from local.mailbox import Mail, credentials_in, mail_sent, mail_to
from local.stack import DEFAULT_MOTO_PORT


class Command(BaseCommand):
    help = (
        "Print the emails the local stack sent, oldest first and newest last (`make run` sends them through "
        "django-ses to its moto server, which keeps them in memory; nothing is delivered). The welcome email "
        "carries the client secret; --credentials prints it for a shell."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--moto",
            default=os.getenv("AWS_ENDPOINT_URL") or f"http://127.0.0.1:{DEFAULT_MOTO_PORT}",
            help="the moto server (default: AWS_ENDPOINT_URL, else %(default)s)",
        )
        parser.add_argument("--to", help="only the emails to this address")
        parser.add_argument("--count", type=int, help="only the latest COUNT (default: all)")
        parser.add_argument(
            "--credentials",
            action="store_true",
            help="print only CLIENT_ID=… and CLIENT_SECRET=… from the newest email that holds them, "
            "for `eval`; fail if none does",
        )

    def handle(self, *, moto: str, to: str | None, count: int | None, credentials: bool, **options) -> None:
        try:
            mails = mail_to(moto, to) if to else mail_sent(moto)
        except (URLError, OSError) as e:
            raise CommandError(f"no moto server answers at {moto} ({e}): is `make run` running?") from e
        whose = f" to {to}" if to else ""
        if credentials:
            found = credentials_in(mails)
            if found is None:
                raise CommandError(
                    f"none of the {len(mails)} email(s){whose} in the mailbox of {moto} holds a client id and "
                    "secret: a first purchase sends them (a restart of `make run` empties the mailbox)"
                )
            self.stdout.write(f"CLIENT_ID={shlex.quote(found[0])}\nCLIENT_SECRET={shlex.quote(found[1])}")
            return
        if not mails:
            self.stdout.write(f"No emails{whose} in the mailbox of {moto} yet (a restart empties it).")
            return
        shown = mails if count is None else mails[-count:] if count > 0 else []
        which = "all" if len(shown) == len(mails) else f"the latest {len(shown)}"
        self.stdout.write(f"{len(mails)} email(s){whose} in the mailbox of {moto}; {which}, newest last:")
        first = len(mails) - len(shown) + 1
        for number, mail in enumerate(shown, first):
            self._print(number, len(mails), mail)

    def _print(self, number: int, total: int, mail: Mail) -> None:
        self.stdout.write(f"\n--- email {number} of {total} " + "-" * 50)
        self.stdout.write(f"Date:    {mail.date}")
        self.stdout.write(f"From:    {mail.sender}")
        self.stdout.write(f"To:      {', '.join(mail.to)}")
        self.stdout.write(f"Subject: {mail.subject}\n")
        self.stdout.write(mail.text.rstrip("\n"))
