"""The SQLite schema, created once and versioned with ``PRAGMA user_version``.

Two tables:

``resources``
    The current version of every resource, keyed by ``(tenant, resource_type, id)``:
    what read, exists, count and the version checks of update/delete look at.
``resource_history``
    Every version ever written, deletion markers included. Its ``INTEGER PRIMARY KEY``
    ``sequence`` is the global write order: history is ``sequence DESC`` and a page
    cursor carries the last sequence it showed.

``last_updated`` is an integer count of microseconds since the Unix epoch (UTC), so
the ``_since``/``before`` filters are exact integer comparisons and do not depend on
how an instant is spelled as text. ``version_id`` is an integer (the API spells it as
a string). ``resource`` is the serialized JSON, ``NULL`` for a deletion.
"""

from __future__ import annotations

import sqlite3

SCHEMA_VERSION = 1
"""The ``user_version`` of a database this backend has fully migrated."""

# MIGRATIONS[n] takes a database from user_version n to n + 1. Append, never edit:
# databases in the wild already ran the earlier steps.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """
        CREATE TABLE resources (
            tenant        TEXT    NOT NULL,
            resource_type TEXT    NOT NULL,
            id            TEXT    NOT NULL,
            version_id    INTEGER NOT NULL,
            last_updated  INTEGER NOT NULL,
            deleted       INTEGER NOT NULL CHECK (deleted IN (0, 1)),
            resource      TEXT,
            PRIMARY KEY (tenant, resource_type, id)
        ) WITHOUT ROWID
        """,
        """
        CREATE TABLE resource_history (
            sequence      INTEGER PRIMARY KEY,
            tenant        TEXT    NOT NULL,
            resource_type TEXT    NOT NULL,
            id            TEXT    NOT NULL,
            version_id    INTEGER NOT NULL,
            last_updated  INTEGER NOT NULL,
            deleted       INTEGER NOT NULL CHECK (deleted IN (0, 1)),
            resource      TEXT,
            CHECK ((deleted = 1) = (resource IS NULL))
        )
        """,
        # Instance history and vread; UNIQUE also guards the version chain itself.
        """
        CREATE UNIQUE INDEX resource_history_version
            ON resource_history (tenant, resource_type, id, version_id)
        """,
        # System history, newest first.
        "CREATE INDEX resource_history_tenant ON resource_history (tenant, sequence)",
        # Type history, newest first.
        """
        CREATE INDEX resource_history_type
            ON resource_history (tenant, resource_type, sequence)
        """,
        # _since/before windows.
        """
        CREATE INDEX resource_history_last_updated
            ON resource_history (tenant, last_updated)
        """,
    ),
)

assert len(MIGRATIONS) == SCHEMA_VERSION


class SchemaTooNew(Exception):
    """The database was written by a newer version of this backend."""

    def __init__(self, found: int) -> None:
        super().__init__(
            f"the database has schema version {found}, but this backend knows versions "
            f"up to {SCHEMA_VERSION}; upgrade helios-conformance or use another database"
        )
        self.found = found


def configure(connection: sqlite3.Connection, *, file_backed: bool) -> None:
    """Set the per-connection pragmas.

    WAL lets readers in other processes (a report tool, a second worker looking at the
    same file) proceed while this connection writes; with WAL, ``synchronous=NORMAL``
    is durable against application crashes and much cheaper than ``FULL``. An
    in-memory database has no journal to choose.
    """
    if file_backed:
        connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = NORMAL")
    connection.execute("PRAGMA busy_timeout = 5000")


def schema_version(connection: sqlite3.Connection) -> int:
    row = connection.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def migrate(connection: sqlite3.Connection) -> int:
    """Bring the schema to :data:`SCHEMA_VERSION` in one transaction; return the steps run.

    The version is read again under the write lock, so two processes opening the
    same new file do not both create the tables.

    Raises:
        SchemaTooNew: the database is from a newer release.
    """
    if schema_version(connection) == SCHEMA_VERSION:
        return 0
    connection.execute("BEGIN IMMEDIATE")
    try:
        found = schema_version(connection)
        if found > SCHEMA_VERSION:
            raise SchemaTooNew(found)
        for step in MIGRATIONS[found:]:
            for statement in step:
                connection.execute(statement)
        # PRAGMA takes no bound parameters; SCHEMA_VERSION is our own integer.
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION:d}")
        connection.execute("COMMIT")
    except BaseException:
        connection.rollback()
        raise
    return SCHEMA_VERSION - found
