from django.conf import settings
from django.core.management.base import BaseCommand

from authorizer.mirror import TABLE_DEFINITION
from ledger.mirror.client import mirror_client


class Command(BaseCommand):
    help = (
        "Create the gate's DynamoDB table (MIRROR_TABLE) if it is absent and wait until it is active. "
        "For development and tests: production tables come from the deployment template."
    )

    def handle(self, **options) -> None:
        client = mirror_client()
        table = settings.MIRROR_TABLE
        try:
            client.create_table(TableName=table, **TABLE_DEFINITION)
        except client.exceptions.ResourceInUseException:
            verb = "exists"
        else:
            verb = "created"
        client.get_waiter("table_exists").wait(TableName=table, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        self.stdout.write(f"table {table}: {verb}")
