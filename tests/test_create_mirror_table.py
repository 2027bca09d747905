"""`create_mirror_table`: the table the contract describes, created once."""

import io

from django.core.management import call_command

from authorizer.mirror import TABLE_DEFINITION
from ledger.mirror.client import mirror_client


def test_it_creates_the_table_and_a_second_run_changes_nothing(aws, settings):
    first, second = io.StringIO(), io.StringIO()
    call_command("create_mirror_table", stdout=first)
    call_command("create_mirror_table", stdout=second)

    assert first.getvalue().strip() == f"table {settings.MIRROR_TABLE}: created"
    assert second.getvalue().strip() == f"table {settings.MIRROR_TABLE}: exists"
    table = mirror_client().describe_table(TableName=settings.MIRROR_TABLE)["Table"]
    assert table["TableStatus"] == "ACTIVE"
    assert table["KeySchema"] == TABLE_DEFINITION["KeySchema"]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
