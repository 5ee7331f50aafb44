"""Stage 2, one render per edition: the HTML and text renderers and the draft they write."""
