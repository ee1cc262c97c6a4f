"""`ponder serve`: an OpenAI-compatible HTTP API over one shared engine (see `app`)."""
