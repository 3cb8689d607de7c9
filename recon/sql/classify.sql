-- One pass for one (channel, business date). Parameters are bound by recon/classify.py.
-- Every channel row of the date and every shop order in scope ends in exactly one result row.
-- Channels whose records carry no order number (on-chain USDT transfers) are matched the way
-- epusdt/TokenPay do: an order of this channel with the exact amount and currency, created before the
-- transfer and at most $match_window before it; the newest such order wins, each side used once.
CREATE OR REPLACE TEMP TABLE amount_matches AS
WITH candidates AS (
    SELECT t.txn_id, s.order_no,
           row_number() OVER (PARTITION BY t.txn_id ORDER BY s.created_at DESC, s.order_no) AS nth_order,
           row_number() OVER (PARTITION BY s.order_no ORDER BY t.occurred_at, t.txn_id) AS nth_transfer
    FROM channel_txn t
    JOIN (SELECT *, coalesce(other_order_no, unit_key) AS order_no FROM run_orders) s
      ON $match_window IS NOT NULL AND s.amount = t.amount AND s.currency = t.currency
     AND list_contains($pay_ids, s.pay_method)
     AND s.created_at <= t.occurred_at AND t.occurred_at <= s.created_at + $match_window
    WHERE t.channel = $channel AND t.business_date = $d AND t.order_no IS NULL AND t.kind = 'payment'
)
SELECT txn_id, order_no FROM candidates WHERE nth_order = 1 AND nth_transfer = 1;

-- Only the columns the pass reads (a channel of millions of rows: a copy of every column spilled to disk).
-- A row's natural key tells payments apart only where it has no transaction id, so only there is it kept.
CREATE OR REPLACE TEMP TABLE scope_rows AS
SELECT *, hash(unit_key) % $parts AS part FROM (
    SELECT t.txn_id, t.kind, coalesce(t.order_no, m.order_no) AS order_no, t.channel_txn_id,
           CASE WHEN t.channel_txn_id IS NULL THEN t.natural_key END AS natural_key,
           t.amount, t.currency, t.fee, t.status, t.occurred_at,
           coalesce(CASE WHEN $ci THEN upper(coalesce(t.order_no, m.order_no)) ELSE coalesce(t.order_no, m.order_no) END,
                    'txn:' || coalesce(t.channel_txn_id, t.natural_key)) AS unit_key,
           t.status IN ('success', 'refunded') AS settled
    FROM channel_txn t LEFT JOIN amount_matches m USING (txn_id)
    WHERE t.channel = $channel AND t.business_date = $d
);

-- Units of several rows (a payment and its refund, a payment paid twice): the few that need aggregating.
CREATE OR REPLACE TEMP TABLE multi_row_units AS
SELECT unit_key FROM scope_rows GROUP BY unit_key HAVING count(*) > 1;

