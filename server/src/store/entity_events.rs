//! Entity webhooks (records, clients, …): stored once under a unique key, and a `record` also
//! upserts the bookings projection, in one transaction.

use super::{storable_text, Store, StoreError};
use crate::db::entities::records;
use crate::domain::sha256_hex;
use app::domain::SalonId;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter, QueryTrait, Set,
    Statement, TransactionTrait,
};
use serde_json::Value;
use std::collections::{HashMap, HashSet};

/// An entity event as YClients sent it, already authenticated and validated.
#[derive(Debug, Clone)]
pub struct EntityEvent {
    pub resource: String,
    pub resource_id: String,
    /// `create`, `update` or `delete`.
    pub status: String,
    pub data: Value,
}

impl EntityEvent {
    /// The booking a `record` event is about, as the bookings projection keys it (`"0123"` and
    /// `123` are one booking); `None` for other resources and ids that are not numbers.
    pub fn booking_id(&self) -> Option<i64> {
        (self.resource == "record")
            .then(|| self.resource_id.parse::<i64>().ok())
            .flatten()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    New,
    Duplicate,
    /// Not stored: the salon's app was uninstalled after the event was authenticated.
    NotInstalled,
}

fn truncated(value: &str, max: usize) -> String {
    storable_text(value).chars().take(max).collect()
}

/// Events looked at and deleted per statement by [`Store::prune_entity_events`].
const PRUNE_PAGE: u64 = 500;

impl Store {
    /// Deletes the entity events stored more than `keep` ago (by the store's clock), oldest
    /// first, a page per statement; returns how many went. The bookings projection and the
    /// messages are not touched: they are what the events were stored for.
    ///
    /// A page is the oldest rows by id, and only its leading run of old rows goes, by id: ids
    /// and storage times rise together except across writers committing side by side, so a
    /// slightly younger row ahead of older ones only ends this pass early (the next pass takes
    /// them), and no pass ever scans the table for old rows among new ones.
    pub async fn prune_entity_events(&self, keep: std::time::Duration) -> Result<u64, StoreError> {
        use crate::db::entities::entity_events;
        use sea_orm::{QueryOrder, QuerySelect};
        // A `keep` reaching before the calendar's start keeps everything.
        let Some(cutoff) = chrono::Duration::from_std(keep)
            .ok()
            .and_then(|keep| self.clock.now().checked_sub_signed(keep))
        else {
            return Ok(0);
        };
        let mut deleted = 0;
        loop {
            let page: Vec<(i32, chrono::DateTime<chrono::Utc>)> = entity_events::Entity::find()
                .select_only()
                .column(entity_events::Column::Id)
                .column(entity_events::Column::CreatedAt)
                .order_by_asc(entity_events::Column::Id)
                .limit(PRUNE_PAGE)
                .into_tuple()
                .all(&self.db)
                .await?;
            let old: Vec<i32> = page
                .iter()
                .take_while(|(_, stored)| *stored < cutoff)
                .map(|(id, _)| *id)
                .collect();
            if old.is_empty() {
                break;
            }
            let whole_page = old.len() == page.len();
            deleted += entity_events::Entity::delete_many()
                .filter(entity_events::Column::Id.is_in(old))
                .exec(&self.db)
                .await?
                .rows_affected;
            if !whole_page {
                break;
            }
        }
        Ok(deleted)
    }

    /// Stores the event once (a repeat is a [`Stored::Duplicate`] that changes nothing).
    pub async fn store_entity_event(
        &self,
        salon: SalonId,
        event: &EntityEvent,
    ) -> Result<Stored, StoreError> {
        let stored = self
            .store_entity_events(std::slice::from_ref(&(salon, event.clone())))
            .await?;
        Ok(stored.first().copied().unwrap_or(Stored::Duplicate))
    }

