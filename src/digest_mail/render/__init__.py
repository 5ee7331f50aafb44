"""Stage 2, one render per edition: compose, the HTML and text renderers, the draft they
write, and the archive of what was mailed."""