-- One statement from here on: the unit's shop orders, the per-unit aggregates and their codes stream
-- into results without being materialised as temp tables first. It runs once per group of the run's
-- parts ($group of $groups; parts are cut by the unit key's hash: see recon/classify.py UNITS_PER_PART).
INSERT INTO results
WITH
-- pending orders of earlier dates: still open, or closed by a run of this date (so a rerun keeps them)
carried AS (
    SELECT e.key AS unit_key FROM exceptions e
    WHERE e.channel = $channel AND e.code = 'pending' AND e.business_date < $d
      AND (e.status = 'open' OR e.id IN (
            SELECT v.exception_id FROM exception_events v JOIN runs r USING (run_id)
            WHERE v.action = 'auto_closed' AND r.business_date = $d))
),
-- The shop orders this (channel, date) answers for: those whose money was booked here (the places of each
-- order's money are joined to run_orders once per run, so only the few orders booked in several places
-- are looked up), carried ones, amount-matched ones, and this channel's orders of the day whose money
-- was booked nowhere. An order whose money was booked on another channel or date belongs to that run.
scope_orders AS (
    SELECT k.* EXCLUDE (other_order_no), coalesce(k.other_order_no, k.unit_key) AS order_no,
           k.unit_key IN (SELECT unit_key FROM carried) AS carried,
           k.created_at >= $day_start AND k.created_at < $day_end AS own_date
    FROM run_orders k
    WHERE k.part % $groups = $group AND (
          (k.booked_channel = $channel AND k.booked_date = $d)
       OR k.unit_key IN (SELECT unit_key FROM scope_rows WHERE unit_key IN (SELECT unit_key FROM run_booked_in_several))
       OR k.unit_key IN (SELECT unit_key FROM carried)
       OR k.unit_key IN (SELECT CASE WHEN $ci THEN upper(order_no) ELSE order_no END FROM amount_matches)
       OR (NOT k.booked AND list_contains($pay_ids, k.pay_method)
           AND k.created_at >= $day_start AND k.created_at < $day_end))
),
unit_rows AS (
-- A unit of one row, as almost every unit is, aggregates to its own values: the same columns as the
-- grouped branch below gives for it, without a hash table over millions of units.
SELECT unit_key,
       txn_id AS one_txn_id,
       NULL::BIGINT[] AS txn_ids,
       order_no,
       CASE WHEN settled THEN amount ELSE 0 END AS channel_amount,
       CASE WHEN kind = 'payment' AND settled THEN 1 ELSE 0 END AS n_paid,
       CASE WHEN kind = 'payment' AND settled THEN amount END AS paid,
       CASE WHEN kind = 'refund' AND settled THEN amount END AS refunded,
       CASE WHEN kind = 'payment' AND status = 'refunded' THEN 1 ELSE 0 END AS n_refunded_payments,
       CASE WHEN status = 'pending' THEN 1 ELSE 0 END AS n_pending,
       CASE WHEN kind = 'payment' AND settled THEN channel_txn_id END AS paid_txn_id,
       channel_txn_id AS any_txn_id,
       currency,
       1 AS n_currencies,
       CASE WHEN kind = 'payment' AND settled THEN fee END AS fee,
       occurred_at
FROM scope_rows
WHERE part % $groups = $group AND unit_key NOT IN (SELECT unit_key FROM multi_row_units)
UNION ALL
SELECT unit_key,
       NULL::BIGINT AS one_txn_id,
       list_sort(list(txn_id)) AS txn_ids,
       min(order_no) AS order_no,
       coalesce(sum(amount) FILTER (WHERE settled), 0) AS channel_amount,
       count(DISTINCT coalesce(channel_txn_id, natural_key)) FILTER (WHERE kind = 'payment' AND settled) AS n_paid,
       sum(amount) FILTER (WHERE kind = 'payment' AND settled) AS paid,
       sum(amount) FILTER (WHERE kind = 'refund' AND settled) AS refunded,
       -- a payment reported as refunded without a refund row of its own (Epay's V1 order list)
       count(*) FILTER (WHERE kind = 'payment' AND status = 'refunded') AS n_refunded_payments,
       count(*) FILTER (WHERE status = 'pending') AS n_pending,
       min(channel_txn_id) FILTER (WHERE kind = 'payment' AND settled) AS paid_txn_id,
       min(channel_txn_id) AS any_txn_id,
       min(currency) AS currency,
       count(DISTINCT currency) AS n_currencies,
       sum(fee) FILTER (WHERE kind = 'payment' AND settled) AS fee,
       min(occurred_at) AS occurred_at
FROM scope_rows
WHERE part % $groups = $group AND unit_key IN (SELECT unit_key FROM multi_row_units)
GROUP BY unit_key
),
joined AS (
    SELECT coalesce(u.unit_key, o.unit_key) AS unit_key,
           u.unit_key IS NOT NULL AS has_rows, o.unit_key IS NOT NULL AS has_order,
           -- the unit's rows as a list only once joined: lists carried through the join cost a fifth of it
           u.one_txn_id, u.txn_ids AS several_txn_ids,
           coalesce(o.order_no, u.order_no) AS order_no,
           coalesce(u.paid_txn_id, u.any_txn_id) AS channel_txn_id,
           coalesce(u.channel_amount, 0) AS channel_amount,
           coalesce(u.n_paid, 0) AS n_paid, u.paid, u.refunded, coalesce(u.n_pending, 0) AS n_pending,
           coalesce(u.n_refunded_payments, 0) AS n_refunded_payments,
           u.currency, coalesce(u.n_currencies, 0) AS n_currencies, u.fee, u.occurred_at,
           o.amount AS order_amount, o.currency AS shop_currency, o.status AS order_status, o.shop_status,
           o.channel_txn_id AS shop_channel_txn_id, o.created_at, o.own_date, o.carried,
           list_contains($money_in, o.status) AS money_in
    FROM unit_rows u FULL OUTER JOIN scope_orders o USING (unit_key)
),
coded AS (
    SELECT *,
        CASE
            -- a lone failed or closed try moved no money: nothing for the manual match queue
            WHEN NOT has_order THEN CASE WHEN n_pending > 0 AND n_paid = 0 THEN 'pending'
                                         WHEN n_paid = 0 AND refunded IS NULL THEN 'unpaid'
                                         ELSE 'channel_only' END
            WHEN NOT has_rows THEN CASE
                WHEN NOT money_in THEN 'unpaid'
                WHEN $incomplete OR created_at >= $grace_start THEN 'pending'
                ELSE 'shop_only' END
            WHEN n_paid > 1 THEN 'duplicate_payment'
            WHEN n_currencies > 1 OR currency <> shop_currency THEN 'currency_mismatch'
            WHEN n_paid = 1 AND abs(paid - order_amount) > $tol THEN 'amount_mismatch'
            WHEN n_paid = 1 AND order_status IN ('pending', 'expired', 'canceled') THEN 'missing_callback'
            WHEN (coalesce(refunded, 0) <> 0 OR n_refunded_payments > 0) AND order_status <> 'refunded'
                THEN 'refund_not_reflected'
            WHEN n_paid = 0 AND n_pending > 0 THEN 'pending'
            -- only failed/closed tries: the money may still land after midnight, as with no record at all
            WHEN n_paid = 0 AND refunded IS NULL THEN CASE
                WHEN NOT money_in THEN 'unpaid'
                WHEN $incomplete OR created_at >= $grace_start THEN 'pending'
                ELSE 'shop_only' END
            WHEN order_status = 'delivery_failed' THEN 'paid_not_delivered'
            WHEN n_paid = 1 AND shop_channel_txn_id IS NOT NULL AND shop_channel_txn_id <> channel_txn_id
                THEN 'trade_no_mismatch'
            WHEN n_paid = 1 AND $fee_rate IS NOT NULL AND fee IS NOT NULL
                 AND abs(fee - round(paid * $fee_rate, 2)) > $fee_tol THEN 'fee_mismatch'
            ELSE 'matched'
        END AS code,
        -- what the shop accounts for in this unit: the order's price when it believes the money came
        -- in and the money belongs to this date, less any refund it knows of
        CASE WHEN has_order AND money_in AND (n_paid > 0 OR own_date OR carried OR NOT has_rows)
             THEN order_amount ELSE 0 END
          + CASE WHEN order_status = 'refunded' THEN coalesce(refunded, 0) ELSE 0 END AS shop_amount
    FROM joined
),
unit_results AS (
SELECT *,
    code IN ('missing_callback', 'paid_not_delivered')
      AND paid = order_amount AND coalesce(refunded, 0) = 0 AND n_refunded_payments = 0
      AND ((code = 'missing_callback' AND list_contains($repairable_missing, shop_status))
        OR (code = 'paid_not_delivered' AND list_contains($repairable_undelivered, shop_status)))
      AND $auto_repair_max IS NOT NULL AND order_amount <= $auto_repair_max AS auto_repairable,
    CASE WHEN $fee_rate IS NOT NULL AND paid IS NOT NULL THEN round(paid * $fee_rate, 2) END AS expected_fee
FROM coded
)
SELECT $run_id, $channel, $d, r.code, r.unit_key, r.order_no, r.channel_txn_id,
       CASE WHEN r.one_txn_id IS NOT NULL THEN [r.one_txn_id] ELSE coalesce(r.several_txn_ids, []::BIGINT[]) END,
       r.shop_amount, r.channel_amount, r.channel_amount - r.shop_amount,
       r.currency, r.shop_currency, r.shop_status, r.shop_channel_txn_id, r.fee, r.expected_fee,
       r.occurred_at, r.created_at, p.priority, coalesce(r.auto_repairable, false),
       CASE r.code
           WHEN 'missing_callback' THEN format('channel paid {} but the shop order is still status {}',
                money(r.paid), r.shop_status)
                -- within the tolerance, yet not equal to the cent: never repaired automatically (DESIGN §6.1)
                || CASE WHEN r.paid <> r.order_amount THEN format('; the order asks {}, so it is not repaired '
                        'automatically', money(r.order_amount)) ELSE '' END
           WHEN 'paid_not_delivered' THEN format('paid {}, shop status {}: goods not delivered',
                money(r.paid), r.shop_status)
           WHEN 'amount_mismatch' THEN format('channel paid {}, order asks {}', money(r.paid), money(r.order_amount))
           WHEN 'currency_mismatch' THEN format('channel currency {}, order currency {}', r.currency, r.shop_currency)
           WHEN 'duplicate_payment' THEN format('{} payments totalling {} for one order of {}', r.n_paid,
                money(r.paid), money(r.order_amount))
           WHEN 'shop_only' THEN format('shop status {} ({}), no channel record on a complete bill',
                r.shop_status, money(r.order_amount))
           WHEN 'channel_only' THEN format('channel moved {} with no matching shop order', money(r.channel_amount))
           WHEN 'refund_not_reflected' THEN format('channel refunded {}, shop status {}',
                CASE WHEN r.refunded IS NULL THEN 'the payment' ELSE money(-r.refunded) END, r.shop_status)
           WHEN 'trade_no_mismatch' THEN format('shop recorded {}, channel reports {}', r.shop_channel_txn_id,
                r.channel_txn_id)
           WHEN 'fee_mismatch' THEN format('fee {} where the configured rate gives {}', exact_money(r.fee),
                money(r.expected_fee))
           WHEN 'pending' THEN CASE WHEN $incomplete THEN 'the channel records for this date are not all in yet'
                WHEN r.n_pending > 0 THEN 'the channel record is not final yet'
                ELSE 'created near the day boundary: may be booked in the next day''s bill' END
       END
FROM unit_results r LEFT JOIN code_priority p USING (code);
