import os
from urllib.error import URLError

from django.core.management.base import BaseCommand, CommandError, CommandParser

from local.mailbox import Mail, mail_sent, mail_to
from local.stack import DEFAULT_MOTO_PORT


class Command(BaseCommand):
    help = (
        "Print the latest emails the local stack sent (`make run` sends them through django-ses to its "
        "moto server, which keeps them in memory; nothing is delivered). The welcome email carries the client secret."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--moto",
            default=os.getenv("AWS_ENDPOINT_URL") or f"http://127.0.0.1:{DEFAULT_MOTO_PORT}",
            help="the moto server (default: AWS_ENDPOINT_URL, else %(default)s)",
        )
        parser.add_argument("--to", help="only the emails to this address")
        parser.add_argument("--count", type=int, default=1, help="how many of the latest to print in full (default 1)")

    def handle(self, *, moto: str, to: str | None, count: int, **options) -> None:
        try:
            mails = mail_to(moto, to) if to else mail_sent(moto)
        except (URLError, OSError) as e:
            raise CommandError(f"no moto server answers at {moto} ({e}): is `make run` running?") from e
        whose = f" to {to}" if to else ""
        if not mails:
            self.stdout.write(f"No emails{whose} in the mailbox of {moto} yet (a restart empties it).")
            return
        shown = mails[-count:] if count > 0 else []
        self.stdout.write(
            f"{len(mails)} email(s){whose} in the mailbox of {moto}; the latest {len(shown)}, newest last:"
        )
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
