"""TLS material for custody: the development certificate authority lives in ``certificates``."""
