"""The ledger: the database that is the truth of what was sent, and the only place SQL lives.

``db`` opens the database chosen by ``[ledger] url`` (transactions, ``utcnow``, the
schema version check, session locks) through one of two backends: ``sqlite`` (the
embedded file) or ``postgres`` (a database several hosts share). ``migrations`` holds
the append-only schema, run on both. Each table family has one module, the only place
its SQL is written: ``suppressions`` (suppressions and soft bounces), ``campaigns``
(campaigns and deliveries) with ``claims`` (the send path's statements on deliveries),
``senders`` (each run of ``send`` on a campaign), ``approvals``, ``schedule_runs``.
``tables`` lists them all for ``copy`` (one ledger into another). ``scratch`` is no
table of the ledger: the temporary SQLite file a big list's scan finds its duplicates in.

One style for every table module: plain functions that take the :class:`~.db.Ledger`
as their first argument (``suppress(ledger, address, reason=…)``), with the row types
beside them. The ``Ledger`` class itself knows no table: its backends replace the
connection, never the table modules' SQL.
"""
