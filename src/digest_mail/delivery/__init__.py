"""Stage 3, per reader: the message builder and the campaign that sends it exactly once."""
