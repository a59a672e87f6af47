"""The PostgreSQL schema: versioned migrations, serialised with an advisory lock.

Everything lives in the schema ``helios``:

``resources``
    The current version of every resource, keyed by ``(tenant, resource_type, id)``:
    the serialized JSON (``resource_text``, what reads return, byte for byte what the
    backend wrote) and the same document as ``jsonb`` (``resource``, for searching; it is
    ``NULL`` for the rare body JSONB cannot hold, a ``\\u0000`` or a lone surrogate).
``resource_history``
    Every version ever written, deletion markers included, as text. ``sequence`` (an
    identity column) is the history order; a page cursor carries the last one shown.
``tenant_clocks``
    One row per tenant: the last ``lastUpdated`` it handed out, so instants never repeat
    or go backwards, whichever connection or process writes and however the server
    clock steps.

Every table has row-level security, *forced* (it binds the table owner too): a row is
visible and writable only when its ``tenant`` equals ``current_setting('helios.tenant')``,
which each data function sets for its own transaction only (``set_config(..., true)``).
The application connects as (or ``SET ROLE``s to) :data:`APP_ROLE`, which owns nothing,
is no superuser and lacks ``BYPASSRLS``, and may only SELECT, INSERT and UPDATE.

Each contract call is one statement: ``SELECT * FROM helios.<function>(...)``, a
PL/pgSQL function that sets the tenant, reads, checks and writes in the statement's own
transaction: one round trip. ``helios.create_storage(schema)`` is the single source of
the table DDL, used for ``helios`` itself and for every schema-per-tenant schema
(``helios.ensure_tenant_schema``).

Migrations are append-only: ``MIGRATIONS[n]`` takes a database from version ``n`` to
``n + 1`` and is recorded in ``helios.schema_migrations``. A later migration that
changes the tables must also apply to every schema listed in ``helios.tenant_schemas``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncpg

SCHEMA_VERSION = 1
APP_ROLE = "helios_app"
"""The role the application runs as: no ownership, no superuser, no BYPASSRLS."""

MIGRATION_LOCK = 0x48454C494F53_01
"""``pg_advisory_lock`` key serialising migrations of one database ("HELIOS" 01)."""

SETUP_LOCK = 0x48454C494F53_02
"""``pg_advisory_lock`` key serialising role, template and database creation on a server."""

_CREATE_STORAGE = r"""
CREATE FUNCTION helios.create_storage(p_schema text) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    v_table text;
BEGIN
    EXECUTE format($ddl$
        CREATE TABLE %1$I.resources (
            tenant        text        NOT NULL,
            resource_type text        NOT NULL,
            id            text        NOT NULL,
            version_id    bigint      NOT NULL,
            last_updated  timestamptz NOT NULL,
            deleted       boolean     NOT NULL,
            resource_text text,
            resource      jsonb,
            PRIMARY KEY (tenant, resource_type, id),
            CHECK (deleted = (resource_text IS NULL))
        )$ddl$, p_schema);
    -- count(): an index-only scan over live rows.
    EXECUTE format(
        'CREATE INDEX resources_live ON %I.resources (tenant, resource_type) WHERE NOT deleted',
        p_schema);
    EXECUTE format($ddl$
        CREATE TABLE %1$I.resource_history (
            sequence      bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            tenant        text        NOT NULL,
            resource_type text        NOT NULL,
            id            text        NOT NULL,
            version_id    bigint      NOT NULL,
            last_updated  timestamptz NOT NULL,
            deleted       boolean     NOT NULL,
            resource_text text,
            CHECK (deleted = (resource_text IS NULL))
        )$ddl$, p_schema);
    -- Instance history and vread; UNIQUE also guards the version chain itself.
    EXECUTE format('CREATE UNIQUE INDEX resource_history_version ON %I.resource_history'
                   ' (tenant, resource_type, id, version_id)', p_schema);
    -- System history, newest first.
    EXECUTE format('CREATE INDEX resource_history_tenant ON %I.resource_history'
                   ' (tenant, sequence)', p_schema);
    -- Type history, newest first.
    EXECUTE format('CREATE INDEX resource_history_type ON %I.resource_history'
                   ' (tenant, resource_type, sequence)', p_schema);
    -- _since/before windows.
    EXECUTE format('CREATE INDEX resource_history_last_updated ON %I.resource_history'
                   ' (tenant, last_updated)', p_schema);
    EXECUTE format($ddl$
        CREATE TABLE %1$I.tenant_clocks (
            tenant       text        PRIMARY KEY,
            last_updated timestamptz NOT NULL
        )$ddl$, p_schema);
    FOREACH v_table IN ARRAY ARRAY['resources', 'resource_history', 'tenant_clocks'] LOOP
        EXECUTE format('ALTER TABLE %I.%I ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY',
                       p_schema, v_table);
        EXECUTE format($ddl$
            CREATE POLICY tenant_rows ON %I.%I
                USING (tenant = current_setting('helios.tenant', true))
                WITH CHECK (tenant = current_setting('helios.tenant', true))$ddl$,
            p_schema, v_table);
    END LOOP;
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'helios_app') THEN
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO helios_app', p_schema);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA %I TO helios_app',
                       p_schema);
    END IF;
