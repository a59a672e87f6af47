"""The SQLite schema, created once and versioned with ``PRAGMA user_version``.

Tables (migration 1):

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

Search (migration 2):

``search_index``
    One row per :class:`~helios_conformance.search.IndexRow` of the *current* version
    of every live resource, rewritten as a whole on each write (deleted on delete).
    The typed columns are the IndexRow fields; in addition:

    - ``number``/``canonical_number`` are REAL (indexable, range scans) and
      ``number_text``/``canonical_text`` the exact decimal as text. Decimal -> double
      rounding is monotonic, so a comparison on the REAL column is exact except when
      the stored value and the bound round to the same double; those ties are settled
      exactly by ``helios_decimal_cmp(number_text, bound)`` (a function the backend
      registers on its connection), so ``100.0000000000000001 > 100`` holds;
    - ``date_low``/``date_high`` are integer microseconds since the epoch (UTC),
      ``NULL`` for an open end of a Period;
    - ``code_folded`` is the folded ``code`` (for ``:code-text``);
    - ``fts_tokens`` is the row's text as the reference tokenizer
      (``helios_conformance.search.tokenize``) splits and stems it, space-separated,
      for the rows full-text search reads (``_text``, ``_content``, token
      display/text for ``:text-advanced``); ``NULL`` elsewhere.

    Every value column has a partial index leading with ``(tenant, resource_type,
    param)``, so a lookup is a range scan over one parameter of one type of one tenant
    and rows without that column cost nothing in that index.
``search_fts``
    An FTS5 index over ``search_index.fts_tokens`` (external content, rowid =
    ``search_index.row_id``). Its tokenizer is ``ascii``: the text it receives is
    already tokenized and stemmed by the reference tokenizer, so FTS5 only has to
    split on spaces. FTS5's own ``porter`` tokenizer disagrees with the reference
    stemmer (``as`` -> ``as`` vs ``a``, ``immunology`` -> ``immunolog`` vs
    ``immunologi``, tokens over 64 bytes) and would stem the already stemmed query
    terms a second time (``adverse`` -> ``advers`` -> ``adver``).
``search_parameters``
    The custom SearchParameters registered per tenant (the SearchParameter resource
    as written), in registration order, so a reopened database knows them.

Bulk Data (migration 3):

``bulk_jobs``
    Export jobs and bulk submissions per tenant, keyed by ``(tenant, kind, id)``: the
    engine's status (a column, so the active-job cap can count it), an optimistic
    ``revision`` and the engine's JSON ``document``.
``bulk_entries``
    The per-line journal of a submission, keyed by ``(tenant, submission, seq)``;
    abort reads it newest first to roll the submission back.
"""

from __future__ import annotations

import sqlite3

