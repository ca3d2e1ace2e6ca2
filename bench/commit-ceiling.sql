-- One durable single-row commit per transaction: the Node original's event insert (the same
-- table, row and dedup key), run by pgbench from scripts/bench.sh as the machine's yardstick.
-- Every use of the variable is cast (a prepared statement's parameter needs a type), and no
-- `::` cast nor `:word` is written (pgbench would read `:text` or `:false` as a variable).
\set id random(1, 2000000000)
INSERT INTO entity_events (salon_id, resource, resource_id, status, data_hash, dedup_key, data, created_at)
VALUES (962302, 'record', CAST(:id AS text), 'create', md5(CAST(:id AS text)),
  md5(CAST(random() AS text) || CAST(clock_timestamp() AS text)),
  '{"id":' || CAST(:id AS text) || ',"datetime":"2026-12-01T12:00:00+03:00","client":{"name":"Клиент","phone":"79990000000"},"deleted": false}',
  now())
ON CONFLICT (dedup_key) DO NOTHING;
