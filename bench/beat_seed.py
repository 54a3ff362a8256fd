"""The beat-jobs bench's data (bench/beat_jobs.py): N subscriptions seeded with server-side SQL
(INSERT … SELECT generate_series), 10% of them live, with their users, history, ledger, outbox and webhook
rows, and a fixed handful of due items for each job (the same at every size: a job whose work is bounded
then costs the same whatever the table's size).

The big tables' secondary indexes and constraints are dropped before loading and built again after (one
sort per index instead of 10M insertions into each). A marker table (`bench_seed`) says which seed version
and size the database holds and when it was seeded: a matching database is reused. The due items'
times are set again relative to now before every measurement (`due_items_refresh`)."""

from datetime import UTC, datetime, timedelta

import psycopg

SEED_VERSION = 2
# Seeded times are relative to the seeding: live subscriptions expire from 2 days on, so a database
# older than this would have generic subscriptions lapsing (more work for the sweep than the due items).
SEED_MAX_AGE = timedelta(hours=36)
DUE_BLOCK = 2000  # the last ids: the due items (below), re-stamped before each measurement

# Tables loaded in bulk: their secondary indexes and constraints are rebuilt after the load.
BIG_TABLES = ("accounts_subscriber", "billing_subscription", "billing_statuschange", "billing_transaction",
              "billing_outbox", "webhooks_webhookevent")
PROVIDERS = ("stripe", "apple", "google", "xsolla")


def seeded(conn: psycopg.Connection, size: int) -> bool:
    """The database holds this size at this seed version, seeded lately enough."""
    if not conn.execute("SELECT to_regclass('bench_seed')").fetchone()[0]:
        return False
    row = conn.execute("SELECT version, size, seeded_at FROM bench_seed").fetchone()
    return (row is not None and row[0] == SEED_VERSION and row[1] == size
            and datetime.now(UTC) - row[2] < SEED_MAX_AGE)


def _secondary(conn: psycopg.Connection) -> tuple[list[tuple[str, str, str]], list[str]]:
    """(table, constraint name, definition) of the unique and foreign-key constraints, and the CREATE INDEX
    statements of the other non-primary indexes, of the big tables."""
    constraints = conn.execute(
        "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = ANY(%s::regclass[]) AND contype IN ('u', 'f') ORDER BY contype DESC, conname",
        (list(BIG_TABLES),)).fetchall()
    indexes = [r[0] for r in conn.execute(
        "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i WHERE i.indrelid = ANY(%s::regclass[]) "
        "AND NOT i.indisprimary AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)",
        (list(BIG_TABLES),)).fetchall()]
    return constraints, indexes


