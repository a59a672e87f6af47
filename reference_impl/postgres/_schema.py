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
``search_index`` (version 2)
    One row per :class:`~helios_conformance.search.IndexRow` of every live resource,
    with a typed column per IndexRow field (decimals as exact ``numeric``, date ranges
    as ``timestamptz`` with ``NULL`` for an open end, text ``COLLATE "C"`` so that
    comparisons are code-point order, as in the reference evaluator), plus
    ``code_folded`` (for ``:code-text``) and ``tsv``, the full-text document of
    ``_text``/``_content`` and token display rows, built from the reference
    tokenizer's stemmed tokens (see ``_search.py``). Rewritten once per write, in the
    write's own statement. Partial btree indexes lead with ``(tenant, resource_type,
    param)`` for every value column, through key columns: text as a stored
    128-character prefix (``*_key``: a long value never exceeds the btree row limit,
    and text comparison is leakproof, so row-level security lets the planner use the
    index), numbers as ``float8`` (numeric comparison is not leakproof); the exact
    column rechecks each candidate. ``tsv`` has a GIN index (which row-level security
    keeps from application queries: ``@@`` is not leakproof).
``search_index_referenced`` (version 3)
    ``(tenant, ref_type, ref_id_key)`` on ``search_index``: the rows pointing at a
    resource, whatever their type and parameter (``_revinclude``). ``helios.search``
    (version 3) returns the page, its includes, the total and the snapshot together.
``search_registry`` (version 2)
    One row per tenant: ``generation``, bumped by every write of a SearchParameter.
    The tenant's custom parameters are its live SearchParameter resources; a process
    caches the registry with its generation, and every write and search states the
    generation it used, so a registry changed by another process is noticed and
    reloaded instead of indexing or searching with stale definitions.
``bulk_jobs``, ``bulk_entries`` (version 4)
    Bulk Data job documents (export jobs, submissions) keyed by ``(tenant, kind, id)``
    with the status the active-job cap counts and a revision for optimistic
    concurrency, and the per-line journal of a submission keyed by ``(tenant,
    submission, seq)``. Version 4 also indexes ``resources`` on ``(tenant,
    resource_type, id COLLATE "C")`` for export's keyset pages, and ``export_scan``
    moves ``tenant_clocks`` up to a job's snapshot instant (see ``_EXPORT_SCAN``).
``cursor_secret`` (version 5)
    The key every process signs page cursors with, so one process honours another's
    cursors; written by the first opener, readable by the owner role only.
