"""The gate's DynamoDB mirror, kept in step with Postgres (the item contract is authorizer/mirror.py).

Postgres is the truth; each write rebuilds items from a fresh read of it, after
the transaction that changed them has committed. One job per module:

* `client.py`  - the boto3 clients, built from settings when first needed
* `items.py`   - what Django writes for a balance or a route, built from rows
* `writes.py`  - the conditional writes, and running many of them in parallel
* `outbox.py`  - what must be written, recorded with each change; written after commit,
                 or by the minute's `sync_usage` run
* `sync.py`    - `sync_mirror`: every item rewritten where it differs, and `--check`'s drift

Usage flows the other way (mirror -> ledger) in ledger/usage.py.
"""
