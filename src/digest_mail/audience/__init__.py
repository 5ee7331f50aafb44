"""Who receives it: addresses, subscriber lists and their editing, unsubscribe and bounces.

- ``addresses``: one normal form and comparison key for an address (a leaf: the ledger
  keys suppressions with it).
- ``lists``: list names (``weekly`` → ``subscribers/weekly.csv``) and what a send or a
  count reads of a list, suppressions left out.
- ``rows``: a row's model (``Recipient``, ``RowProblem``, ``ListCounts``) and rules.
- ``csvfiles``: reading a list file and scanning its rows; ``encodings`` tells UTF-8
  from cp932; ``keyset`` finds duplicates in flat memory.
- ``editing`` (add, remove, import) and ``export``: changing and writing out a list.
- ``unsubscribe`` (signed tokens and links), ``serve`` (the one-click endpoint),
  ``bouncemail`` (reading a bounce mailbox) and ``bounces`` (what a bounce suppresses).
"""
