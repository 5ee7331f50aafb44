"""The ledger: the database that is the truth of what was sent, and the only place SQL lives.

``db`` opens the database (connection, pragmas, transactions, ``utcnow``, the schema
version check) and ``migrations`` holds the append-only schema. Each table family has
one module, the only place its SQL is written: ``suppressions`` (suppressions and soft
bounces), ``campaigns`` (campaigns and deliveries), ``approvals``, ``schedule_runs``.
``scratch`` is no table of the ledger: the temporary SQLite file a big list's scan
finds its duplicates in.

One style for every table module: plain functions that take the :class:`~.db.Ledger`
as their first argument (``suppress(ledger, address, reason=…)``), with the row types
beside them. The ``Ledger`` class itself knows no table, so a second backend
(PostgreSQL, issue 18) replaces the connection, not the table modules.
"""