def seed(db_url: str, size: int, log=print) -> None:
    """Fill an empty schema with `size` subscriptions and what goes with them."""
    n, users = size, (size + 1) // 2
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '1GB'")
        conn.execute("SET max_parallel_maintenance_workers = 2")
        conn.execute("SET synchronous_commit = off")
        constraints, indexes = _secondary(conn)
        for table, name, _ in constraints:
            conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
        for statement in indexes:
            conn.execute(f"DROP INDEX {statement.split(' ON ')[0].split()[-1]}")

        def step(label, sql, params=None):
            started = datetime.now(UTC)
            conn.execute(sql, params)
            log(f"  {label}: {(datetime.now(UTC) - started).total_seconds():.1f} s")

        conn.execute("INSERT INTO billing_entitlement (name, description) VALUES ('premium', '')")
        for provider in PROVIDERS:
            conn.execute("INSERT INTO billing_product (provider, store_product_id, label, period_unit, period_value, "
                         "price_minor, currency, offered, created_at, updated_at) "
                         "VALUES (%s, %s, '', 'month', 1, 999, 'USD', false, now(), now())",
                         (provider, f"{provider}_monthly"))
        conn.execute("INSERT INTO billing_product_entitlements (product_id, entitlement_id) "
                     "SELECT p.id, e.id FROM billing_product p, billing_entitlement e")
        step(f"{users:,} users", f"""
            INSERT INTO accounts_subscriber (id, external_id, email, created_at, updated_at)
            SELECT g, 'user-' || g, '', now(), now() FROM generate_series(1, {users}) g""")
        # h: a spread of seconds per id (a multiplicative hash), so times do not follow the ids.
        step(f"{n:,} subscriptions", f"""
            INSERT INTO billing_subscription (id, provider, provider_subscription_id, subscriber_id, product_id,
                store_product_id, status, period_unit, period_value, amount_minor, currency, auto_renew,
                started_at, expires_at, grace_until, ended_at, environment, acknowledgement_due_at,
                acknowledged_at, last_event_at, last_verified_at, created_at, updated_at, raw_snapshot)
            SELECT t.id, t.provider, t.provider || '_' || t.id, (t.id + 1) / 2, p.id, p.store_product_id, status,
                   'month', 1,
                   999, 'USD', status IN ('TRIAL', 'ACTIVE', 'ON_GRACE'), expires - interval '30 days', expires,
                   CASE WHEN status = 'ON_GRACE' THEN expires + interval '6 days' END,
                   CASE WHEN NOT live THEN expires END, 'production',
                   CASE WHEN t.provider = 'google' THEN expires - interval '27 days' END,
                   CASE WHEN t.provider = 'google' THEN expires - interval '30 days' + interval '1 minute' END,
                   verified, verified, expires - interval '30 days', coalesce(verified, now()), '{{}}'
            FROM (SELECT id, live, provider, expires,
                         CASE WHEN NOT live THEN expires
                              WHEN id % 1000 = 0 THEN NULL
                              ELSE now() - ((id * 40503) % 2592000) * interval '1 second' END AS verified,
                         CASE WHEN live THEN (ARRAY['ACTIVE', 'ACTIVE', 'ACTIVE', 'ACTIVE', 'ACTIVE', 'ACTIVE',
                                                    'ACTIVE', 'ACTIVE', 'ACTIVE', 'ACTIVE', 'ACTIVE', 'ACTIVE',
                                                    'ACTIVE', 'ACTIVE', 'TRIAL', 'CANCELED', 'CANCELED',
                                                    'ON_GRACE', 'ON_HOLD', 'PAUSED'])[(id * 40503) % 999983 % 20 + 1]
                              WHEN id % 50 = 1 THEN 'REVOKED' ELSE 'EXPIRED' END AS status
                  FROM (SELECT id, id % 10 = 0 AS live,
                               (ARRAY['stripe', 'apple', 'google', 'xsolla'])[(id * 2654435761) % 1000003 % 4 + 1]
                                   AS provider,
                               CASE WHEN id % 10 = 0
                                    THEN now() + interval '2 days' + ((id * 2654435761) % 2419200) * second
                                    ELSE now() - interval '1 day' - ((id * 2654435761) % 157680000) * second
                               END AS expires
                        FROM generate_series(1::bigint, {n}) id, (SELECT interval '1 second' AS second) u) s) t
            JOIN billing_product p ON p.provider = t.provider""")
        # History: a start row per subscription, then the row in force now (the last renewal of a live one,
        # the end of an ended one), each with the state it set. Recorded when it happened.
        step("history", """
            INSERT INTO billing_statuschange (subscription_id, kind, old_status, new_status, occurred_at, recorded_at,
                cause, cause_ref, ignored, note, state_known, subscriber_id, product_id, store_product_id,
                environment, amount_minor, currency, period_unit, period_value, auto_renew, expires_at)
            SELECT s.id, 'status', 'INACTIVE', CASE WHEN s.status = 'TRIAL' THEN 'TRIAL' ELSE 'ACTIVE' END,
                   s.started_at, s.started_at, 'webhook', '', false, '', true, s.subscriber_id, s.product_id,
                   s.store_product_id, 'production', 999, 'USD', 'month', 1, true, s.started_at + interval '30 days'
            FROM billing_subscription s WHERE s.status NOT IN ('EXPIRED', 'REVOKED')
            UNION ALL
            SELECT s.id, CASE WHEN s.status IN ('ACTIVE', 'TRIAL') THEN 'state' ELSE 'status' END,
                   CASE WHEN s.status = 'TRIAL' THEN 'TRIAL' ELSE 'ACTIVE' END, s.status,
                   coalesce(s.last_verified_at, s.started_at), coalesce(s.last_verified_at, s.started_at),
                   'webhook', '', false, '', true, s.subscriber_id, s.product_id, s.store_product_id, 'production',
                   999, 'USD', 'month', 1, s.auto_renew, s.expires_at
            FROM billing_subscription s""")
        step("ledger", """
            INSERT INTO billing_transaction (provider, provider_transaction_id, subscription_id, kind, amount_minor,
                currency, occurred_at, recorded_at, environment, order_id, line_item_id, charge_id, period_start,
                period_end, country, offer_kind, refers_to, store_product_id, settlement_currency, raw)
            SELECT provider, 'tx_' || id, id, 'purchase', 999, 'USD', started_at, started_at, 'production',
                   'order_' || id, '', '', started_at, started_at + interval '30 days', 'US', '', '',
                   store_product_id, '', '{}'::jsonb
            FROM billing_subscription
            UNION ALL
            SELECT provider, 'rn_' || id, id, 'renewal', 999, 'USD', last_verified_at, last_verified_at, 'production',
                   'order_rn_' || id, '', '', last_verified_at, expires_at, 'US', '', '', store_product_id, '',
                   '{}'::jsonb
            FROM billing_subscription WHERE status IN ('ACTIVE', 'CANCELED') AND last_verified_at IS NOT NULL""")
        step("outbox (published, last 7 days)", f"""
            INSERT INTO billing_outbox (event_id, subscription_id, payload, created_at, published_at, stream_id,
                attempts, last_error)
            SELECT gen_random_uuid(), g * 10, jsonb_build_object('userId', 'user-' || (g * 10 + 1) / 2),
                   now() - ((g * 40503) % 604800) * interval '1 second',
                   now() - ((g * 40503) % 604800) * interval '1 second', g || '-0', 1, ''
            FROM generate_series(1::bigint, {n // 10}) g""")
        step("webhook events (processed, last 7 days)", f"""
            INSERT INTO webhooks_webhookevent (provider, dedupe_key, event_type, status, body, headers, payload,
                payload_problem, store_ids, store_ids_text, environment, received_at, processed_at, attempts,
                done_while_failing, outcome, error, traceback)
            SELECT (ARRAY['stripe', 'apple', 'google', 'xsolla'])[g % 4 + 1], 'evt_' || g, 'renewal', 'processed',
                   '\\x7b7d', '{{}}', '{{}}', '', '[]', '', 'production',
                   now() - ((g * 40503) % 604800) * interval '1 second',
                   now() - ((g * 40503) % 604800) * interval '1 second', 1, '', '', '', ''
            FROM generate_series(1::bigint, {n // 10}) g""")
        for table in BIG_TABLES:
            conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        started = datetime.now(UTC)
        for statement in indexes:
            conn.execute(statement)
        for table, name, definition in constraints:
            conn.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
        log(f"  indexes and constraints: {(datetime.now(UTC) - started).total_seconds():.1f} s")
        due_items_refresh(conn, n)
        step("VACUUM ANALYZE", "VACUUM ANALYZE")
        conn.execute("CREATE TABLE bench_seed (version int, size bigint, seeded_at timestamptz)")
        conn.execute("INSERT INTO bench_seed VALUES (%s, %s, now())", (SEED_VERSION, n))