END
$fn$
"""

# Runs as its owner (the migrating role) so the application role needs no CREATE right;
# the schema name is derived from the tenant id, never spelled by the caller.
_ENSURE_TENANT_SCHEMA = r"""
CREATE FUNCTION helios.ensure_tenant_schema(p_tenant text) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, helios AS $fn$
DECLARE
    v_schema text := 'tenant_' || substr(md5(p_tenant), 1, 24);
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('helios.tenant_schema:' || p_tenant, 0));
    IF NOT EXISTS (SELECT FROM helios.tenant_schemas WHERE tenant = p_tenant) THEN
        EXECUTE format('CREATE SCHEMA %I', v_schema);
        PERFORM helios.create_storage(v_schema);
        INSERT INTO helios.tenant_schemas (tenant, schema_name) VALUES (p_tenant, v_schema);
    END IF;
    RETURN v_schema;
END
$fn$
"""

# p_mode: create | upsert | update | delete. p_text is the serialized body (NULL for a
# delete) with meta.versionId and meta.lastUpdated spelled 'helios-version-<p_token>'
# and 'helios-instant-<p_token>': both are only known here, under the tenant's lock,
# so they are spliced into the text here (p_token is random, so it occurs nowhere else).
_WRITE_VERSION = r"""
CREATE FUNCTION helios.write_version(
    p_tenant text, p_schema text, p_mode text, p_type text, p_id text, p_expected text,
    p_may_create boolean, p_may_update boolean,
    p_text text, p_token text, p_jsonb boolean,
    OUT o_outcome text, OUT o_version_id bigint, OUT o_last_updated timestamptz)
LANGUAGE plpgsql AS $fn$
DECLARE
    v_found   boolean := false;
    v_version bigint;
    v_deleted boolean;
    v_absent  boolean;
    v_text    text;
