"""Stage 3, per reader: the campaign that sends one edition to its lists exactly once.

``campaign`` runs a send from start to end; ``snapshot`` copies the lists into the
ledger, ``sender`` claims rows and sends their messages, ``retry`` says when a refused
message is tried again and when the circuit breaker stops a run, ``interrupts`` what
Ctrl-C does, ``lock`` keeps one sender per campaign. ``report`` holds the states, the
report and the errors; ``status``, ``dryrun`` and ``testsend`` serve the commands of
those names; ``identity`` refuses the sample sender. The ledger's rows are written by
:mod:`digest_mail.ledger.campaigns`.
"""