def due_items_refresh(conn: psycopg.Connection, n: int) -> None:
    """The last DUE_BLOCK subscriptions made due for the jobs, relative to now (k: the offset in the block):
    k < 200 lapsed but still ACTIVE (the expiry sweep); k < 450 due for a re-poll (expiring within 30 min
    and not confirmed for 2 days; 50 never confirmed); k < 550 Google purchases awaiting acknowledgement;
    k < 650 fifty users paying twice (pairs of live subscriptions of one user). And 500 outbox rows left
    unpublished 10 minutes ago. Idempotent."""
    first = n - DUE_BLOCK + 1
    conn.execute(f"""
        UPDATE billing_subscription s SET
            status = CASE WHEN k < 650 THEN 'ACTIVE' ELSE s.status END,
            replaced_by_id = NULL,
            grace_until = CASE WHEN k < 650 THEN NULL ELSE s.grace_until END,
            expires_at = CASE WHEN k < 200 THEN now() - interval '1 hour' - k * interval '1 minute'
                              WHEN k < 450 THEN now() + interval '10 minutes'
                              WHEN k < 650 THEN now() + interval '20 days'
                              ELSE s.expires_at END,
            last_verified_at = CASE WHEN k < 200 THEN now() - interval '2 hours'
                                    WHEN k < 400 THEN now() - interval '2 days'
                                    WHEN k < 450 THEN NULL
                                    WHEN k < 650 THEN now() - interval '1 hour'
                                    ELSE s.last_verified_at END,
            provider = CASE WHEN k >= 450 AND k < 550 THEN 'google' ELSE s.provider END,
            product_id = CASE WHEN k >= 450 AND k < 550 THEN (SELECT id FROM billing_product WHERE provider = 'google')
                              ELSE s.product_id END,
            acknowledged_at = CASE WHEN k >= 450 AND k < 550 THEN NULL ELSE s.acknowledged_at END,
            acknowledgement_due_at = CASE WHEN k >= 450 AND k < 550
                                          THEN now() + interval '2 days' - k * interval '1 minute'
                                          ELSE s.acknowledgement_due_at END
        FROM (SELECT id, id - {first} AS k FROM generate_series({first}, {n}) id) d
        WHERE s.id = d.id""")
    conn.execute("DELETE FROM billing_outbox WHERE published_at IS NULL")
    conn.execute(f"""
        INSERT INTO billing_outbox (event_id, subscription_id, payload, created_at, published_at, stream_id,
            attempts, last_error)
        SELECT gen_random_uuid(), id, jsonb_build_object('userId', 'user-' || (id + 1) / 2, 'newStatus', 'ACTIVE'),
               now() - interval '10 minutes', NULL, '', 0, ''
        FROM generate_series({first}, {first + 499}) id""")
    conn.execute("DELETE FROM billing_doublepayment")
