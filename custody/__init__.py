"""custody: a key-custody and signing daemon for Ethereum governance and treasury keys."""

__version__ = "0.1.0"
