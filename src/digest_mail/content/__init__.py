"""Stage 1, the week's content: articles (Markdown with front matter), feeds, the edition."""
