from botocore.exceptions import BotoCoreError, ClientError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from ledger.mirror.outbox import mirror_outbox_write
from ledger.mirror.sync import mirror_drift_check, mirror_full_write
from ledger.mirror.writes import WriteReport


class Command(BaseCommand):
    help = (
        "Rewrite every item of the gate's mirror from Postgres (never touching what the gate has used). "
        "--check only compares, prints the drift, records the result (the admin's overview shows it) and exits "
        "non-zero when there is any; "
        "--pending only writes what the outbox holds (writes that failed or never ran after their commit)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument("--check", action="store_true", help="compare only; exit 1 on any drift")
        mode.add_argument("--pending", action="store_true", help="write only what the outbox holds")

    def handle(self, *, check: bool, pending: bool, verbosity: int, **options) -> None:
        try:
            self._handle(check=check, pending=pending, verbosity=verbosity)
        except (BotoCoreError, ClientError) as e:
            raise CommandError(f"the mirror cannot be read: {e}") from e

    def _handle(self, *, check: bool, pending: bool, verbosity: int) -> None:
        if check:
            self._check()
            return
        if pending:
            with tqdm(unit="item", desc="outbox", disable=verbosity < 1, file=self.stderr, mininterval=1) as bar:
                report = mirror_outbox_write(force=True, progress=bar)
        else:
            report = mirror_full_write(
                lambda total, desc: tqdm(
                    total=total, unit="item", desc=desc, disable=verbosity < 1, file=self.stderr, mininterval=1
                )
            )
        self._report(report)

    def _check(self) -> None:
        drift = mirror_drift_check()  # recorded for the admin's overview
        for line in drift:
            self.stdout.write(line)
        if drift:
            raise CommandError(f"the mirror differs from Postgres in {len(drift)} way(s)")
        self.stdout.write("no drift: the mirror matches Postgres")

    def _report(self, report: WriteReport) -> None:
        self.stdout.write(
            f"{report.written} item(s) written, {report.current} already current, {len(report.failed)} failed"
        )
        if report.failed:
            for (pk, sk), error in sorted(report.failed.items()):
                self.stderr.write(f"{pk} {sk}: {error}")
            raise CommandError(f"{len(report.failed)} item(s) could not be written; they stay pending")
