"""The ledger: the database, its migrations and the only place SQL lives."""