BEGIN
    PERFORM set_config('helios.tenant', p_tenant, true);
    IF p_schema IS NOT NULL THEN
        PERFORM set_config('search_path', p_schema, true);
    END IF;
    -- One writer per tenant until commit: version checks cannot race, and a tenant's
    -- history sequence and lastUpdated follow commit order across all connections.
    PERFORM pg_advisory_xact_lock(hashtextextended(p_tenant, 0));
    IF p_mode <> 'create' THEN
        SELECT r.version_id, r.deleted INTO v_version, v_deleted
          FROM resources r
         WHERE r.tenant = p_tenant AND r.resource_type = p_type AND r.id = p_id;
        v_found := FOUND;
    END IF;
    v_absent := NOT v_found OR v_deleted;
    o_version_id := v_version;
    IF p_mode = 'update' THEN
        IF NOT v_found THEN
            o_outcome := 'not_found'; RETURN;
        ELSIF v_deleted THEN
            o_outcome := 'gone'; RETURN;
        ELSIF p_expected IS NOT NULL AND p_expected <> v_version::text THEN
            o_outcome := 'conflict'; RETURN;
        END IF;
    ELSIF p_mode = 'upsert' THEN
        IF v_absent AND NOT p_may_create THEN
            o_outcome := 'denied_create'; RETURN;
        ELSIF NOT v_absent AND NOT p_may_update THEN
            o_outcome := 'denied_update'; RETURN;
        END IF;
    ELSIF p_mode = 'delete' THEN
        IF v_absent THEN
            o_outcome := CASE WHEN p_expected IS NULL THEN 'unchanged' ELSE 'conflict_absent' END;
            RETURN;
        ELSIF p_expected IS NOT NULL AND p_expected <> v_version::text THEN
            o_outcome := 'conflict'; RETURN;
        END IF;
    END IF;
    o_version_id := coalesce(v_version, 0) + 1;
    INSERT INTO tenant_clocks AS c (tenant, last_updated)
    VALUES (p_tenant, clock_timestamp())
    ON CONFLICT (tenant) DO UPDATE
       SET last_updated = greatest(clock_timestamp(), c.last_updated + interval '1 microsecond')
    RETURNING c.last_updated INTO o_last_updated;
    IF p_mode <> 'delete' THEN
        v_text := replace(
            replace(p_text, 'helios-version-' || p_token, o_version_id::text),
            'helios-instant-' || p_token,
            to_char(o_last_updated AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'));
    END IF;
    INSERT INTO resource_history
           (tenant, resource_type, id, version_id, last_updated, deleted, resource_text)
    VALUES (p_tenant, p_type, p_id, o_version_id, o_last_updated, v_text IS NULL, v_text);
    INSERT INTO resources AS r
           (tenant, resource_type, id, version_id, last_updated, deleted, resource_text, resource)
    VALUES (p_tenant, p_type, p_id, o_version_id, o_last_updated, v_text IS NULL, v_text,
            CASE WHEN p_jsonb THEN v_text::jsonb END)
    ON CONFLICT (tenant, resource_type, id) DO UPDATE
       SET version_id = excluded.version_id, last_updated = excluded.last_updated,
           deleted = excluded.deleted, resource_text = excluded.resource_text,
           resource = excluded.resource;
    o_outcome := CASE WHEN v_absent THEN 'created' ELSE 'updated' END;
END
$fn$
"""

# Reads are STABLE: every statement in them sees the snapshot of the calling statement,
# so a read is one consistent transaction even when it runs two queries.
_READ_CURRENT = r"""
CREATE FUNCTION helios.read_current(p_tenant text, p_schema text, p_type text, p_id text)
RETURNS TABLE (o_version_id bigint, o_last_updated timestamptz, o_deleted boolean, o_text text)
LANGUAGE plpgsql STABLE AS $fn$
BEGIN
    PERFORM set_config('helios.tenant', p_tenant, true);
    IF p_schema IS NOT NULL THEN
        PERFORM set_config('search_path', p_schema, true);
    END IF;
    RETURN QUERY
        SELECT r.version_id, r.last_updated, r.deleted, r.resource_text
          FROM resources r
         WHERE r.tenant = p_tenant AND r.resource_type = p_type AND r.id = p_id;
END
$fn$
"""

_READ_VERSION = r"""
CREATE FUNCTION helios.read_version(
    p_tenant text, p_schema text, p_type text, p_id text, p_version bigint)
RETURNS TABLE (o_current bigint, o_found boolean, o_last_updated timestamptz,
               o_deleted boolean, o_text text)
LANGUAGE plpgsql STABLE AS $fn$
BEGIN
    PERFORM set_config('helios.tenant', p_tenant, true);
    IF p_schema IS NOT NULL THEN
        PERFORM set_config('search_path', p_schema, true);
    END IF;
    RETURN QUERY
        SELECT r.version_id, h.sequence IS NOT NULL, h.last_updated, h.deleted, h.resource_text
          FROM resources r
          LEFT JOIN resource_history h
            ON h.tenant = r.tenant AND h.resource_type = r.resource_type AND h.id = r.id
           AND h.version_id = p_version
         WHERE r.tenant = p_tenant AND r.resource_type = p_type AND r.id = p_id;
END
$fn$
"""

_RESOURCE_EXISTS = r"""
CREATE FUNCTION helios.resource_exists(p_tenant text, p_schema text, p_type text, p_id text)
RETURNS boolean
LANGUAGE plpgsql STABLE AS $fn$
BEGIN
    PERFORM set_config('helios.tenant', p_tenant, true);
    IF p_schema IS NOT NULL THEN
        PERFORM set_config('search_path', p_schema, true);
    END IF;
    RETURN EXISTS (
        SELECT FROM resources r
         WHERE r.tenant = p_tenant AND r.resource_type = p_type AND r.id = p_id
           AND NOT r.deleted);
END
$fn$
"""

_COUNT_LIVE = r"""
CREATE FUNCTION helios.count_live(p_tenant text, p_schema text, p_type text) RETURNS bigint
LANGUAGE plpgsql STABLE AS $fn$
BEGIN
    PERFORM set_config('helios.tenant', p_tenant, true);
    IF p_schema IS NOT NULL THEN
        PERFORM set_config('search_path', p_schema, true);
    END IF;
    IF p_type IS NULL THEN
        RETURN (SELECT count(*) FROM resources r WHERE r.tenant = p_tenant AND NOT r.deleted);
    END IF;
    RETURN (SELECT count(*) FROM resources r
             WHERE r.tenant = p_tenant AND r.resource_type = p_type AND NOT r.deleted);
END
$fn$
"""

# Instance history returns no row at all for a resource that never existed, and one
# row of NULLs for one that exists but has nothing in the window. The three levels
# are separate statements so each uses its own index.
_HISTORY = r"""
CREATE FUNCTION helios.history(
    p_tenant text, p_schema text, p_type text, p_id text, p_before_sequence bigint,
    p_since timestamptz, p_before timestamptz, p_limit integer)
RETURNS TABLE (o_sequence bigint, o_type text, o_id text, o_version_id bigint,
               o_last_updated timestamptz, o_deleted boolean, o_text text)
LANGUAGE plpgsql STABLE AS $fn$
DECLARE
    v_below bigint := coalesce(p_before_sequence, 9223372036854775807);
    v_since timestamptz := coalesce(p_since, '-infinity');
    v_until timestamptz := coalesce(p_before, 'infinity');
BEGIN
    PERFORM set_config('helios.tenant', p_tenant, true);
    IF p_schema IS NOT NULL THEN
        PERFORM set_config('search_path', p_schema, true);
    END IF;
    IF p_id IS NOT NULL THEN
        IF NOT EXISTS (SELECT FROM resources r
                        WHERE r.tenant = p_tenant AND r.resource_type = p_type
                          AND r.id = p_id) THEN
            RETURN;
        END IF;
        RETURN QUERY
            SELECT h.sequence, h.resource_type, h.id, h.version_id, h.last_updated,
                   h.deleted, h.resource_text
              FROM resource_history h
             WHERE h.tenant = p_tenant AND h.resource_type = p_type AND h.id = p_id
               AND h.sequence < v_below
               AND h.last_updated >= v_since AND h.last_updated < v_until
             ORDER BY h.sequence DESC LIMIT p_limit;
        IF NOT FOUND THEN
            RETURN QUERY SELECT NULL::bigint, NULL::text, NULL::text, NULL::bigint,
                                NULL::timestamptz, NULL::boolean, NULL::text;
        END IF;
    ELSIF p_type IS NOT NULL THEN
        RETURN QUERY
            SELECT h.sequence, h.resource_type, h.id, h.version_id, h.last_updated,
                   h.deleted, h.resource_text
              FROM resource_history h
             WHERE h.tenant = p_tenant AND h.resource_type = p_type
               AND h.sequence < v_below
               AND h.last_updated >= v_since AND h.last_updated < v_until
             ORDER BY h.sequence DESC LIMIT p_limit;
    ELSE
        RETURN QUERY
            SELECT h.sequence, h.resource_type, h.id, h.version_id, h.last_updated,
                   h.deleted, h.resource_text
              FROM resource_history h
             WHERE h.tenant = p_tenant
               AND h.sequence < v_below
               AND h.last_updated >= v_since AND h.last_updated < v_until
             ORDER BY h.sequence DESC LIMIT p_limit;
    END IF;
END
$fn$
"""

# MIGRATIONS[n] takes a database from version n to n + 1. Append, never edit.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        _CREATE_STORAGE,
        "SELECT helios.create_storage('helios')",
        """
        CREATE TABLE helios.tenant_schemas (
            tenant      text PRIMARY KEY,
            schema_name text NOT NULL UNIQUE
        )
        """,
        _ENSURE_TENANT_SCHEMA,
        _WRITE_VERSION,
        _READ_CURRENT,
        _READ_VERSION,
        _RESOURCE_EXISTS,
        _COUNT_LIVE,
        _HISTORY,
        "REVOKE ALL ON FUNCTION helios.create_storage(text) FROM PUBLIC",
    ),
)

assert len(MIGRATIONS) == SCHEMA_VERSION


class SchemaTooNew(Exception):
    """The database was migrated by a newer version of this backend."""

    def __init__(self, found: int) -> None:
        super().__init__(
            f"the database has schema version {found}, but this backend knows versions "
            f"up to {SCHEMA_VERSION}; upgrade helios-conformance or use another database"
        )
        self.found = found


async def schema_version(connection: asyncpg.Connection) -> int:
    """The version recorded in ``helios.schema_migrations`` (0 for a fresh database)."""
    exists = await connection.fetchval("SELECT to_regclass('helios.schema_migrations')")
    if exists is None:
        return 0
    found = await connection.fetchval("SELECT max(version) FROM helios.schema_migrations")
    return int(found or 0)


async def migrate(connection: asyncpg.Connection) -> int:
    """Bring the database to :data:`SCHEMA_VERSION`; return how many steps ran.

    Holds ``pg_advisory_lock(MIGRATION_LOCK)`` throughout, so processes starting at
    once take turns: the first migrates, the others find the work done. Each step runs
    in its own transaction together with its ``schema_migrations`` row.

    Raises:
        SchemaTooNew: the database is from a newer release.
    """
    await connection.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
    try:
        await connection.execute(
            "CREATE SCHEMA IF NOT EXISTS helios;"
            " CREATE TABLE IF NOT EXISTS helios.schema_migrations ("
            "   version integer PRIMARY KEY,"
            "   applied_at timestamptz NOT NULL DEFAULT now())"
        )
        found = await schema_version(connection)
        if found > SCHEMA_VERSION:
            raise SchemaTooNew(found)
        for version in range(found, SCHEMA_VERSION):
            async with connection.transaction():
                for statement in MIGRATIONS[version]:
                    await connection.execute(statement)
                await connection.execute(
                    "INSERT INTO helios.schema_migrations (version) VALUES ($1)", version + 1
                )
        if await connection.fetchval("SELECT to_regrole($1)", APP_ROLE) is not None:
            await connection.execute(f"GRANT USAGE ON SCHEMA helios TO {APP_ROLE}")
        return SCHEMA_VERSION - found
    finally:
        await connection.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)


async def ensure_app_role(connection: asyncpg.Connection) -> str | None:
    """Create :data:`APP_ROLE` if missing; return it, or ``None`` if we may not.

    Called under :data:`SETUP_LOCK` (roles are per server, not per database). Without
    the right to create roles the application runs as the connecting role, which
    forced row-level security still binds unless it is a superuser.
    """
    if await connection.fetchval("SELECT to_regrole($1)", APP_ROLE) is None:
        try:
            await connection.execute(
                f"CREATE ROLE {APP_ROLE} NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE"
            )
        except Exception as exc:
            # Only a refusal means "we may not"; anything else is a real failure.
            if getattr(exc, "sqlstate", None) != "42501":
                raise
            return None
    # A CREATEROLE (non-superuser) creator must be a member to SET ROLE to it.
    superuser = await connection.fetchval(
        "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
    )
    if not superuser:
        try:
            await connection.execute(f"GRANT {APP_ROLE} TO CURRENT_USER")
        except Exception as exc:
            if getattr(exc, "sqlstate", None) != "42501":
                raise
            return None
    return APP_ROLE
