from botocore.exceptions import BotoCoreError, ClientError
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from ledger.mirror.outbox import mirror_outbox_write
from ledger.usage import mirror_usage_pull


class Command(BaseCommand):
    help = (
        "Record in the ledger the credits the gate has spent since the last run (running it twice changes "
        "nothing), after writing to the mirror what the outbox still holds (writes that failed or never ran "
        "after their commit). Meant to run every minute."
    )

    def handle(self, *, verbosity: int, **options) -> None:
        try:
            self._handle(verbosity)
        except (BotoCoreError, ClientError) as e:
            raise CommandError(f"the mirror cannot be read: {e}") from e

    def _handle(self, verbosity: int) -> None:
        # First what must reach the gate (a suspension, a grant whose write after commit
        # never happened), then what the gate spent.
        disable = None if verbosity >= 1 else True  # None: a bar only on a terminal
        with tqdm(unit="item", desc="outbox", disable=disable, file=self.stderr) as bar:
            pending = mirror_outbox_write(force=True, progress=bar)
        usage = mirror_usage_pull(
            lambda total: tqdm(total=total, unit="item", desc="sync_usage", disable=disable, file=self.stderr)
        )
        self.stdout.write(
            f"{usage.items} balance item(s) read, {usage.credits} credit(s) of usage recorded "
            f"on {usage.balances} balance(s)"
        )
        if pending.written or pending.current or pending.failed:
            self.stdout.write(
                f"pending mirror writes: {pending.written + pending.current} done, {len(pending.failed)} still failing"
            )
        if pending.failed:
            raise CommandError(f"{len(pending.failed)} mirror write(s) still failing")
