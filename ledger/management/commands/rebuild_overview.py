from django.core.management.base import BaseCommand, CommandError, CommandParser

from ledger.overview.rollups import rollups_differences, rollups_rebuild


class Command(BaseCommand):
    help = (
        "Build the admin overview's rollups afresh from the ledger and the purchases (after a load that "
        "bypassed triggers). --check only compares them with the ledger and exits non-zero on any difference."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--check", action="store_true", help="compare only; exit 1 on any difference")

    def handle(self, *, check: bool, **options) -> None:
        if not check:
            rollups_rebuild()
            self.stdout.write("rollups rebuilt from the ledger and the purchases")
        differences = rollups_differences()
        for table, n in differences.items():
            if n:
                self.stdout.write(f"{table}: {n} row(s) differ from the ledger")
        if any(differences.values()):
            raise CommandError("the overview's rollups differ from the ledger")
        self.stdout.write("the overview's rollups equal the ledger's sums")