    /// Stores a batch of events in one transaction (the group commit): each event once, a
    /// repeat — of a stored event or of one earlier in the batch — a [`Stored::Duplicate`]. One
    /// answer per event, in order; nothing is stored if the transaction fails.
    ///
    /// The statements are per batch, not per event: one multi-row insert of the events for the
    /// salons still installed (its `RETURNING` names the new ones and those salons), one read of
    /// the bookings, salons and message settings the batch's `record` events touch, then the
    /// bookings and their messages written together. An event of a salon uninstalled since it
    /// was authenticated is [`Stored::NotInstalled`].
    pub async fn store_entity_events(
        &self,
        batch: &[(SalonId, EntityEvent)],
    ) -> Result<Vec<Stored>, StoreError> {
        let now = self.clock.now();
        let rows: Vec<EventRow> = batch
            .iter()
            .map(|(salon, event)| EventRow::new(*salon, event))
            .collect();
        let txn = self.db.begin().await?;
        let all: Vec<&EventRow> = rows.iter().collect();
        let Inserted {
            mut new_keys,
            installed,
        } = insert_event_rows(&txn, &all, now).await?;
        // A booking back in a state it had: the row stored for that content before keeps its
        // place in the log under a retired key, and the event is stored anew (and applied).
        let returned = booking_states_returned_to(&txn, &rows, &installed, &new_keys, now).await?;
        if !returned.is_empty() {
            retire_keys(&txn, &returned).await?;
            let again: Vec<&EventRow> = rows
                .iter()
                .filter(|row| returned.contains(&row.dedup_key))
                .collect();
            new_keys.extend(insert_event_rows(&txn, &again, now).await?.new_keys);
        }
        // The first of the batch's events under a new key is the one stored; the rest repeat it.
        let answers: Vec<Stored> = rows
            .iter()
            .map(|row| {
                if !installed.contains(&row.salon.get()) {
                    Stored::NotInstalled
                } else if new_keys.remove(&row.dedup_key) {
                    Stored::New
                } else {
                    Stored::Duplicate
                }
            })
            .collect();
        let bookings: Vec<(SalonId, i64, &EntityEvent)> = batch
            .iter()
            .zip(&answers)
            .filter(|(_, stored)| **stored == Stored::New)
            .filter_map(|((salon, event), _)| Some((*salon, event.booking_id()?, event)))
            .collect();
        #[cfg(feature = "bench-ceiling")]
        let bookings =
            if crate::bench_ceiling::ceiling() == crate::bench_ceiling::Ceiling::EventAlone {
                Vec::new()
            } else {
                bookings
            };
        if !bookings.is_empty() {
            apply_bookings(&txn, &bookings, now).await?;
        }
        txn.commit().await?;
        for ((salon, _), stored) in batch.iter().zip(&answers) {
            if *stored == Stored::NotInstalled {
                // Uninstalled on another instance: its URL is refused here from now on too.
                self.secrets.forget(*salon);
            }
        }
        Ok(answers)
    }
}

/// How long after an event's first delivery the same event again is YClients retrying it. YClients
/// sends an entity event about 5 s after the change and retries twice, 1.5 s apart, after a
/// 10-s timeout (`yclients-api.md`, §4.2): its last retry comes within ~40 s. The same content
/// later than this is the entity changed back to a state it had before.
const RETRY_HORIZON: std::time::Duration = std::time::Duration::from_secs(120);

/// The batch's `record` events that repeat an event stored more than [`RETRY_HORIZON`] ago: not
/// a retry but the booking returned to an earlier state (moved to 15:00, back to 14:00, and to
/// 15:00 again — the last event byte for byte the second). The dedup key is the event's content,
/// and YClients' events carry no delivery id, so only the time tells the two apart; such an
/// event was answered as a duplicate and never applied, and the booking stayed at 14:00, its
/// reminders with it. Nothing is read when the batch repeated nothing.
async fn booking_states_returned_to<C: ConnectionTrait>(
    txn: &C,
    rows: &[EventRow],
    installed: &HashSet<i64>,
    new_keys: &HashSet<String>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<HashSet<String>, DbErr> {
    use crate::db::entities::entity_events;
    use sea_orm::QuerySelect;
    let repeats: Vec<&str> = unique(
        rows.iter()
            .filter(|row| row.booking && installed.contains(&row.salon.get()))
            .filter(|row| !new_keys.contains(&row.dedup_key))
            .map(|row| row.dedup_key.as_str()),
    );
    let mut returned = HashSet::new();
    if repeats.is_empty() {
        return Ok(returned);
    }
    let Some(cutoff) = chrono::Duration::from_std(RETRY_HORIZON)
        .ok()
        .and_then(|horizon| now.checked_sub_signed(horizon))
    else {
        return Ok(returned);
    };
    for keys in repeats.chunks(ROWS_PER_STATEMENT) {
        let stored: Vec<(String, chrono::DateTime<chrono::Utc>)> = entity_events::Entity::find()
            .select_only()
            .column(entity_events::Column::DedupKey)
            .column(entity_events::Column::CreatedAt)
            .filter(entity_events::Column::DedupKey.is_in(keys.iter().cloned()))
            .into_tuple()
            .all(txn)
            .await?;
        returned.extend(
            stored
                .into_iter()
                .filter(|(_, at)| *at < cutoff)
                .map(|(key, _)| key),
        );
    }
    Ok(returned)
}

/// Frees `keys` for the events stored again under them: the rows stored under them before stay,
/// under `key#id`, which no event's key can be (a key is 64 hex digits).
async fn retire_keys<C: ConnectionTrait>(txn: &C, keys: &HashSet<String>) -> Result<(), DbErr> {
    use crate::db::entities::entity_events;
    use sea_orm::sea_query::Expr;
    let mut keys: Vec<&String> = keys.iter().collect();
    // In key order, as every write of the batch is (see `insert_event_rows`).
    keys.sort_unstable();
    for chunk in keys.chunks(ROWS_PER_STATEMENT) {
        entity_events::Entity::update_many()
            .col_expr(
                entity_events::Column::DedupKey,
                Expr::cust("dedup_key || '#' || CAST(id AS TEXT)"),
            )
            .filter(entity_events::Column::DedupKey.is_in(chunk.iter().map(|key| key.as_str())))
            .exec(txn)
            .await?;
    }
    Ok(())
}

/// At most this many rows in one multi-row statement (SQLite allows 32,766 bound values in a
/// statement, PostgreSQL 65,535; the widest row written this way has 17 columns).
pub(super) const ROWS_PER_STATEMENT: usize = 500;

/// One event as its row is written.
struct EventRow {
    salon: SalonId,
    resource: String,
    resource_id: String,
    status: String,
    data_hash: String,
    dedup_key: String,
    data: String,
    /// A `record` event: the bookings projection applies it.
    booking: bool,
}

impl EventRow {
    fn new(salon: SalonId, event: &EntityEvent) -> Self {
        // PostgreSQL's text refuses U+0000: JSON keeps it escaped (`\u0000`), so the stored data
        // is the same JSON; only bare strings need replacing.
        let data = event.data.to_string();
        let data_hash = sha256_hex(&data);
        let dedup_key = sha256_hex(format!(
            "{}|{}|{}|{}|{}",
            salon, event.resource, event.resource_id, event.status, data_hash
        ));
        Self {
            salon,
            resource: truncated(&event.resource, 64),
            resource_id: truncated(&event.resource_id, 64),
            status: event.status.clone(),
            data_hash,
            dedup_key,
            data: storable_text(&data).into_owned(),
            booking: event.booking_id().is_some(),
        }
    }
}

/// What the batch's first statement found: the keys it stored, and the salons it may store for.
struct Inserted {
    new_keys: HashSet<String>,
    /// The batch's salons whose app is installed (a confirmed webhook secret), held so until the
    /// transaction ends: an uninstall waits for the batch, or the batch sees the uninstall.
    installed: HashSet<i64>,
}

/// Inserts the rows whose key is not stored yet, for the salons whose app is still installed;
/// returns the keys that were new and those salons.
///
/// An event is authenticated before it waits for its batch, and an uninstall can land in that
/// wait: it deletes the salon's events and forgets its clients, and a batch committed after it
/// would put one event's data back (and schedule a message to its client). So the insert keeps
/// only the events of salons that still hold a webhook secret, read in the same statement. On
/// PostgreSQL that read locks the salons' rows (`FOR KEY SHARE`) until the batch commits, and the
/// uninstall locks its salon's row first (`FOR UPDATE`): one of the two waits for the other, so
/// the batch either commits before the uninstall forgets (which then forgets its rows too) or
/// sees the secret gone. SQLite runs one writing transaction at a time, and the insert is the
/// transaction's first statement, so it reads the latest state under the write lock (and reads
/// the salons again after it, under the same lock).
async fn insert_event_rows<C: ConnectionTrait>(
    txn: &C,
    rows: &[&EventRow],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Inserted, DbErr> {
    let backend = txn.get_database_backend();
    let postgres = backend == DbBackend::Postgres;
    let mut inserted = Inserted {
        new_keys: HashSet::with_capacity(rows.len()),
        installed: HashSet::new(),
    };
    // In key order, each key once: two transactions holding some of the same events (two
    // instances, one booking's deliveries landing on both) then wait for each other's rows in
    // the same order and never deadlock.
    let mut rows: Vec<&EventRow> = rows.to_vec();
    rows.sort_unstable_by(|a, b| a.dedup_key.cmp(&b.dedup_key));
    rows.dedup_by(|a, b| a.dedup_key == b.dedup_key);
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let salons = unique(chunk.iter().map(|row| row.salon.get()));
        let mut values: Vec<sea_orm::Value> = Vec::with_capacity(salons.len() + chunk.len() * 8);
        let mut n = 0;
        let mut placeholder = || {
            n += 1;
            if postgres {
                format!("${n}")
            } else {
                "?".to_owned()
            }
        };
        // The values in the order their placeholders appear (SQLite's `?` are positional).
        let tuples = chunk
            .iter()
            .map(|row| {
                values.extend([
                    row.salon.get().into(),
                    row.resource.clone().into(),
                    row.resource_id.clone().into(),
                    row.status.clone().into(),
                    row.data_hash.clone().into(),
                    row.dedup_key.clone().into(),
                    row.data.clone().into(),
                    now.into(),
                ]);
                let fields: Vec<String> = (0..8).map(|_| placeholder()).collect();
                format!("({})", fields.join(", "))
            })
            .collect::<Vec<_>>()
            .join(", ");
        let salon_list = salons
            .iter()
            .map(|id| {
                values.push((*id).into());
                placeholder()
            })
            .collect::<Vec<_>>()
            .join(", ");
        const COLUMNS: &str =
            "salon_id, resource, resource_id, status, data_hash, dedup_key, data, created_at";
        let sql = if postgres {
            format!(
                "WITH live AS (SELECT id FROM salons \
                 WHERE id IN ({salon_list}) AND webhook_secret_hash IS NOT NULL \
                 ORDER BY id FOR KEY SHARE), \
                 ins AS (INSERT INTO entity_events ({COLUMNS}) \
                 SELECT * FROM (VALUES {tuples}) AS v({COLUMNS}) \
                 WHERE v.salon_id IN (SELECT id FROM live) \
                 ON CONFLICT (dedup_key) DO NOTHING RETURNING dedup_key) \
                 SELECT 0 AS kind, dedup_key AS value FROM ins \
                 UNION ALL SELECT 1, id::text FROM live"
            )
        } else {
            format!(
                "INSERT INTO entity_events ({COLUMNS}) \
                 SELECT * FROM (VALUES {tuples}) AS v \
                 WHERE v.column1 IN (SELECT id FROM salons WHERE id IN ({salon_list}) \
                 AND webhook_secret_hash IS NOT NULL) \
                 ON CONFLICT (dedup_key) DO NOTHING RETURNING 0 AS kind, dedup_key AS value"
            )
        };
        let statement = Statement::from_sql_and_values(backend, sql, values);
        for row in txn.query_all_raw(statement).await? {
            let value: String = row.try_get_by_index(1)?;
            if row.try_get_by_index::<i32>(0)? == 0 {
                inserted.new_keys.insert(value);
            } else {
                let id = value
                    .parse()
                    .map_err(|_| DbErr::Type(format!("a salon id: {value}")))?;
                inserted.installed.insert(id);
            }
        }
        if !postgres {
            // Under the write lock the insert took: the same state it filtered by.
            let statement = Statement::from_sql_and_values(
                backend,
                format!(
                    "SELECT id FROM salons WHERE id IN ({}) AND webhook_secret_hash IS NOT NULL",
                    vec!["?"; salons.len()].join(", ")
                ),
                salons
                    .iter()
                    .map(|id| (*id).into())
                    .collect::<Vec<sea_orm::Value>>(),
            );
            for row in txn.query_all_raw(statement).await? {
                inserted.installed.insert(row.try_get_by_index::<i64>(0)?);
            }
        }
    }
    Ok(inserted)
}

/// The bookings projection and the messages of a batch's new `record` events, in order: each
/// event sees the booking as the events before it in the batch left it.
async fn apply_bookings<C: ConnectionTrait>(
    txn: &C,
    events: &[(SalonId, i64, &EntityEvent)],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), DbErr> {
    let salon_ids = unique(events.iter().map(|(salon, _, _)| salon.get()));
    let mut bookings = read_bookings(txn, events, &salon_ids).await?;
    let mut messages = super::messages::Scheduler::load(txn, &salon_ids, now).await?;
    // Each booking written once, as the batch's last event of it left it.
    let mut changed: Vec<(i64, i64)> = Vec::new();
    let mut seen: HashSet<(i64, i64)> = HashSet::new();
    for (salon, record_id, event) in events {
        let key = (salon.get(), *record_id);
        let previous = bookings.get(&key).cloned();
        let booking = Booking::from_event(event);
        let version = super::messages::next_version(previous.as_ref(), &booking);
        // The messages it causes, in the same transaction: a rolled-back batch owes none,
        // and a duplicate (refused above) owes none twice.
        messages
            .schedule(
                txn,
                *salon,
                *record_id,
                previous.as_ref(),
                &booking,
                version,
            )
            .await?;
        if seen.insert(key) {
            changed.push(key);
        }
        let id = previous.map(|p| p.id);
        bookings.insert(
            key,
            booking.into_model(*salon, *record_id, version, now, id),
        );
    }
    // In key order, as the events are (see `insert_event_rows`).
    changed.sort_unstable();
    let rows: Vec<records::ActiveModel> = changed
        .iter()
        .filter_map(|key| bookings.get(key))
        .map(|model| records::ActiveModel {
            salon_id: Set(model.salon_id),
            record_id: Set(model.record_id),
            client_phone: Set(model.client_phone.clone()),
            client_name: Set(model.client_name.clone()),
            datetime: Set(model.datetime.clone()),
            status: Set(model.status.clone()),
            deleted: Set(model.deleted),
            updated_at: Set(model.updated_at),
            version: Set(model.version),
            staff: Set(model.staff.clone()),
            services: Set(model.services.clone()),
            staff_id: Set(model.staff_id),
            service_ids: Set(model.service_ids.clone()),
            ..Default::default()
        })
        .collect();
    // The batch's last two writes — its messages and its bookings — in one round trip on
    // PostgreSQL (`WITH … INSERT`): a round trip there is most of a batch's time under load.
    if txn.get_database_backend() == DbBackend::Postgres
        && !rows.is_empty()
        && rows.len() <= ROWS_PER_STATEMENT
        && messages.pending() <= ROWS_PER_STATEMENT
    {
        if let Some(outbox) = messages.take_insert() {
            let bookings = upsert_records_query(rows).build(DbBackend::Postgres);
            txn.execute_raw(with_first(outbox, bookings)).await?;
            return Ok(());
        }
    }
    messages.flush(txn).await?;
    upsert_records(txn, rows).await
}

/// `first` and `second` (PostgreSQL statements, `$n` placeholders) as one statement:
/// `WITH first AS (first) second`, the second's placeholders numbered after the first's. A
/// data-modifying `WITH` runs whether or not the main statement reads it; the two must not write
/// the same rows.
fn with_first(first: Statement, second: Statement) -> Statement {
    let mut values = first.values.map(|v| v.0).unwrap_or_default();
    let sql = format!(
        "WITH first AS ({}) {}",
        first.sql,
        shift_placeholders(&second.sql, values.len())
    );
    values.extend(second.values.map(|v| v.0).unwrap_or_default());
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

/// `$1`, `$2`, … in `sql` renumbered `$1+by`, `$2+by`, … (sea-query's PostgreSQL statements carry
/// values only as placeholders, and quote identifiers, so every `$` followed by digits is one).
fn shift_placeholders(sql: &str, by: usize) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut pieces = sql.split('$');
    out.push_str(pieces.next().unwrap_or_default());
    for piece in pieces {
        let digits = piece.bytes().take_while(u8::is_ascii_digit).count();
        out.push('$');
        match piece[..digits].parse::<usize>() {
            Ok(n) => {
                out.push_str(&(n + by).to_string());
                out.push_str(&piece[digits..]);
            }
            Err(_) => out.push_str(piece),
        }
    }
    out
}

/// The bookings the batch's events name, as they were before it.
///
/// On PostgreSQL one index probe per (salon, booking) key, through a `LATERAL` join over the
/// keys: `salon_id IN (…) AND record_id IN (…)` was planned — while the table was small, and
/// kept as the connection's generic plan as it grew — as a scan of the salon's whole booking
/// history filtered by the ids (`auto_explain` under the webhook benchmark: "Index Cond:
/// salon_id = $1, Filter: record_id = ANY (…)"), so every batch grew with the salon's history.
/// The `LIMIT 1` (the key is unique anyway) keeps the subquery from being flattened into a join,
/// which was planned as a hash join over a scan of the whole table; as a subquery run per key,
/// an equality on both columns of the unique key is an index probe under any statistics.
/// SQLite's planner probes the key with both `IN` lists.
async fn read_bookings<C: ConnectionTrait>(
    txn: &C,
    events: &[(SalonId, i64, &EntityEvent)],
    salon_ids: &[i64],
) -> Result<HashMap<(i64, i64), records::Model>, DbErr> {
    let mut bookings: HashMap<(i64, i64), records::Model> = HashMap::new();
    if txn.get_database_backend() == DbBackend::Postgres {
        let mut seen = HashSet::new();
        let keys: Vec<(i64, i64)> = events
            .iter()
            .map(|(salon, record, _)| (salon.get(), *record))
            .filter(|key| seen.insert(*key))
            .collect();
        for chunk in keys.chunks(ROWS_PER_STATEMENT) {
            // Two comma-separated lists of integers (sea-orm is built without PostgreSQL arrays).
            let list = |pick: fn(&(i64, i64)) -> i64| {
                chunk
                    .iter()
                    .map(|key| pick(key).to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let statement = Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT r.* FROM unnest(string_to_array($1, ',')::bigint[], \
                 string_to_array($2, ',')::bigint[]) AS k(salon_id, record_id) \
                 CROSS JOIN LATERAL (SELECT * FROM records \
                 WHERE records.salon_id = k.salon_id AND records.record_id = k.record_id \
                 LIMIT 1) AS r",
                [list(|key| key.0).into(), list(|key| key.1).into()],
            );
            for row in records::Entity::find()
                .from_raw_sql(statement)
                .all(txn)
                .await?
            {
                bookings.insert((row.salon_id, row.record_id), row);
            }
        }
        return Ok(bookings);
    }
    let record_ids = unique(events.iter().map(|(_, record, _)| *record));
    // A superset: any of these salons × any of these ids.
    for ids in record_ids.chunks(ROWS_PER_STATEMENT) {
        for row in records::Entity::find()
            .filter(records::Column::SalonId.is_in(salon_ids.iter().copied()))
            .filter(records::Column::RecordId.is_in(ids.iter().copied()))
            .all(txn)
            .await?
        {
            bookings.insert((row.salon_id, row.record_id), row);
        }
    }
    Ok(bookings)
}

/// The values in first-seen order, once each.
fn unique<T: Copy + Eq + std::hash::Hash>(values: impl Iterator<Item = T>) -> Vec<T> {
    let mut seen = HashSet::new();
    values.filter(|v| seen.insert(*v)).collect()
}

/// A `record` event's booking, as the projection and its messages read it.
#[derive(Debug, Clone)]
pub(super) struct Booking {
    pub client_phone: Option<String>,
    pub client_name: Option<String>,
    pub datetime: Option<String>,
    pub staff: Option<String>,
    pub services: Option<String>,
    /// YClients' `staff_id` (or `staff.id`): who the visit is with, whatever their name.
    pub staff_id: Option<i64>,
    /// The services' ids, sorted and comma-separated; `None` unless every service has one (and
    /// the list fits 1,000 characters): then the titles are compared, as before ids were kept.
    pub service_ids: Option<String>,
    pub status: String,
    pub deleted: bool,
}

impl Booking {
    fn from_event(event: &EntityEvent) -> Self {
        let text = |v: &Value| match v {
            Value::String(s) if !s.trim().is_empty() => Some(truncated(s, 255)),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        };
        let data = &event.data;
        let client = &data["client"];
        let services = data["services"].as_array().map(|list| {
            list.iter()
                .filter_map(|s| text(&s["title"]))
                .collect::<Vec<_>>()
                .join(", ")
        });
        let service_ids = data["services"]
            .as_array()
            .and_then(|list| {
                let mut ids: Vec<i64> = list.iter().filter_map(|s| s["id"].as_i64()).collect();
                (ids.len() == list.len()).then(|| {
                    ids.sort_unstable();
                    ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
                })
            })
            // As bounded as the titles are (a body may hold a million-character list).
            .filter(|ids| ids.len() <= 1000);
        Self {
            client_phone: text(&client["phone"]),
            client_name: text(&client["name"]),
            datetime: text(&data["datetime"]),
            staff: text(&data["staff"]["name"]),
            services: services
                .filter(|s| !s.is_empty())
                .map(|s| truncated(&s, 1000)),
            staff_id: data["staff_id"]
                .as_i64()
                .or_else(|| data["staff"]["id"].as_i64()),
            service_ids,
            status: event.status.clone(),
            deleted: event.status == "delete" || data["deleted"].as_bool().unwrap_or(false),
        }
    }
    /// The projection's row for this booking (as the next event of the batch sees it).
    fn into_model(
        self,
        salon: SalonId,
        record_id: i64,
        version: i32,
        now: chrono::DateTime<chrono::Utc>,
        id: Option<i32>,
    ) -> records::Model {
        records::Model {
            id: id.unwrap_or_default(),
            salon_id: salon.get(),
            record_id,
            client_phone: self.client_phone,
            client_name: self.client_name,
            datetime: self.datetime,
            status: self.status,
            deleted: self.deleted,
            updated_at: now,
            version,
            staff: self.staff,
            services: self.services,
            staff_id: self.staff_id,
            service_ids: self.service_ids,
        }
    }
}

/// The bookings, in the form booking messages read them (each key once per call: PostgreSQL
/// refuses to update one row twice in a statement).
async fn upsert_records<C: ConnectionTrait>(
    db: &C,
    rows: Vec<records::ActiveModel>,
) -> Result<(), DbErr> {
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<records::ActiveModel> = rows.by_ref().take(ROWS_PER_STATEMENT).collect();
        upsert_records_query(chunk)
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
}

/// The upsert of `rows` (at most [`ROWS_PER_STATEMENT`], each key once).
fn upsert_records_query(
    rows: Vec<records::ActiveModel>,
) -> sea_orm::InsertMany<records::ActiveModel> {
    records::Entity::insert_many(rows).on_conflict(
        OnConflict::columns([records::Column::SalonId, records::Column::RecordId])
            .update_columns([
                records::Column::ClientPhone,
                records::Column::ClientName,
                records::Column::Datetime,
                records::Column::Status,
                records::Column::Deleted,
                records::Column::UpdatedAt,
                records::Column::Version,
                records::Column::Staff,
                records::Column::Services,
                records::Column::StaffId,
                records::Column::ServiceIds,
            ])
            .to_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_second_statements_placeholders_are_numbered_after_the_firsts() {
        assert_eq!(
            shift_placeholders(
                r#"INSERT INTO "r" ("a", "b") VALUES ($1, $2), ($3, $10)"#,
                4
            ),
            r#"INSERT INTO "r" ("a", "b") VALUES ($5, $6), ($7, $14)"#
        );
        // A `$` not followed by digits is left alone.
        assert_eq!(
            shift_placeholders("SELECT '$x', $1$", 1),
            "SELECT '$x', $2$"
        );
        assert_eq!(shift_placeholders("SELECT 1", 3), "SELECT 1");
    }

    #[test]
    fn two_writes_become_one_statement_with_every_value_in_order() {
        let first = Statement::from_sql_and_values(
            DbBackend::Postgres,
            "INSERT INTO a (x, y) VALUES ($1, $2)",
            [1i64.into(), "one".into()],
        );
        let second = Statement::from_sql_and_values(
            DbBackend::Postgres,
            "INSERT INTO b (z) VALUES ($1) ON CONFLICT (z) DO UPDATE SET z = excluded.z",
            [2i64.into()],
        );
        let both = with_first(first, second);
        assert_eq!(
            both.sql,
            "WITH first AS (INSERT INTO a (x, y) VALUES ($1, $2)) \
             INSERT INTO b (z) VALUES ($3) ON CONFLICT (z) DO UPDATE SET z = excluded.z"
        );
        let values = both.values.expect("values").0;
        assert_eq!(
            values,
            vec![1i64.into(), "one".into(), 2i64.into()] as Vec<sea_orm::Value>
        );
    }
}