``date_lo_key``/``date_hi_key`` (version 6)
    Generated on ``search_index``: the least and greatest end of a date row (open
    ends infinite, ``NULL`` on other rows), btree-indexed with the exact ends and the
    resource id included, so a date test is one index-only range scan (they replace
    version 2's two date indexes, whose OR-with-IS-NULL conditions no scan could bound).

Every tenant table has row-level security, *forced* (it binds the table owner too): a row is
visible and writable only when its ``tenant`` equals ``current_setting('helios.tenant')``,
which each data function sets for its own transaction only (``set_config(..., true)``).
The application connects as (or ``SET ROLE``s to) :data:`APP_ROLE`, which owns nothing,
is no superuser and lacks ``BYPASSRLS``, and may only SELECT, INSERT and UPDATE (and
DELETE on ``search_index`` and the bulk tables).

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

import secrets
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncpg

SCHEMA_VERSION = 6
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


# -- version 2: search -------------------------------------------------------------------

# The search tables of one schema (``helios`` or a tenant's); called by migration 2 for
# the schemas that exist and by ensure_tenant_schema for new ones.
_CREATE_SEARCH_STORAGE = r"""
CREATE FUNCTION helios.create_search_storage(p_schema text) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    v_table text;
    v_column text;
BEGIN
    EXECUTE format($ddl$
        CREATE TABLE %1$I.search_index (
            tenant           text        NOT NULL,
            resource_type    text        NOT NULL,
            resource_id      text        NOT NULL,
            param            text        COLLATE "C" NOT NULL,
            type             text        NOT NULL,
            grp              integer     NOT NULL,
            component        integer,
            text             text        COLLATE "C",
            exact            text        COLLATE "C",
            system           text        COLLATE "C",
            code             text        COLLATE "C",
            code_folded      text        COLLATE "C",
            type_system      text        COLLATE "C",
            type_code        text        COLLATE "C",
            number           numeric,
            canonical_number numeric,
            canonical_unit   text        COLLATE "C",
            date_low         timestamptz,
            date_high        timestamptz,
            ref_type         text        COLLATE "C",
            ref_id           text        COLLATE "C",
            ref_version      text        COLLATE "C",
            tsv              tsvector,
            -- Index keys. Under row-level security the planner only lets leakproof
            -- operators into an index scan, and left() and numeric comparisons are
            -- not leakproof: so text is indexed as stored 128-character prefixes
            -- (text comparisons are leakproof), numbers as float8 (monotonic and
            -- leakproof), and the exact column rechecks each candidate row.
            text_key         text        COLLATE "C" GENERATED ALWAYS AS (left(text, 128)) STORED,
            exact_key        text        COLLATE "C" GENERATED ALWAYS AS (left(exact, 128)) STORED,
            system_key       text        COLLATE "C" GENERATED ALWAYS AS (left(system, 128)) STORED,
            code_key         text        COLLATE "C" GENERATED ALWAYS AS (left(code, 128)) STORED,
            code_folded_key  text        COLLATE "C"
                GENERATED ALWAYS AS (left(code_folded, 128)) STORED,
            type_system_key  text        COLLATE "C"
                GENERATED ALWAYS AS (left(type_system, 128)) STORED,
            type_code_key    text        COLLATE "C" GENERATED ALWAYS AS (left(type_code, 128)) STORED,
            ref_id_key       text        COLLATE "C" GENERATED ALWAYS AS (left(ref_id, 128)) STORED,
            number_key       float8,
            canonical_key    float8
        )$ddl$, p_schema);
    -- The rewrite of one resource's rows, :missing and :not (per resource and param).
    EXECUTE format('CREATE INDEX search_index_resource ON %I.search_index'
                   ' (tenant, resource_type, resource_id, param)', p_schema);
    -- One partial btree per value column, led by (tenant, resource_type, param).
    FOREACH v_column IN ARRAY ARRAY['text', 'exact', 'system', 'code_folded', 'ref_id'] LOOP
        EXECUTE format('CREATE INDEX %I ON %I.search_index'
                       ' (tenant, resource_type, param, %I) WHERE %I IS NOT NULL',
                       'search_index_' || v_column, p_schema, v_column || '_key',
                       v_column || '_key');
    END LOOP;
    EXECUTE format('CREATE INDEX search_index_code ON %I.search_index'
                   ' (tenant, resource_type, param, code_key, system_key)'
                   ' WHERE code_key IS NOT NULL', p_schema);
    EXECUTE format('CREATE INDEX search_index_type_code ON %I.search_index'
                   ' (tenant, resource_type, param, type_code_key, type_system_key)'
                   ' WHERE type_code_key IS NOT NULL', p_schema);
    EXECUTE format('CREATE INDEX search_index_number ON %I.search_index'
                   ' (tenant, resource_type, param, number_key) WHERE number_key IS NOT NULL',
                   p_schema);
    EXECUTE format('CREATE INDEX search_index_canonical ON %I.search_index'
                   ' (tenant, resource_type, param, canonical_unit, canonical_key)'
                   ' WHERE canonical_key IS NOT NULL', p_schema);
    -- Date conditions always carry this very predicate, so the planner can use these.
    EXECUTE format('CREATE INDEX search_index_date_low ON %I.search_index'
                   ' (tenant, resource_type, param, date_low)'
                   ' WHERE date_low IS NOT NULL OR date_high IS NOT NULL', p_schema);
    EXECUTE format('CREATE INDEX search_index_date_high ON %I.search_index'
                   ' (tenant, resource_type, param, date_high)'
                   ' WHERE date_low IS NOT NULL OR date_high IS NOT NULL', p_schema);
    -- ts_match_vq is not leakproof either: under row-level security this GIN index
    -- serves only connections that bypass it (a full-text condition is otherwise a
    -- filter on the rows the (tenant, resource_type, resource_id, param) index finds).
    EXECUTE format('CREATE INDEX search_index_tsv ON %I.search_index USING gin (tsv)'
                   ' WHERE tsv IS NOT NULL', p_schema);
    -- The default search order, ascending id in code-point order, straight from an index.
    EXECUTE format('CREATE INDEX resources_search_order ON %I.resources'
                   ' (tenant, resource_type, id COLLATE "C") WHERE NOT deleted', p_schema);
    EXECUTE format($ddl$
        CREATE TABLE %1$I.search_registry (
            tenant     text   PRIMARY KEY,
            generation bigint NOT NULL
        )$ddl$, p_schema);
    FOREACH v_table IN ARRAY ARRAY['search_index', 'search_registry'] LOOP
        EXECUTE format('ALTER TABLE %I.%I ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY',
                       p_schema, v_table);
        EXECUTE format($ddl$
            CREATE POLICY tenant_rows ON %I.%I
                USING (tenant = current_setting('helios.tenant', true))
                WITH CHECK (tenant = current_setting('helios.tenant', true))$ddl$,
            p_schema, v_table);
    END LOOP;
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'helios_app') THEN
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I.search_index TO helios_app',
                       p_schema);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE ON %I.search_registry TO helios_app',
                       p_schema);
    END IF;
END
$fn$
"""

_ENSURE_TENANT_SCHEMA_V2 = r"""
CREATE OR REPLACE FUNCTION helios.ensure_tenant_schema(p_tenant text) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, helios AS $fn$
DECLARE
    v_schema text := 'tenant_' || substr(md5(p_tenant), 1, 24);
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('helios.tenant_schema:' || p_tenant, 0));
    IF NOT EXISTS (SELECT FROM helios.tenant_schemas WHERE tenant = p_tenant) THEN
        EXECUTE format('CREATE SCHEMA %I', v_schema);
        PERFORM helios.create_storage(v_schema);
        PERFORM helios.create_search_storage(v_schema);
        INSERT INTO helios.tenant_schemas (tenant, schema_name) VALUES (p_tenant, v_schema);
    END IF;
    RETURN v_schema;
END
$fn$
"""

# The version 1 write_version plus the search index: the rows of the new version
# (computed by the caller, one array per column) replace the old ones in the same
# statement. p_generation is the registry generation the rows were computed with: if
# the tenant's registry changed since, nothing is written ('stale_registry') and the
# caller reloads it and tries again. p_refuse: the caller found the body unusable
# (an invalid SearchParameter); the outcome is 'refused' where the write would be, so
# NotFound, Gone and conflicts are still reported first.
#
# The new version's lastUpdated and versionId are only known here, so the caller
# indexed a copy whose meta values were sentinels: the _lastUpdated row is added
# here, and in the tsvector literals (p_tsv) the sentinel lexemes 'zv<token>z' and
# 'za<token>z'..'zh<token>z' become the tokens of the version id and of the instant
# as FHIR writes it (2024-01-02T03:04:05.123456+00:00 -> 2024 01 02t03 04 05 123456
# 00 00), the very tokens the reference tokenizer makes of them.
_WRITE_VERSION_V2 = r"""
CREATE FUNCTION helios.write_version(
    p_tenant text, p_schema text, p_mode text, p_type text, p_id text, p_expected text,
    p_may_create boolean, p_may_update boolean,
    p_text text, p_token text, p_jsonb boolean,
    p_generation bigint, p_refuse boolean, p_last_updated_param text,
    p_param text[], p_kind text[], p_grp integer[], p_component integer[],
    p_itext text[], p_exact text[], p_system text[], p_code text[], p_code_folded text[],
    p_type_system text[], p_type_code text[], p_number numeric[], p_canonical_number numeric[],
    p_canonical_unit text[], p_date_low timestamptz[], p_date_high timestamptz[],
    p_ref_type text[], p_ref_id text[], p_ref_version text[], p_tsv text[],
    p_number_key float8[], p_canonical_key float8[],
    OUT o_outcome text, OUT o_version_id bigint, OUT o_last_updated timestamptz,
    OUT o_generation bigint)
LANGUAGE plpgsql AS $fn$
DECLARE
    v_found   boolean := false;
    v_version bigint;
    v_deleted boolean;
    v_absent  boolean;
    v_text    text;
    v_instant text[];
BEGIN
    PERFORM set_config('helios.tenant', p_tenant, true);
    IF p_schema IS NOT NULL THEN
        PERFORM set_config('search_path', p_schema, true);
    END IF;
    -- One writer per tenant until commit: version checks cannot race, and a tenant's
    -- history sequence and lastUpdated follow commit order across all connections.
    PERFORM pg_advisory_xact_lock(hashtextextended(p_tenant, 0));
    o_generation := coalesce(
        (SELECT g.generation FROM search_registry g WHERE g.tenant = p_tenant), 0);
    IF p_mode <> 'delete' AND p_generation IS DISTINCT FROM o_generation THEN
        o_outcome := 'stale_registry'; RETURN;
    END IF;
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
    IF p_refuse THEN
        o_outcome := 'refused'; RETURN;
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
    IF p_mode <> 'create' THEN
        DELETE FROM search_index i
         WHERE i.tenant = p_tenant AND i.resource_type = p_type AND i.resource_id = p_id;
    END IF;
    IF v_text IS NOT NULL THEN
        v_instant := string_to_array(
            to_char(o_last_updated AT TIME ZONE 'UTC', 'YYYY MM DD"t"HH24 MI SS US "00 00"'), ' ');
        INSERT INTO search_index
               (tenant, resource_type, resource_id, param, type, grp, component, text, exact,
                system, code, code_folded, type_system, type_code, number, canonical_number,
                canonical_unit, date_low, date_high, ref_type, ref_id, ref_version, tsv,
                number_key, canonical_key)
        SELECT p_tenant, p_type, p_id, u.param, u.kind, u.grp, u.component, u.itext, u.exact,
               u.system, u.code, u.code_folded, u.type_system, u.type_code, u.number,
               u.canonical_number, u.canonical_unit, u.date_low, u.date_high, u.ref_type,
               u.ref_id, u.ref_version,
               replace(replace(replace(replace(replace(replace(replace(replace(replace(
                   u.tsv,
                   'zv' || p_token || 'z', o_version_id::text),
                   'za' || p_token || 'z', v_instant[1]), 'zb' || p_token || 'z', v_instant[2]),
                   'zc' || p_token || 'z', v_instant[3]), 'zd' || p_token || 'z', v_instant[4]),
                   'ze' || p_token || 'z', v_instant[5]), 'zf' || p_token || 'z', v_instant[6]),
                   'zg' || p_token || 'z', v_instant[7]), 'zh' || p_token || 'z', v_instant[8]
               )::tsvector,
               u.number_key, u.canonical_key
          FROM unnest(p_param, p_kind, p_grp, p_component, p_itext, p_exact, p_system, p_code,
                      p_code_folded, p_type_system, p_type_code, p_number, p_canonical_number,
                      p_canonical_unit, p_date_low, p_date_high, p_ref_type, p_ref_id,
                      p_ref_version, p_tsv, p_number_key, p_canonical_key)
            AS u(param, kind, grp, component, itext, exact, system, code, code_folded,
                 type_system, type_code, number, canonical_number, canonical_unit, date_low,
                 date_high, ref_type, ref_id, ref_version, tsv, number_key, canonical_key);
        IF p_last_updated_param IS NOT NULL THEN
            INSERT INTO search_index
                   (tenant, resource_type, resource_id, param, type, grp, date_low, date_high)
            VALUES (p_tenant, p_type, p_id, p_last_updated_param, 'date', 0, o_last_updated,
                    o_last_updated + interval '1 microsecond');
        END IF;
    END IF;
    IF p_type = 'SearchParameter' THEN
        INSERT INTO search_registry AS g (tenant, generation) VALUES (p_tenant, 1)
        ON CONFLICT (tenant) DO UPDATE SET generation = g.generation + 1
        RETURNING g.generation INTO o_generation;
    END IF;
    o_outcome := CASE WHEN v_absent THEN 'created' ELSE 'updated' END;
END
$fn$
"""

# A search: the caller's statement (built by _search.py from the parsed query, every
# value a parameter: $1 text[], $2 numeric[], $3 timestamptz[]) run after the tenant
# is set, so row-level security scopes it, in the statement's own transaction. It
# returns (o_stale, o_total, o_id, o_version_id, o_last_updated, o_text). When the
# caller's registry generation is out of date, one row with o_stale = true instead.
# Not SECURITY DEFINER: the statement runs with the caller's own rights.
_SEARCH = r"""
CREATE FUNCTION helios.search(
    p_tenant text, p_schema text, p_generation bigint, p_sql text,
    p_texts text[], p_numbers numeric[], p_instants timestamptz[], p_floats float8[])
RETURNS TABLE (o_stale boolean, o_total bigint, o_id text, o_version_id bigint,
               o_last_updated timestamptz, o_text text)
LANGUAGE plpgsql STABLE AS $fn$
BEGIN
    PERFORM set_config('helios.tenant', p_tenant, true);
    IF p_schema IS NOT NULL THEN
        PERFORM set_config('search_path', p_schema, true);
    END IF;
    IF p_generation IS DISTINCT FROM coalesce(
            (SELECT g.generation FROM search_registry g WHERE g.tenant = p_tenant), 0) THEN
        RETURN QUERY SELECT true, NULL::bigint, NULL::text, NULL::bigint,
                            NULL::timestamptz, NULL::text;
        RETURN;
    END IF;
    RETURN QUERY EXECUTE p_sql USING p_texts, p_numbers, p_instants, p_floats;
END
$fn$
"""

# The tenant's registry: its generation and its live SearchParameter resources in
# write order (the order the in-memory backend registered them in).
_SEARCH_REGISTRY = r"""
CREATE FUNCTION helios.search_registry(p_tenant text, p_schema text)
RETURNS TABLE (o_generation bigint, o_id text, o_text text)
LANGUAGE plpgsql STABLE AS $fn$
BEGIN
    PERFORM set_config('helios.tenant', p_tenant, true);
    IF p_schema IS NOT NULL THEN
        PERFORM set_config('search_path', p_schema, true);
    END IF;
    RETURN QUERY
        SELECT g.generation, r.id, r.resource_text
          FROM (SELECT coalesce((SELECT s.generation FROM search_registry s
                                  WHERE s.tenant = p_tenant), 0) AS generation) g
          LEFT JOIN resources r
            ON r.tenant = p_tenant AND r.resource_type = 'SearchParameter' AND NOT r.deleted
         ORDER BY r.last_updated, r.id;
END
$fn$
"""

# Reindex, step 1: the current versions to index (of one type, or all).
_CURRENT_RESOURCES = r"""
CREATE FUNCTION helios.current_resources(p_tenant text, p_schema text, p_type text)
RETURNS TABLE (o_type text, o_id text, o_version_id bigint, o_text text)
LANGUAGE plpgsql STABLE AS $fn$
BEGIN
    PERFORM set_config('helios.tenant', p_tenant, true);
    IF p_schema IS NOT NULL THEN
        PERFORM set_config('search_path', p_schema, true);
    END IF;
    RETURN QUERY
        SELECT r.resource_type, r.id, r.version_id, r.resource_text
          FROM resources r
         WHERE r.tenant = p_tenant AND NOT r.deleted
           AND (p_type IS NULL OR r.resource_type = p_type)
         ORDER BY r.resource_type, r.id;
END
$fn$
"""

# Reindex, step 2: replace the rows of a batch of resources (p_owner: the position in
# p_types/p_ids/p_versions each index row belongs to). A resource written since step
# 1 (its version moved on) is left alone: its own write indexed it. Returns how many
# resources were reindexed, or -1 when the registry generation changed meanwhile.
_REPLACE_INDEX = r"""
CREATE FUNCTION helios.replace_index(
    p_tenant text, p_schema text, p_generation bigint,
    p_types text[], p_ids text[], p_versions bigint[], p_owner integer[],
    p_param text[], p_kind text[], p_grp integer[], p_component integer[],
    p_itext text[], p_exact text[], p_system text[], p_code text[], p_code_folded text[],
    p_type_system text[], p_type_code text[], p_number numeric[], p_canonical_number numeric[],
    p_canonical_unit text[], p_date_low timestamptz[], p_date_high timestamptz[],
    p_ref_type text[], p_ref_id text[], p_ref_version text[], p_tsv text[],
    p_number_key float8[], p_canonical_key float8[])
RETURNS integer
LANGUAGE plpgsql AS $fn$
DECLARE
    v_keep integer[];
    v_done integer;
BEGIN
    PERFORM set_config('helios.tenant', p_tenant, true);
    IF p_schema IS NOT NULL THEN
        PERFORM set_config('search_path', p_schema, true);
    END IF;
    PERFORM pg_advisory_xact_lock(hashtextextended(p_tenant, 0));
    IF p_generation IS DISTINCT FROM coalesce(
            (SELECT g.generation FROM search_registry g WHERE g.tenant = p_tenant), 0) THEN
        RETURN -1;
    END IF;
    SELECT coalesce(array_agg(t.position), '{}') INTO v_keep
      FROM unnest(p_types, p_ids, p_versions) WITH ORDINALITY
           AS t(resource_type, id, version_id, position)
      JOIN resources r
        ON r.tenant = p_tenant AND r.resource_type = t.resource_type AND r.id = t.id
       AND r.version_id = t.version_id AND NOT r.deleted;
    v_done := cardinality(v_keep);
    DELETE FROM search_index i
     USING unnest(p_types, p_ids) WITH ORDINALITY AS k(resource_type, id, position)
     WHERE k.position = ANY(v_keep)
       AND i.tenant = p_tenant AND i.resource_type = k.resource_type AND i.resource_id = k.id;
    INSERT INTO search_index
           (tenant, resource_type, resource_id, param, type, grp, component, text, exact,
            system, code, code_folded, type_system, type_code, number, canonical_number,
            canonical_unit, date_low, date_high, ref_type, ref_id, ref_version, tsv,
            number_key, canonical_key)
    SELECT p_tenant, k.resource_type, k.id, u.param, u.kind, u.grp, u.component, u.itext,
           u.exact, u.system, u.code, u.code_folded, u.type_system, u.type_code, u.number,
           u.canonical_number, u.canonical_unit, u.date_low, u.date_high, u.ref_type,
           u.ref_id, u.ref_version, u.tsv::tsvector, u.number_key, u.canonical_key
      FROM unnest(p_owner, p_param, p_kind, p_grp, p_component, p_itext, p_exact, p_system,
                  p_code, p_code_folded, p_type_system, p_type_code, p_number,
                  p_canonical_number, p_canonical_unit, p_date_low, p_date_high, p_ref_type,
                  p_ref_id, p_ref_version, p_tsv, p_number_key, p_canonical_key)
        AS u(owner, param, kind, grp, component, itext, exact, system, code, code_folded,
             type_system, type_code, number, canonical_number, canonical_unit, date_low,
             date_high, ref_type, ref_id, ref_version, tsv, number_key, canonical_key)
      JOIN unnest(p_types, p_ids) WITH ORDINALITY AS k(resource_type, id, position)
        ON k.position = u.owner
     WHERE u.owner = ANY(v_keep);
    RETURN v_done;
END
$fn$
"""

# -- version 3: search composition --------------------------------------------------------

# The indexes composition adds to the search tables of one schema; called by migration 3
# for the schemas that exist and by ensure_tenant_schema for new ones.
# search_index_referenced: the rows pointing at a given resource, whatever their type
# and parameter (_revinclude, _revinclude=*:*, :iterate). Chains and _has walk the
# version 2 indexes: (tenant, resource_type, param, ref_id_key) and the per-resource one.
_CREATE_COMPOSITION_INDEXES = r"""
CREATE FUNCTION helios.create_composition_indexes(p_schema text) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
    EXECUTE format('CREATE INDEX search_index_referenced ON %I.search_index'
                   ' (tenant, ref_type, ref_id_key) WHERE ref_id_key IS NOT NULL', p_schema);
END
$fn$
"""

_ENSURE_TENANT_SCHEMA_V3 = r"""
CREATE OR REPLACE FUNCTION helios.ensure_tenant_schema(p_tenant text) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, helios AS $fn$
DECLARE
    v_schema text := 'tenant_' || substr(md5(p_tenant), 1, 24);
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('helios.tenant_schema:' || p_tenant, 0));
    IF NOT EXISTS (SELECT FROM helios.tenant_schemas WHERE tenant = p_tenant) THEN
        EXECUTE format('CREATE SCHEMA %I', v_schema);
        PERFORM helios.create_storage(v_schema);
        PERFORM helios.create_search_storage(v_schema);
        PERFORM helios.create_composition_indexes(v_schema);
        INSERT INTO helios.tenant_schemas (tenant, schema_name) VALUES (p_tenant, v_schema);
    END IF;
    RETURN v_schema;
END
$fn$
"""

# A search with composition: the caller's statement (built by _search.py; every value
# a parameter: $1 text[], $2 numeric[], $3 timestamptz[], $4 float8[]) run after the
# tenant is set, in the statement's own transaction: the page, what _include and
# _revinclude add to it, the total and the snapshot come back together, one round trip.
# Each row has a role: 'match' (o_position orders the page; the o_key_* arrays hold
# the _sort values a cursor continues after), 'include' (o_type/o_id), 'meta' (o_total,
# o_snapshot: the tenant's newest history sequence). When the caller's registry
# generation is out of date, one row with o_stale = true instead.
_SEARCH_V3 = r"""
CREATE FUNCTION helios.search(
    p_tenant text, p_schema text, p_generation bigint, p_sql text,
    p_texts text[], p_numbers numeric[], p_instants timestamptz[], p_floats float8[])
RETURNS TABLE (o_stale boolean, o_role text, o_position bigint, o_type text, o_id text,
               o_version_id bigint, o_last_updated timestamptz, o_text text,
               o_key_texts text[], o_key_numbers numeric[], o_key_instants timestamptz[],
               o_total bigint, o_snapshot bigint)
LANGUAGE plpgsql STABLE AS $fn$
BEGIN
    PERFORM set_config('helios.tenant', p_tenant, true);
    IF p_schema IS NOT NULL THEN
        PERFORM set_config('search_path', p_schema, true);
    END IF;
    IF p_generation IS DISTINCT FROM coalesce(
            (SELECT g.generation FROM search_registry g WHERE g.tenant = p_tenant), 0) THEN
        RETURN QUERY SELECT true, 'stale'::text, NULL::bigint, NULL::text, NULL::text,
                            NULL::bigint, NULL::timestamptz, NULL::text, NULL::text[],
                            NULL::numeric[], NULL::timestamptz[], NULL::bigint, NULL::bigint;
        RETURN;
    END IF;
    RETURN QUERY EXECUTE p_sql USING p_texts, p_numbers, p_instants, p_floats;
END
$fn$
"""

# -- version 4: Bulk Data ------------------------------------------------------------------

# The bulk tables of one schema (``helios`` or a tenant's): job documents and submission
# journals, plus the index an export scan pages on. Called by migration 4 for the
# schemas that exist and by ensure_tenant_schema (version 4) for new ones.
_CREATE_BULK_STORAGE = r"""
CREATE FUNCTION helios.create_bulk_storage(p_schema text) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    v_table text;
BEGIN
    -- COLLATE "C" on ids: job lists come back in code-point order, as Python sorts.
    EXECUTE format($ddl$
        CREATE TABLE %1$I.bulk_jobs (
            tenant   text   NOT NULL,
            kind     text   NOT NULL,
            id       text   COLLATE "C" NOT NULL,
            status   text   NOT NULL,
            revision bigint NOT NULL,
            document text   NOT NULL,
            PRIMARY KEY (tenant, kind, id)
        )$ddl$, p_schema);
    -- The active-job cap counts a tenant's jobs of one kind by status.
    EXECUTE format('CREATE INDEX bulk_jobs_status ON %I.bulk_jobs (tenant, kind, status)',
                   p_schema);
    EXECUTE format($ddl$
        CREATE TABLE %1$I.bulk_entries (
            tenant           text   NOT NULL,
            submission       text   NOT NULL,
            seq              bigint NOT NULL,
            manifest_url     text   NOT NULL,
            source_url       text   NOT NULL,
            line             bigint NOT NULL,
            outcome          text   NOT NULL,
            resource_type    text,
            resource_id      text,
            previous_version text,
            version          text,
            message          text,
            PRIMARY KEY (tenant, submission, seq)
        )$ddl$, p_schema);
    -- Export pages are keyset pages on the id in code-point order over *every* row of
    -- a type: resources_search_order skips deleted rows, but a resource deleted after
    -- the snapshot instant is still exported as its snapshot version.
    EXECUTE format('CREATE INDEX resources_export_order ON %I.resources'
                   ' (tenant, resource_type, id COLLATE "C")', p_schema);
    FOREACH v_table IN ARRAY ARRAY['bulk_jobs', 'bulk_entries'] LOOP
        EXECUTE format('ALTER TABLE %I.%I ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY',
                       p_schema, v_table);
        EXECUTE format($ddl$
            CREATE POLICY tenant_rows ON %I.%I
                USING (tenant = current_setting('helios.tenant', true))
                WITH CHECK (tenant = current_setting('helios.tenant', true))$ddl$,
            p_schema, v_table);
    END LOOP;
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'helios_app') THEN
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I.bulk_jobs, %I.bulk_entries'
                       ' TO helios_app', p_schema, p_schema);
    END IF;
END
$fn$
"""

_ENSURE_TENANT_SCHEMA_V4 = r"""
CREATE OR REPLACE FUNCTION helios.ensure_tenant_schema(p_tenant text) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, helios AS $fn$
DECLARE
    v_schema text := 'tenant_' || substr(md5(p_tenant), 1, 24);
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('helios.tenant_schema:' || p_tenant, 0));
    IF NOT EXISTS (SELECT FROM helios.tenant_schemas WHERE tenant = p_tenant) THEN
        EXECUTE format('CREATE SCHEMA %I', v_schema);
        PERFORM helios.create_storage(v_schema);
        PERFORM helios.create_search_storage(v_schema);
        PERFORM helios.create_composition_indexes(v_schema);
        PERFORM helios.create_bulk_storage(v_schema);
        INSERT INTO helios.tenant_schemas (tenant, schema_name) VALUES (p_tenant, v_schema);
    END IF;
    RETURN v_schema;
END
$fn$
"""

# The resource types of the tenant with any stored row: a loose index scan (one probe
# of the primary key per type), not one row per resource.
_EXPORT_TYPES = r"""
CREATE FUNCTION helios.export_types(p_tenant text, p_schema text)
RETURNS TABLE (o_type text)
LANGUAGE plpgsql STABLE AS $fn$
BEGIN
    PERFORM set_config('helios.tenant', p_tenant, true);
    IF p_schema IS NOT NULL THEN
        PERFORM set_config('search_path', p_schema, true);
    END IF;
    RETURN QUERY
        WITH RECURSIVE kinds(kind) AS (
            SELECT min(r.resource_type) FROM resources r WHERE r.tenant = p_tenant
            UNION ALL
            SELECT (SELECT min(r.resource_type) FROM resources r
                     WHERE r.tenant = p_tenant AND r.resource_type > k.kind)
              FROM kinds k WHERE k.kind IS NOT NULL)
        SELECT k.kind FROM kinds k WHERE k.kind IS NOT NULL;
END
$fn$
"""

# One export page: the caller's statement (built by _bulk.py; values as in
# helios.search, plus $5, the registry generation the statement was built with, which
# the statement itself checks so that check and page share one snapshot).
#
# Closing the snapshot: a page must never miss a version written at or before p_as_of
# that a later page (or a resumed job) would see. Writers draw lastUpdated under the
# tenant's advisory lock and commit before releasing it, so once the tenant's clock
# stands at least at p_as_of no write in flight can still get an instant <= p_as_of.
# While it stands below, this function takes the same lock (waiting for the writer in
# flight, if any) and moves the clock to p_as_of (never past the server's own clock),
# so every later write is stamped after the snapshot. The page query then runs in a
# snapshot taken after that (READ COMMITTED: each statement of a VOLATILE function
# takes a new one). Only the first page of a job normally finds the clock behind.
_EXPORT_SCAN = r"""
CREATE FUNCTION helios.export_scan(
    p_tenant text, p_schema text, p_generation bigint, p_as_of timestamptz, p_sql text,
    p_texts text[], p_numbers numeric[], p_instants timestamptz[], p_floats float8[])
RETURNS TABLE (o_stale boolean, o_id text, o_version_id bigint, o_last_updated timestamptz,
               o_text text, o_current boolean)
LANGUAGE plpgsql AS $fn$
DECLARE
    v_close timestamptz := least(p_as_of, clock_timestamp());
BEGIN
    PERFORM set_config('helios.tenant', p_tenant, true);
    IF p_schema IS NOT NULL THEN
        PERFORM set_config('search_path', p_schema, true);
    END IF;
    IF coalesce((SELECT c.last_updated FROM tenant_clocks c WHERE c.tenant = p_tenant),
                '-infinity') < v_close THEN
        PERFORM pg_advisory_xact_lock(hashtextextended(p_tenant, 0));
        INSERT INTO tenant_clocks AS c (tenant, last_updated) VALUES (p_tenant, v_close)
        ON CONFLICT (tenant) DO UPDATE SET last_updated = greatest(c.last_updated, v_close);
    END IF;
    RETURN QUERY EXECUTE p_sql USING p_texts, p_numbers, p_instants, p_floats, p_generation;
END
$fn$
"""

# The live snapshot versions of one type (of some ids, or all), for what export
# decides in Python: the other resources a chained _typeFilter reaches, and whether a
# referenced patient was live. Consistent with the page: export_scan closed the
# snapshot, so versions at or before p_as_of no longer change.
_EXPORT_SNAPSHOT = r"""
CREATE FUNCTION helios.export_snapshot(
    p_tenant text, p_schema text, p_as_of timestamptz, p_type text, p_ids text[])
RETURNS TABLE (o_id text, o_text text)
LANGUAGE plpgsql STABLE AS $fn$
BEGIN
    PERFORM set_config('helios.tenant', p_tenant, true);
    IF p_schema IS NOT NULL THEN
        PERFORM set_config('search_path', p_schema, true);
    END IF;
    RETURN QUERY
        SELECT r.id, s.text
          FROM resources r
         CROSS JOIN LATERAL (
               SELECT r.resource_text WHERE r.last_updated <= p_as_of
               UNION ALL
               (SELECT h.resource_text FROM resource_history h
                 WHERE r.last_updated > p_as_of AND h.tenant = r.tenant
                   AND h.resource_type = r.resource_type AND h.id = r.id
                   AND h.last_updated <= p_as_of
                 ORDER BY h.version_id DESC LIMIT 1)) AS s(text)
         WHERE r.tenant = p_tenant AND r.resource_type = p_type
           AND (p_ids IS NULL OR r.id = ANY(p_ids)) AND s.text IS NOT NULL
         ORDER BY r.id COLLATE "C";
END
$fn$
"""

# Count and insert are one step for every connection: kick-offs of one tenant and
# kind take turns on an advisory lock held to commit, and each statement after it
# sees the jobs the previous holder inserted. Outcomes: inserted, exists, too_many
# (o_active: how many were active).
_BULK_INSERT_JOB = r"""
CREATE FUNCTION helios.bulk_insert_job(
    p_tenant text, p_schema text, p_kind text, p_id text, p_status text, p_document text,
    p_max_active bigint, p_active_statuses text[],
    OUT o_outcome text, OUT o_active bigint)
LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM set_config('helios.tenant', p_tenant, true);
    IF p_schema IS NOT NULL THEN
        PERFORM set_config('search_path', p_schema, true);
    END IF;
    PERFORM pg_advisory_xact_lock(hashtextextended('helios.bulk_jobs:' || p_kind || ':'
                                                   || p_tenant, 0));
    IF EXISTS (SELECT FROM bulk_jobs j
                WHERE j.tenant = p_tenant AND j.kind = p_kind AND j.id = p_id) THEN
        o_outcome := 'exists'; RETURN;
    END IF;
    IF p_max_active IS NOT NULL THEN
        SELECT count(*) INTO o_active FROM bulk_jobs j
         WHERE j.tenant = p_tenant AND j.kind = p_kind AND j.status = ANY(p_active_statuses);
        IF o_active >= p_max_active THEN
            o_outcome := 'too_many'; RETURN;
        END IF;
    END IF;
    INSERT INTO bulk_jobs (tenant, kind, id, status, revision, document)
    VALUES (p_tenant, p_kind, p_id, p_status, 1, p_document);
    o_outcome := 'inserted';
END
$fn$
"""

_BULK_LOAD_JOB = r"""
CREATE FUNCTION helios.bulk_load_job(p_tenant text, p_schema text, p_kind text, p_id text)
RETURNS TABLE (o_status text, o_revision bigint, o_document text)
LANGUAGE plpgsql STABLE AS $fn$
BEGIN
    PERFORM set_config('helios.tenant', p_tenant, true);
    IF p_schema IS NOT NULL THEN
        PERFORM set_config('search_path', p_schema, true);
    END IF;
    RETURN QUERY
        SELECT j.status, j.revision, j.document FROM bulk_jobs j
         WHERE j.tenant = p_tenant AND j.kind = p_kind AND j.id = p_id;
END
$fn$
"""

# Optimistic concurrency: the UPDATE only matches the expected revision (under READ
# COMMITTED a concurrent save that committed first is re-checked, so it no longer
# does). Outcomes: saved (o_revision: the new one), conflict (the stored one),
# not_found.
_BULK_SAVE_JOB = r"""
CREATE FUNCTION helios.bulk_save_job(
    p_tenant text, p_schema text, p_kind text, p_id text, p_status text, p_document text,
    p_expected bigint, OUT o_outcome text, OUT o_revision bigint)
LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM set_config('helios.tenant', p_tenant, true);
    IF p_schema IS NOT NULL THEN
        PERFORM set_config('search_path', p_schema, true);
    END IF;
    UPDATE bulk_jobs j SET status = p_status, document = p_document, revision = j.revision + 1
     WHERE j.tenant = p_tenant AND j.kind = p_kind AND j.id = p_id AND j.revision = p_expected
    RETURNING j.revision INTO o_revision;
    IF FOUND THEN
        o_outcome := 'saved'; RETURN;
    END IF;
    SELECT j.revision INTO o_revision FROM bulk_jobs j
     WHERE j.tenant = p_tenant AND j.kind = p_kind AND j.id = p_id;
    o_outcome := CASE WHEN FOUND THEN 'conflict' ELSE 'not_found' END;
END
$fn$
"""

_BULK_LIST_JOBS = r"""
CREATE FUNCTION helios.bulk_list_jobs(p_tenant text, p_schema text, p_kind text)
RETURNS TABLE (o_id text, o_status text, o_revision bigint, o_document text)
LANGUAGE plpgsql STABLE AS $fn$
BEGIN
    PERFORM set_config('helios.tenant', p_tenant, true);
    IF p_schema IS NOT NULL THEN
        PERFORM set_config('search_path', p_schema, true);
    END IF;
    RETURN QUERY
        SELECT j.id, j.status, j.revision, j.document FROM bulk_jobs j
         WHERE j.tenant = p_tenant AND j.kind = p_kind ORDER BY j.id;
END
$fn$
"""

_BULK_DELETE_JOB = r"""
CREATE FUNCTION helios.bulk_delete_job(
    p_tenant text, p_schema text, p_kind text, p_id text, p_with_entries boolean)
RETURNS boolean
LANGUAGE plpgsql AS $fn$
DECLARE
    v_deleted integer;
BEGIN
    PERFORM set_config('helios.tenant', p_tenant, true);
    IF p_schema IS NOT NULL THEN
        PERFORM set_config('search_path', p_schema, true);
    END IF;
    IF p_with_entries THEN
        DELETE FROM bulk_entries e WHERE e.tenant = p_tenant AND e.submission = p_id;
    END IF;
    DELETE FROM bulk_jobs j WHERE j.tenant = p_tenant AND j.kind = p_kind AND j.id = p_id;
    GET DIAGNOSTICS v_deleted = ROW_COUNT;
    RETURN v_deleted > 0;
END
$fn$
"""

# A batch of journal entries, one array per column: one statement however many lines.
_BULK_APPEND_ENTRIES = r"""
CREATE FUNCTION helios.bulk_append_entries(
    p_tenant text, p_schema text, p_submission text, p_seq bigint[], p_manifest_url text[],
    p_source_url text[], p_line bigint[], p_outcome text[], p_resource_type text[],
    p_resource_id text[], p_previous_version text[], p_version text[], p_message text[])
RETURNS integer
LANGUAGE plpgsql AS $fn$
DECLARE
    v_added integer;
BEGIN
    PERFORM set_config('helios.tenant', p_tenant, true);
    IF p_schema IS NOT NULL THEN
        PERFORM set_config('search_path', p_schema, true);
    END IF;
    INSERT INTO bulk_entries
           (tenant, submission, seq, manifest_url, source_url, line, outcome, resource_type,
            resource_id, previous_version, version, message)
    SELECT p_tenant, p_submission, u.*
      FROM unnest(p_seq, p_manifest_url, p_source_url, p_line, p_outcome, p_resource_type,
                  p_resource_id, p_previous_version, p_version, p_message) AS u;
    GET DIAGNOSTICS v_added = ROW_COUNT;
    RETURN v_added;
END
$fn$
"""

# p_after = 0: from the start (either direction); p_limit NULL: no limit.
_BULK_LIST_ENTRIES = r"""
CREATE FUNCTION helios.bulk_list_entries(
    p_tenant text, p_schema text, p_submission text, p_outcome text, p_manifest_url text,
    p_after bigint, p_limit bigint, p_descending boolean)
RETURNS TABLE (o_seq bigint, o_manifest_url text, o_source_url text, o_line bigint,
               o_outcome text, o_resource_type text, o_resource_id text,
               o_previous_version text, o_version text, o_message text)
LANGUAGE plpgsql STABLE AS $fn$
BEGIN
    PERFORM set_config('helios.tenant', p_tenant, true);
    IF p_schema IS NOT NULL THEN
        PERFORM set_config('search_path', p_schema, true);
    END IF;
    IF p_descending THEN
        RETURN QUERY
            SELECT e.seq, e.manifest_url, e.source_url, e.line, e.outcome, e.resource_type,
                   e.resource_id, e.previous_version, e.version, e.message
              FROM bulk_entries e
             WHERE e.tenant = p_tenant AND e.submission = p_submission
               AND (p_outcome IS NULL OR e.outcome = p_outcome)
               AND (p_manifest_url IS NULL OR e.manifest_url = p_manifest_url)
               AND (p_after = 0 OR e.seq < p_after)
             ORDER BY e.seq DESC LIMIT p_limit;
    ELSE
        RETURN QUERY
            SELECT e.seq, e.manifest_url, e.source_url, e.line, e.outcome, e.resource_type,
                   e.resource_id, e.previous_version, e.version, e.message
              FROM bulk_entries e
             WHERE e.tenant = p_tenant AND e.submission = p_submission
               AND (p_outcome IS NULL OR e.outcome = p_outcome)
               AND (p_manifest_url IS NULL OR e.manifest_url = p_manifest_url)
               AND (p_after = 0 OR e.seq > p_after)
             ORDER BY e.seq LIMIT p_limit;
    END IF;
END
$fn$
"""

# Migration 4 as one self-contained step (tables for helios and every tenant schema,
# the new ensure_tenant_schema, the functions), so it can be renumbered as a whole.
_BULK_MIGRATION: tuple[str, ...] = (
    _CREATE_BULK_STORAGE,
    "SELECT helios.create_bulk_storage('helios')",
    "SELECT helios.create_bulk_storage(schema_name) FROM helios.tenant_schemas",
    _ENSURE_TENANT_SCHEMA_V4,
    _EXPORT_TYPES,
    _EXPORT_SCAN,
    _EXPORT_SNAPSHOT,
    _BULK_INSERT_JOB,
    _BULK_LOAD_JOB,
    _BULK_SAVE_JOB,
    _BULK_LIST_JOBS,
    _BULK_DELETE_JOB,
    _BULK_APPEND_ENTRIES,
    _BULK_LIST_ENTRIES,
    "REVOKE ALL ON FUNCTION helios.create_bulk_storage(text) FROM PUBLIC",
)

# -- version 5: the cursor secret -----------------------------------------------------------

# The key every process using the database signs its page cursors with, so a cursor
# one process issued is honoured by another (behind a load balancer, say). Written
# once by the first backend that opens the database (see ``cursor_secret``); the
# application role has no right on it at all: only the connecting (owner) role reads it.
_CREATE_CURSOR_SECRET = """
CREATE TABLE helios.cursor_secret (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    secret    bytea   NOT NULL CHECK (length(secret) >= 32)
)
"""

# -- version 6: date search keys -------------------------------------------------------

# Date conditions compare ranges whose open ends are NULL, so every prefix is an OR with
# IS NULL that no btree range scan can serve; and the exact check needed each row from
# the heap. date_lo_key/date_hi_key (NULL on non-date rows) are the least and greatest of
# the two ends, an open end as -infinity/infinity: every prefix but ne implies one range
# on one of them (ge: date_hi_key >= low, lt: date_lo_key < low, ...; see _search.py),
# whatever the row (a period may end before it starts). Each index carries the exact
# ends and the resource id, so a date test is one index-only range scan plus the exact
# condition. Generated columns: the write path fills them without change. They replace
# the version 2 date indexes.
_CREATE_DATE_KEYS = r"""
CREATE FUNCTION helios.create_date_keys(p_schema text) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
    EXECUTE format($ddl$
        ALTER TABLE %1$I.search_index
          ADD COLUMN date_lo_key timestamptz GENERATED ALWAYS AS (
              CASE WHEN date_low IS NOT NULL OR date_high IS NOT NULL THEN least(
                  coalesce(date_low, '-infinity'), coalesce(date_high, 'infinity')) END) STORED,
          ADD COLUMN date_hi_key timestamptz GENERATED ALWAYS AS (
              CASE WHEN date_low IS NOT NULL OR date_high IS NOT NULL THEN greatest(
                  coalesce(date_low, '-infinity'), coalesce(date_high, 'infinity')) END) STORED
        $ddl$, p_schema);
    EXECUTE format('DROP INDEX %I.search_index_date_low', p_schema);
    EXECUTE format('DROP INDEX %I.search_index_date_high', p_schema);
    EXECUTE format('CREATE INDEX search_index_date_lo ON %I.search_index'
                   ' (tenant, resource_type, param, date_lo_key)'
                   ' INCLUDE (resource_id, date_low, date_high) WHERE date_lo_key IS NOT NULL',
                   p_schema);
    EXECUTE format('CREATE INDEX search_index_date_hi ON %I.search_index'
                   ' (tenant, resource_type, param, date_hi_key)'
                   ' INCLUDE (resource_id, date_low, date_high) WHERE date_hi_key IS NOT NULL',
                   p_schema);
END
$fn$
"""

_ENSURE_TENANT_SCHEMA_V6 = r"""
CREATE OR REPLACE FUNCTION helios.ensure_tenant_schema(p_tenant text) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, helios AS $fn$
DECLARE
    v_schema text := 'tenant_' || substr(md5(p_tenant), 1, 24);
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('helios.tenant_schema:' || p_tenant, 0));
    IF NOT EXISTS (SELECT FROM helios.tenant_schemas WHERE tenant = p_tenant) THEN
        EXECUTE format('CREATE SCHEMA %I', v_schema);
        PERFORM helios.create_storage(v_schema);
        PERFORM helios.create_search_storage(v_schema);
        PERFORM helios.create_composition_indexes(v_schema);
        PERFORM helios.create_bulk_storage(v_schema);
        PERFORM helios.create_date_keys(v_schema);
        INSERT INTO helios.tenant_schemas (tenant, schema_name) VALUES (p_tenant, v_schema);
    END IF;
    RETURN v_schema;
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
    (
        _CREATE_SEARCH_STORAGE,
        "SELECT helios.create_search_storage('helios')",
        # A later migration that changes tables applies to every tenant schema too.
        "SELECT helios.create_search_storage(schema_name) FROM helios.tenant_schemas",
        _ENSURE_TENANT_SCHEMA_V2,
        "DROP FUNCTION helios.write_version(text, text, text, text, text, text, boolean,"
        " boolean, text, text, boolean)",
        _WRITE_VERSION_V2,
        _SEARCH,
        _SEARCH_REGISTRY,
        _CURRENT_RESOURCES,
        _REPLACE_INDEX,
        "REVOKE ALL ON FUNCTION helios.create_search_storage(text) FROM PUBLIC",
    ),
    (
        _CREATE_COMPOSITION_INDEXES,
        "SELECT helios.create_composition_indexes('helios')",
        "SELECT helios.create_composition_indexes(schema_name) FROM helios.tenant_schemas",
        _ENSURE_TENANT_SCHEMA_V3,
        "DROP FUNCTION helios.search(text, text, bigint, text, text[], numeric[],"
        " timestamptz[], float8[])",
        _SEARCH_V3,
        "REVOKE ALL ON FUNCTION helios.create_composition_indexes(text) FROM PUBLIC",
    ),
    _BULK_MIGRATION,
    (_CREATE_CURSOR_SECRET,),
    (
        _CREATE_DATE_KEYS,
        "SELECT helios.create_date_keys('helios')",
        "SELECT helios.create_date_keys(schema_name) FROM helios.tenant_schemas",
        _ENSURE_TENANT_SCHEMA_V6,
        "REVOKE ALL ON FUNCTION helios.create_date_keys(text) FROM PUBLIC",
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


async def cursor_secret(connection: asyncpg.Connection) -> bytes:
    """The database's cursor-signing key, made (32 random bytes) by the first caller.

    ``connection`` must be the owner role's (the application role cannot read it).
    """
    await connection.execute(
        "INSERT INTO helios.cursor_secret (secret) VALUES ($1) ON CONFLICT DO NOTHING",
        secrets.token_bytes(32),
    )
    secret: bytes = await connection.fetchval("SELECT secret FROM helios.cursor_secret")
    return secret
