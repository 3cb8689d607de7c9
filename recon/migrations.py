"""Versioned schema of the store. Append a migration; never edit one that has shipped.

Table and column names of channel_txn, shop_orders, imports, runs, results, exceptions,
exception_events and repairs are a public contract (DESIGN §3, §5): finance's own SQL reads them.
"""

from __future__ import annotations

MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE SEQUENCE import_ids START 1;
        CREATE SEQUENCE txn_ids START 1;
        CREATE SEQUENCE run_ids START 1;
        CREATE SEQUENCE exception_ids START 1;
        CREATE SEQUENCE event_ids START 1;
        CREATE SEQUENCE repair_ids START 1;

        CREATE TABLE imports (
            import_id      BIGINT PRIMARY KEY,
            channel        VARCHAR NOT NULL,
            sha256         VARCHAR NOT NULL UNIQUE,
            file_name      VARCHAR NOT NULL,
            archive_path   VARCHAR NOT NULL,
            size_bytes     BIGINT NOT NULL,
            source         VARCHAR NOT NULL,          -- 'file' or 'api:<endpoint>'
            rows_total     BIGINT NOT NULL,
            rows_new       BIGINT NOT NULL,
            rows_duplicate BIGINT NOT NULL,
            period_start   DATE,
            period_end     DATE,
            merchant_id    VARCHAR,
            imported_at    TIMESTAMPTZ NOT NULL
        );

        CREATE TABLE channel_txn (
            txn_id         BIGINT PRIMARY KEY,
            channel        VARCHAR NOT NULL,
            kind           VARCHAR NOT NULL,          -- payment | refund | fee | adjustment
            order_no       VARCHAR,
            channel_txn_id VARCHAR,
            refund_id      VARCHAR,
            amount         DECIMAL(20,6) NOT NULL,    -- merchant's side: payments +, refunds -
            currency       VARCHAR NOT NULL,
            fee            DECIMAL(20,6),             -- + when charged
            status         VARCHAR NOT NULL,          -- success | refunded | closed | pending | failed
            occurred_at    TIMESTAMPTZ NOT NULL,
            business_date  DATE NOT NULL,             -- in the channel's zone
            counterparty   VARCHAR,
            source         VARCHAR NOT NULL,          -- file sha256 or api:<endpoint>
            line_no        BIGINT,
            import_id      BIGINT NOT NULL,
            natural_key    VARCHAR NOT NULL,
            upstream_txn_id VARCHAR,                  -- an aggregator's upstream trade no (Epay api_trade_no)
            UNIQUE (channel, natural_key)
        );

        -- Rows of an import that repeat a record already held: kept, never silently dropped.
        CREATE TABLE import_duplicates (
            import_id      BIGINT NOT NULL,
            line_no        BIGINT,
            channel        VARCHAR NOT NULL,
            natural_key    VARCHAR NOT NULL,
            duplicate_of   VARCHAR NOT NULL           -- "<file>:<line>" of the row kept
        );

        CREATE TABLE shop_orders (
            order_no       VARCHAR NOT NULL,
            amount         DECIMAL(20,6) NOT NULL,    -- what the buyer must pay
            currency       VARCHAR NOT NULL,
            status         VARCHAR NOT NULL,          -- pending | paid | delivered | delivery_failed | expired | refunded | canceled
            shop_status    VARCHAR NOT NULL,          -- the shop's own value
            pay_method     VARCHAR,
            channel        VARCHAR,
            channel_txn_id VARCHAR,
            created_at     TIMESTAMPTZ NOT NULL,
            paid_at        TIMESTAMPTZ,
            buyer_contact  VARCHAR,
            goods_kind     VARCHAR,                   -- auto | manual
            quantity       INTEGER,
            title          VARCHAR,
            loaded_at      TIMESTAMPTZ NOT NULL
        );

        CREATE TABLE runs (
            run_id         BIGINT PRIMARY KEY,
            business_date  DATE NOT NULL,
            channels       VARCHAR[] NOT NULL,
            status         VARCHAR NOT NULL,          -- running | succeeded | failed | aborted
            command        VARCHAR NOT NULL,
            pid            INTEGER NOT NULL,
            host           VARCHAR NOT NULL,
            started_at     TIMESTAMPTZ NOT NULL,
            finished_at    TIMESTAMPTZ,
            incomplete_channels VARCHAR[],            -- channels whose records for the date were not all in
            error          VARCHAR
        );

        CREATE TABLE results (
            run_id         BIGINT NOT NULL,
            channel        VARCHAR NOT NULL,
            business_date  DATE NOT NULL,
            code           VARCHAR NOT NULL,
            unit_key       VARCHAR NOT NULL,          -- order_no, or txn:<channel_txn_id> for rows without one
            order_no       VARCHAR,
            channel_txn_id VARCHAR,
            txn_ids        BIGINT[] NOT NULL,         -- channel_txn rows explained by this result
            shop_amount    DECIMAL(20,6) NOT NULL,
            channel_amount DECIMAL(20,6) NOT NULL,
            diff           DECIMAL(20,6) NOT NULL,    -- channel_amount - shop_amount
            currency       VARCHAR,
            shop_currency  VARCHAR,
            shop_status    VARCHAR,
            shop_channel_txn_id VARCHAR,
            fee            DECIMAL(20,6),
            expected_fee   DECIMAL(20,6),
            occurred_at    TIMESTAMPTZ,
            created_at     TIMESTAMPTZ,
            priority       INTEGER,
            auto_repairable BOOLEAN NOT NULL,
            detail         VARCHAR
        );

        CREATE TABLE exceptions (
            id             BIGINT PRIMARY KEY,
            channel        VARCHAR NOT NULL,
            key            VARCHAR NOT NULL,
            code           VARCHAR NOT NULL,
            status         VARCHAR NOT NULL,          -- open | repaired | resolved | ignored
            priority       INTEGER NOT NULL,          -- 1 most urgent
            order_no       VARCHAR,
            channel_txn_id VARCHAR,
            shop_amount    DECIMAL(20,6),
            channel_amount DECIMAL(20,6),
            currency       VARCHAR,
            business_date  DATE NOT NULL,
            first_seen_run BIGINT NOT NULL,
            last_seen_run  BIGINT NOT NULL,
            first_seen     TIMESTAMPTZ NOT NULL,
            last_seen      TIMESTAMPTZ NOT NULL,
            auto_repairable BOOLEAN NOT NULL,
            suggested_action VARCHAR NOT NULL,
            detail         VARCHAR,
            closed_by      VARCHAR,                   -- who last moved it out of open: 'recon' or a person
            UNIQUE (channel, key, code)
        );

        CREATE TABLE exception_events (
            event_id       BIGINT PRIMARY KEY,
            exception_id   BIGINT NOT NULL,
            event_at       TIMESTAMPTZ NOT NULL,
            actor          VARCHAR NOT NULL,
            action         VARCHAR NOT NULL,          -- opened | reopened | auto_closed | resolved | ignored | repaired
            run_id         BIGINT,
            note           VARCHAR
        );

        CREATE TABLE repairs (
            repair_id      BIGINT PRIMARY KEY,
            idempotency_key VARCHAR NOT NULL UNIQUE,
            exception_id   BIGINT,
            shop           VARCHAR NOT NULL,
            order_no       VARCHAR NOT NULL,
            channel_txn_id VARCHAR,
            action         VARCHAR NOT NULL,
            state          VARCHAR NOT NULL,          -- started | applied | failed | unknown
            actor          VARCHAR NOT NULL,
            reason         VARCHAR,
            created_at     TIMESTAMPTZ NOT NULL,
            updated_at     TIMESTAMPTZ NOT NULL,
            detail         VARCHAR
        );
        """,
    ),
    (
        2,
        """
        -- What kind of pass a run was: a reconciliation of a business date, or an intraday sweep.
        ALTER TABLE runs ADD COLUMN kind VARCHAR DEFAULT 'reconcile';
        UPDATE runs SET kind = 'reconcile';

        -- The scheduler's journal: each job's passes and outcomes (the runs table decides what is done).
        CREATE SEQUENCE job_run_ids START 1;
        CREATE TABLE job_runs (
            job_run_id     BIGINT PRIMARY KEY,
            job_id         VARCHAR NOT NULL,          -- nightly:<channel> | retry | sweep
            channel        VARCHAR,
            business_date  DATE,
            started_at     TIMESTAMPTZ NOT NULL,
            finished_at    TIMESTAMPTZ NOT NULL,
            outcome        VARCHAR NOT NULL,          -- succeeded | incomplete | failed | gave_up | swept
            run_id         BIGINT,
            detail         VARCHAR
        );

        -- Pending shop orders the sweep has asked their channel about, for its backoff.
        CREATE TABLE sweep_checks (
            channel        VARCHAR NOT NULL,
            order_no       VARCHAR NOT NULL,
            first_checked  TIMESTAMPTZ NOT NULL,
            last_checked   TIMESTAMPTZ NOT NULL,
            checks         INTEGER NOT NULL,
            last_state     VARCHAR NOT NULL,          -- the channel's answer: paid | unpaid | not_found | error …
            PRIMARY KEY (channel, order_no)
        );
        """,
    ),
    (
        3,
        """
        -- channel_txn without its indexes: maintaining UNIQUE (channel, natural_key) and the primary key
        -- cost as much as the rest of an import of millions of rows. The import keeps the rule itself
        -- (recon/importer.py: a row whose key the store or the file already holds is recorded in
        -- import_duplicates, never inserted) under the store's single-writer lock, and txn_id comes from
        -- the txn_ids sequence, so the indexes only ever re-checked what was already so.
        CREATE TABLE channel_txn_v3 (
            txn_id         BIGINT NOT NULL,
            channel        VARCHAR NOT NULL,
            kind           VARCHAR NOT NULL,
            order_no       VARCHAR,
            channel_txn_id VARCHAR,
            refund_id      VARCHAR,
            amount         DECIMAL(20,6) NOT NULL,
            currency       VARCHAR NOT NULL,
            fee            DECIMAL(20,6),
            status         VARCHAR NOT NULL,
            occurred_at    TIMESTAMPTZ NOT NULL,
            business_date  DATE NOT NULL,
            counterparty   VARCHAR,
            source         VARCHAR NOT NULL,
            line_no        BIGINT,
            import_id      BIGINT NOT NULL,
            natural_key    VARCHAR NOT NULL,
            upstream_txn_id VARCHAR
        );
        INSERT INTO channel_txn_v3 SELECT * FROM channel_txn ORDER BY txn_id;
        DROP TABLE channel_txn;
        ALTER TABLE channel_txn_v3 RENAME TO channel_txn;
        """,
    ),
    (
        4,
        """
        -- What each run found, per channel, code and currency, written with its results. Reports (their counts and
        -- the trend of the last 30 runs) and the console's runs page read it: counting the result rows of 30 runs
        -- of ten million orders each read 300 M rows for every report and every page shown.
        CREATE TABLE run_counts (
            run_id         BIGINT NOT NULL,
            channel        VARCHAR NOT NULL,
            code           VARCHAR NOT NULL,
            currency       VARCHAR,                   -- the channel's, else the shop's
            results        BIGINT NOT NULL,           -- result rows
            amount         DECIMAL(38,6) NOT NULL,    -- Σ channel_amount, or shop_amount where the channel moved none
            difference     DECIMAL(38,6) NOT NULL     -- Σ diff
        );
        INSERT INTO run_counts
        SELECT run_id, channel, code, coalesce(currency, shop_currency), count(*),
               sum(CASE WHEN channel_amount <> 0 THEN channel_amount ELSE shop_amount END), sum(diff)
        FROM results GROUP BY ALL;

        -- What the exception sheets show of the run that last saw an exception, kept on the exception: each
        -- report joined every open exception to the results of every run ever kept to find them.
        ALTER TABLE exceptions ADD COLUMN shop_status VARCHAR;
        ALTER TABLE exceptions ADD COLUMN shop_channel_txn_id VARCHAR;
        ALTER TABLE exceptions ADD COLUMN occurred_at TIMESTAMPTZ;
        UPDATE exceptions e
        SET shop_status = r.shop_status, shop_channel_txn_id = r.shop_channel_txn_id, occurred_at = r.occurred_at
        FROM results r
        WHERE r.run_id = e.last_seen_run AND r.channel = e.channel AND r.unit_key = e.key AND r.code = e.code;
        """,
    ),
]
