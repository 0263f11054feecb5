"""Loading the schema migrations shipped in ``custody/store/migrations``.

Each migration is a file ``NNNN_description.sql``; its number is the schema version it produces. The files are
plain SQL shared by every database adapter, so this module only reads and splits them; each adapter applies
them in its own transactions and records the version in the ``schema_version`` table.

The files are written in SQLite's words and run on SQLite exactly as written; ``for_postgresql`` translates the
two column types PostgreSQL needs said differently (see there).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

from custody.domain.errors import InternalError

_MIGRATIONS_PACKAGE = "custody.store.migrations"
_FILE_NAME_PATTERN = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
# Whole-word matches, so that a column or index whose name merely contains the letters is left alone.
_BLOB_TYPE = re.compile(r"\bBLOB\b")
_TEXT_TYPE = re.compile(r"\bTEXT\b")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


def split_statements(script: str) -> tuple[str, ...]:
    """Split a migration script into statements.

    Migration files keep to a simple form so that no SQL parser is needed: ``--`` comments on their own lines
    and statements ending with a semicolon, with no semicolons inside string literals.
    """
    lines = [line for line in script.splitlines() if not line.lstrip().startswith("--")]
    statements = (statement.strip() for statement in "\n".join(lines).split(";"))
    return tuple(statement for statement in statements if statement)


def load_migrations() -> tuple[Migration, ...]:
    """All migrations in version order; raises InternalError when the packaged files are not 1, 2, 3, ..."""
    migrations = []
    for entry in resources.files(_MIGRATIONS_PACKAGE).iterdir():
        match = _FILE_NAME_PATTERN.match(entry.name)
        if match is None:
            continue
        migrations.append(
            Migration(
                version=int(match.group(1)),
                name=entry.name,
                statements=split_statements(entry.read_text(encoding="utf-8")),
            )
        )
    migrations.sort(key=lambda migration: migration.version)
    versions = [migration.version for migration in migrations]
    # A gap or a duplicate would leave databases at different schemas under one version number, so a broken
    # installation is refused outright.
    if versions != list(range(1, len(versions) + 1)):
        raise InternalError(f"the installed schema migrations are numbered {versions}, not 1, 2, 3, ...")
    return tuple(migrations)


def latest_version() -> int:
    """The schema version this code knows how to produce."""
    return len(load_migrations())


def for_postgresql(migration: Migration) -> Migration:
    """The migration as PostgreSQL runs it: BLOB columns become BYTEA, PostgreSQL's binary type, and TEXT
    columns compare byte by byte (collation "C").

    SQLite compares text byte by byte, and custody relies on it: times are fixed-width text that sorts in time
    order, and lists are ordered by label and id. A PostgreSQL database created with a language's collation
    (en_US, say) would otherwise order and compare that text by the language's rules. The files keep SQLite's
    spelling so that existing SQLite databases migrate exactly as they always have.
    """
    return Migration(
        version=migration.version,
        name=migration.name,
        statements=tuple(
            _TEXT_TYPE.sub('TEXT COLLATE "C"', _BLOB_TYPE.sub("BYTEA", statement))
            for statement in migration.statements
        ),
    )
