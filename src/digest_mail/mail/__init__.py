"""The message format: headers, the MIME message and its per-reader template, DKIM."""
