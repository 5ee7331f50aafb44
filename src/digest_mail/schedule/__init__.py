"""Scheduled sends: ``slots`` (cron in a zone), ``editions`` (what a slot sends),
``approval`` (the editor's go-ahead), ``rundue`` (claim and send a due slot once),
``notice`` (the staff notice), ``overview`` (``schedule list``) and ``timers`` (the
daemon, systemd and cron)."""
