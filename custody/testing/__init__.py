"""Fault injectors for tests and benchmarks, and nothing else.

They wrap the real parts (a PKCS#11 session, a SQLite connection) and make chosen calls fail, so that tests
can prove custody fails closed without a mock of the HSM or the database. Production code never imports this
package: an import-linter contract in pyproject.toml (run by ``make lint``) refuses any module of custody
outside it that does, and nothing here is read from the environment or a configuration file.
"""
