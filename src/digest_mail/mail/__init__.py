"""The message format: headers, the per-reader placeholders, the MIME message and its
per-reader template, DKIM."""