SCHEMA_VERSION = 3
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
    (
        """
        CREATE TABLE search_index (
            row_id           INTEGER PRIMARY KEY,
            tenant           TEXT    NOT NULL,
            resource_type    TEXT    NOT NULL,
            resource_id      TEXT    NOT NULL,
            param            TEXT    NOT NULL,
            type             TEXT    NOT NULL,
            grp              INTEGER NOT NULL,
            component        INTEGER,
            text             TEXT,
            exact            TEXT,
            system           TEXT,
            code             TEXT,
            code_folded      TEXT,
            type_system      TEXT,
            type_code        TEXT,
            number           REAL,
            number_text      TEXT,
            canonical_number REAL,
            canonical_text   TEXT,
            canonical_unit   TEXT,
            date_low         INTEGER,
            date_high        INTEGER,
            ref_type         TEXT,
            ref_id           TEXT,
            ref_version      TEXT,
            fts_tokens       TEXT
        )
        """,
        # Rewriting a resource's rows, :missing, and composite components of one group.
        """
        CREATE INDEX search_index_resource
            ON search_index (tenant, resource_type, resource_id, param, grp)
        """,
        # Presence of a parameter (:missing) without touching the table.
        """
        CREATE INDEX search_index_param
            ON search_index (tenant, resource_type, param, resource_id)
        """,
        """
        CREATE INDEX search_index_code
            ON search_index (tenant, resource_type, param, code, system, resource_id)
            WHERE code IS NOT NULL
        """,
        """
        CREATE INDEX search_index_system
            ON search_index (tenant, resource_type, param, system, code)
            WHERE system IS NOT NULL
        """,
        """
        CREATE INDEX search_index_code_folded
            ON search_index (tenant, resource_type, param, code_folded)
            WHERE code_folded IS NOT NULL
        """,
        """
        CREATE INDEX search_index_text
            ON search_index (tenant, resource_type, param, text, resource_id)
            WHERE text IS NOT NULL
        """,
        """
        CREATE INDEX search_index_exact
            ON search_index (tenant, resource_type, param, exact, resource_id)
            WHERE exact IS NOT NULL
        """,
        """
        CREATE INDEX search_index_number
            ON search_index (tenant, resource_type, param, number)
            WHERE number IS NOT NULL
        """,
        """
        CREATE INDEX search_index_canonical
            ON search_index (tenant, resource_type, param, canonical_unit, canonical_number)
            WHERE canonical_number IS NOT NULL
        """,
        """
        CREATE INDEX search_index_date_low
            ON search_index (tenant, resource_type, param, date_low, date_high, resource_id)
            WHERE date_low IS NOT NULL
        """,
        """
        CREATE INDEX search_index_date_high
            ON search_index (tenant, resource_type, param, date_high, date_low, resource_id)
            WHERE date_high IS NOT NULL
        """,
        # Periods that end before they start (the data says so; nothing refuses them):
        # few, so "contained in [low, high)" can bound date_low on both sides for the
        # rest and look these up here.
        """
        CREATE INDEX search_index_date_inverted
            ON search_index (tenant, resource_type, param, date_low)
            WHERE date_low > date_high
        """,
        """
        CREATE INDEX search_index_ref_id
            ON search_index (tenant, resource_type, param, ref_id, ref_type)
            WHERE ref_id IS NOT NULL
        """,
        """
        CREATE INDEX search_index_type_code
            ON search_index (tenant, resource_type, param, type_code, type_system)
            WHERE type_code IS NOT NULL
        """,
        """
        CREATE VIRTUAL TABLE search_fts USING fts5 (
            fts_tokens,
            content = 'search_index',
            content_rowid = 'row_id',
            tokenize = 'ascii'
        )
        """,
        """
        CREATE TABLE search_parameters (
            tenant   TEXT    NOT NULL,
            url      TEXT    NOT NULL,
            position INTEGER NOT NULL,
            resource TEXT    NOT NULL,
            PRIMARY KEY (tenant, url)
        )
        """,
    ),
    (
        """
        CREATE TABLE bulk_jobs (
            tenant   TEXT    NOT NULL,
            kind     TEXT    NOT NULL,
            id       TEXT    NOT NULL,
            status   TEXT    NOT NULL,
            revision INTEGER NOT NULL,
            document TEXT    NOT NULL,
            PRIMARY KEY (tenant, kind, id)
        ) WITHOUT ROWID
        """,
        # The active-job cap counts one tenant's jobs of one kind by status.
        "CREATE INDEX bulk_jobs_status ON bulk_jobs (tenant, kind, status)",
        """
        CREATE TABLE bulk_entries (
            tenant           TEXT    NOT NULL,
            submission       TEXT    NOT NULL,
            seq              INTEGER NOT NULL,
            manifest_url     TEXT    NOT NULL,
            source_url       TEXT    NOT NULL,
            line             INTEGER NOT NULL,
            outcome          TEXT    NOT NULL,
            resource_type    TEXT,
            resource_id      TEXT,
            previous_version TEXT,
            version          TEXT,
            message          TEXT,
            PRIMARY KEY (tenant, submission, seq)
        ) WITHOUT ROWID
        """,
        # Entry queries by outcome (e.g. the errors of a submission), in sequence order.
        """
        CREATE INDEX bulk_entries_outcome
            ON bulk_entries (tenant, submission, outcome, seq)
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
    # ANALYZE (run by PRAGMA optimize) samples this many rows per index, so keeping
    # the planner's statistics fresh stays cheap on a large search index.
    connection.execute("PRAGMA analysis_limit = 400")


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
