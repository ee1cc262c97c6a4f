"""ponder: make small open-weight language models think harder."""

__version__ = "0.1.0"
