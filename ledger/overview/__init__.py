"""The admin's overview: how the business is doing and what needs a hand (issue 17).

models.py: the rollups Postgres keeps beside the ledger and the purchases (triggers,
migration 0010), and the drift checks' record. selectors.py: the overview's figures,
in a fixed number of queries. charts.py: its SVG. site.py: the admin index that shows it.
exports.py: the staff's CSV downloads.
"""
