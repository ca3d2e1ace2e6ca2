//! Booking messages' rows: per-salon settings, the message outbox (scheduled inside the entity
//! webhook's transaction, claimed with a lease by the sender), receipts and opt-outs.

use super::entity_events::Booking;
use super::{Store, StoreError};
use crate::db::entities::{message_opt_outs, message_outbox, message_settings, records, salons};
use crate::domain::booking::{kind, normalize_client_phone, salon_timezone, state, visit_time};
use crate::domain::SalonStatus;
use app::domain::{PhoneNumber, SalonId};
use app::messages::MessageSettings;
use app::status::DeliveryStatus;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbBackend, DbErr, EntityTrait, FromQueryResult,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait, Set, Statement,
    TransactionTrait,
};
use std::collections::HashMap;

type Time = chrono::DateTime<chrono::Utc>;

pub type OutboxMessage = message_outbox::Model;

/// A claimed row with what rendering and sending it needs.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub message: OutboxMessage,
    pub record: Option<records::Model>,
}

/// Rows by state, for the benchmark and health.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageCounts {
    pub by_status: std::collections::BTreeMap<String, u64>,
}

/// The booking's version after `booking`: a new visit (a change of date and time, staff or
/// services, or a booking made again after a cancellation) is a new version.
///
/// The staff and the services are compared by YClients' ids where both sides have them: a
/// master or a service renamed (or the services listed in another order) is the same visit, and
/// the client must not be told «изменена» for it. A row stored before the ids were kept is
/// compared by the names, as then. The time is the same instant written either way.
pub(super) fn next_version(previous: Option<&records::Model>, booking: &Booking) -> i32 {
    match previous {
        None => i32::from(!booking.deleted),
        Some(prev) if prev.deleted && !booking.deleted => prev.version + 1,
        Some(prev) if prev.deleted || booking.deleted => prev.version,
        Some(prev) => {
            let staff_changed = match (prev.staff_id, booking.staff_id) {
                (Some(before), Some(now)) => before != now,
                _ => prev.staff != booking.staff,
            };
            let services_changed = match (&prev.service_ids, &booking.service_ids) {
                (Some(before), Some(now)) => before != now,
                _ => prev.services != booking.services,
            };
            let changed = !same_time(prev.datetime.as_deref(), booking.datetime.as_deref())
                || staff_changed
                || services_changed;
            prev.version + i32::from(changed)
        }
    }
}

/// Two `datetime`s of a record name the same time: the same text, or the same instant with
/// their offsets (`…T14:30:00+03:00` and `…T11:30:00Z`). Local times without an offset are
/// compared as text (the salon's timezone is the same for both).
fn same_time(before: Option<&str>, now: Option<&str>) -> bool {
    match (before, now) {
        (Some(before), Some(now)) if before != now => {
            match (
                chrono::DateTime::parse_from_rfc3339(before.trim()),
                chrono::DateTime::parse_from_rfc3339(now.trim()),
            ) {
                (Ok(before), Ok(now)) => before == now,
                _ => false,
            }
        }
        (before, now) => before == now,
    }
}

/// Not leased by a worker, or its lease ran out.
fn lease_free(now: Time) -> Condition {
    Condition::any()
        .add(message_outbox::Column::LeaseUntil.is_null())
        .add(message_outbox::Column::LeaseUntil.lt(now))
}

fn dedup_key(salon: SalonId, record_id: i64, kind: &str, offset_min: i32, version: i32) -> String {
    format!("{salon}:{record_id}:{kind}:{offset_min}:{version}")
}

struct NewRow<'a> {
    kind: &'a str,
    offset_min: i32,
    phone: Option<&'a PhoneNumber>,
    status: &'a str,
    reason: Option<&'a str>,
    due_at: Time,
    visit_at: Option<Time>,
}

fn new_row(
    salon: SalonId,
    record_id: i64,
    version: i32,
    row: NewRow<'_>,
    now: Time,
) -> message_outbox::ActiveModel {
    message_outbox::ActiveModel {
        salon_id: Set(salon.get()),
        record_id: Set(record_id),
        kind: Set(row.kind.to_owned()),
        offset_min: Set(row.offset_min),
        version: Set(version),
        dedup_key: Set(dedup_key(
            salon,
            record_id,
            row.kind,
            row.offset_min,
            version,
        )),
        phone: Set(row.phone.map(|p| p.as_str().to_owned())),
        status: Set(row.status.to_owned()),
        reason: Set(row.reason.map(str::to_owned)),
        due_at: Set(row.due_at),
        visit_at: Set(row.visit_at),
        lease_until: Set(None),
        attempts: Set(0),
        message_id: Set(None),
        text: Set(None),
        sent_at: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
}

/// Drops a record's waiting messages matching `which` with `reason`.
async fn drop_pending<C: ConnectionTrait>(
    db: &C,
    salon: SalonId,
    record_id: i64,
    which: Condition,
    reason: &str,
    now: Time,
) -> Result<(), DbErr> {
    message_outbox::Entity::update_many()
        .col_expr(message_outbox::Column::Status, Expr::value(state::DROPPED))
        .col_expr(message_outbox::Column::Reason, Expr::value(reason))
        .col_expr(message_outbox::Column::UpdatedAt, Expr::value(now))
        .filter(message_outbox::Column::SalonId.eq(salon.get()))
        .filter(message_outbox::Column::RecordId.eq(record_id))
        .filter(message_outbox::Column::Status.eq(state::PENDING))
        .filter(which)
        .exec(db)
        .await?;
    Ok(())
}

async fn settings_in<C: ConnectionTrait>(db: &C, salon: SalonId) -> Result<MessageSettings, DbErr> {
    let row = message_settings::Entity::find_by_id(salon.get())
        .one(db)
        .await?;
    Ok(row
        .and_then(|r| serde_json::from_str(&r.settings).ok())
        .unwrap_or_default())
}

/// The messages of one batch of `record` events, in the batch's transaction: the salons and
/// their settings read once for the batch, the new rows written together (before anything in
/// the batch reads or drops a record's waiting messages).
pub(super) struct Scheduler {
    salons: HashMap<i64, salons::Model>,
    settings: HashMap<i64, MessageSettings>,
    rows: Vec<message_outbox::ActiveModel>,
    /// The batch's time.
    now: Time,
    backend: DbBackend,
}

impl Scheduler {
    /// Reads what scheduling needs about `salon_ids`.
    pub(super) async fn load<C: ConnectionTrait>(
        db: &C,
        salon_ids: &[i64],
        now: Time,
    ) -> Result<Self, DbErr> {
        let mut salons = HashMap::with_capacity(salon_ids.len());
        let mut settings = HashMap::new();
        let backend = db.get_database_backend();
        // The salons and their message settings in one statement (one round trip of the
        // webhook batch's transaction instead of two).
        for ids in salon_ids.chunks(super::entity_events::ROWS_PER_STATEMENT) {
            let placeholders = match backend {
                DbBackend::Postgres => (1..=ids.len())
                    .map(|n| format!("${n}"))
                    .collect::<Vec<_>>()
                    .join(","),
                _ => vec!["?"; ids.len()].join(","),
            };
            let statement = Statement::from_sql_and_values(
                backend,
                format!(
                    "SELECT salons.*, message_settings.settings AS message_settings_json \
                     FROM salons LEFT JOIN message_settings \
                     ON message_settings.salon_id = salons.id \
                     WHERE salons.id IN ({placeholders})"
                ),
                ids.iter().map(|id| (*id).into()),
            );
            for row in db.query_all_raw(statement).await? {
                let salon = salons::Model::from_query_result(&row, "")?;
                let json: Option<String> = row.try_get("", "message_settings_json")?;
                if let Some(parsed) = json.and_then(|j| serde_json::from_str(&j).ok()) {
                    settings.insert(salon.id, parsed);
                }
                salons.insert(salon.id, salon);
            }
        }
        Ok(Self {
            salons,
            settings,
            rows: Vec::new(),
            now,
            backend,
        })
    }

    /// Writes the rows scheduled so far (each under its unique key: a repeat writes nothing).
    pub(super) async fn flush<C: ConnectionTrait>(&mut self, db: &C) -> Result<(), DbErr> {
        while let Some(insert) = self.take_insert() {
            db.execute_raw(insert).await?;
        }
        Ok(())
    }

    /// How many rows are scheduled and not yet written.
    pub(super) fn pending(&self) -> usize {
        self.rows.len()
    }

    /// The insert of the next rows scheduled (at most a statement's worth), taken off the list;
    /// `None` when nothing waits. For [`flush`](Self::flush), or a caller that sends it with
    /// another statement in one round trip.
    pub(super) fn take_insert(&mut self) -> Option<Statement> {
        if self.rows.is_empty() {
            return None;
        }
        // In key order, as the events are (see `entity_events::insert_event_rows`).
        self.rows
            .sort_by(|a, b| a.dedup_key.try_as_ref().cmp(&b.dedup_key.try_as_ref()));
        let take = self
            .rows
            .len()
            .min(super::entity_events::ROWS_PER_STATEMENT);
        let chunk: Vec<message_outbox::ActiveModel> = self.rows.drain(..take).collect();
        Some(
            message_outbox::Entity::insert_many(chunk)
                .on_conflict(
                    OnConflict::column(message_outbox::Column::DedupKey)
                        .do_nothing()
                        .to_owned(),
                )
                .build(self.backend),
        )
    }

    /// The messages a `record` event causes, in its webhook's transaction: a confirmation for a new
    /// booking, a "moved" message for a new version, a cancellation for a deletion, reminders for the
    /// booking's current version (earlier ones dropped as superseded). Only for an active salon with
    /// messages on. Each row under its unique key, so a repeat writes nothing.
    pub(super) async fn schedule<C: ConnectionTrait>(
        &mut self,
        db: &C,
        salon: SalonId,
        record_id: i64,
        previous: Option<&records::Model>,
        booking: &Booking,
        version: i32,
    ) -> Result<(), DbErr> {
        let now = self.now;
        let was_live = previous.is_some_and(|p| !p.deleted);
        let change = match (was_live, booking.deleted) {
            (false, false) => kind::CONFIRMATION,
            (true, true) => kind::CANCELLED,
            (true, false) if previous.is_some_and(|p| p.version != version) => kind::MOVED,
            _ => return Ok(()),
        };
        let Some(salon_row) = self
            .salons
            .get(&salon.get())
            .filter(|s| s.status == SalonStatus::Active.as_str())
        else {
            return Ok(());
        };
        let settings = self.settings.get(&salon.get()).cloned().unwrap_or_default();
        let timezone = salon_row.timezone.clone();
        // What this batch scheduled so far is in the table before anything reads it.
        if change != kind::CONFIRMATION {
            self.flush(db).await?;
        }
        // The client heard of this booking already — or may be hearing of it right now, a
        // message of it out for sending? If not, a change is still its confirmation (with the
        // new details) and a cancellation is news to nobody. A send in flight counts: it is
        // recorded as sent only when WhatsApp has taken it, and a cancellation decided before
        // that was never written, though the client got the confirmation (the sender checks
        // again before sending it: [`Told`]).
        let told = change == kind::CONFIRMATION
            || booking_told(db, salon, record_id, None, now).await? != Told::No;
        let main = match (change, told) {
            (kind::MOVED, false) => kind::CONFIRMATION,
            (kind::CANCELLED, false) => "",
            _ => change,
        };
        if change != kind::CONFIRMATION {
            // Whatever waits for the booking as it was is no longer right.
            let reason = if change == kind::CANCELLED {
                "booking_cancelled"
            } else {
                "superseded"
            };
            drop_pending(
                db,
                salon,
                record_id,
                Condition::all().add(
                    message_outbox::Column::Version
                        .lt(version + i32::from(change == kind::CANCELLED)),
                ),
                reason,
                now,
            )
            .await?;
        }
        if !settings.enabled {
            return Ok(());
        }
        let tz = salon_timezone(timezone.as_deref());
        let visit_at = visit_time(booking.datetime.as_deref(), tz);
        let phone = normalize_client_phone(booking.client_phone.as_deref());
        if settings.template(main).is_some_and(|t| t.enabled) {
            // `main` is empty (no template) for a cancellation nobody was told of.
            let (status, reason) = match &phone {
                Ok(_) => (state::PENDING, None),
                Err(problem) => (state::DROPPED, Some(problem.reason())),
            };
            self.rows.push(new_row(
                salon,
                record_id,
                version,
                NewRow {
                    kind: main,
                    offset_min: 0,
                    phone: phone.as_ref().ok(),
                    status,
                    reason,
                    due_at: now,
                    visit_at,
                },
                now,
            ));
        }
        let (Ok(phone), Some(visit)) = (&phone, visit_at) else {
            return Ok(());
        };
        if change == kind::CANCELLED || !settings.reminder.enabled {
            return Ok(());
        }
        self.rows.extend(reminder_rows(
            salon,
            record_id,
            version,
            phone,
            visit,
            &settings.reminder_offsets_min,
            now,
        ));
        Ok(())
    }
}

/// What a booking's client may have heard of it from the salon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Told {
    /// A message of the booking was sent.
    Yes,
    /// None was sent yet, but one is out for sending: a sender holds its lease, and has not
    /// recorded it as sent (or ended it) yet. Whether the client hears of the booking is not
    /// known until it has.
    InFlight,
    /// Nothing of the booking was sent, nor is being sent.
    No,
}

/// What the client of `record_id` may have heard of it, not counting the message `except` (the
/// one the caller is about to send).
///
/// A row out for sending keeps its lease whatever the webhook's transaction does to it
/// meanwhile: a cancellation drops the booking's waiting messages, the one being sent among them,
/// and the sender then records it as sent all the same when WhatsApp took it.
async fn booking_told<C: ConnectionTrait>(
    db: &C,
    salon: SalonId,
    record_id: i64,
    except: Option<i32>,
    now: Time,
) -> Result<Told, DbErr> {
    let mut query = message_outbox::Entity::find()
        .select_only()
        .column(message_outbox::Column::Status)
        .filter(message_outbox::Column::SalonId.eq(salon.get()))
        .filter(message_outbox::Column::RecordId.eq(record_id))
        .filter(
            Condition::any()
                .add(message_outbox::Column::Status.is_in(state::SENT_STATES))
                .add(message_outbox::Column::LeaseUntil.gt(now)),
        );
    if let Some(id) = except {
        query = query.filter(message_outbox::Column::Id.ne(id));
    }
    let statuses: Vec<String> = query.into_tuple().all(db).await?;
    Ok(if statuses.is_empty() {
        Told::No
    } else if statuses
        .iter()
        .any(|status| state::SENT_STATES.contains(&status.as_str()))
    {
        Told::Yes
    } else {
        Told::InFlight
    })
}

impl Store {
    /// What the client of `record_id` may have heard of it, not counting the message `except`
    /// ([`Told`]): a cancellation goes out only after something of the booking did.
    pub async fn booking_told(
        &self,
        salon: SalonId,
        record_id: i64,
        except: i32,
        now: Time,
    ) -> Result<Told, StoreError> {
        Ok(booking_told(&self.db, salon, record_id, Some(except), now).await?)
    }
}

/// The reminders a booking's `version` is owed for `offsets`: one per offset whose time is still
/// ahead. A booking made (or an offset added) too late for a reminder gets none — a booking an
/// hour ahead gets no 24-h one. The rest of the rules (quiet hours, opt-outs, the texts and
/// switches as they are then) are the sender's, at send time.
fn reminder_rows<'a>(
    salon: SalonId,
    record_id: i64,
    version: i32,
    phone: &'a PhoneNumber,
    visit: Time,
    offsets: &'a [u32],
    now: Time,
) -> impl Iterator<Item = message_outbox::ActiveModel> + 'a {
    offsets.iter().filter_map(move |offset| {
        let due = visit.checked_sub_signed(chrono::Duration::minutes(i64::from(*offset)))?;
        (due > now).then(|| {
            new_row(
                salon,
                record_id,
                version,
                NewRow {
                    kind: kind::REMINDER,
                    offset_min: *offset as i32,
                    phone: Some(phone),
                    status: state::PENDING,
                    reason: None,
                    due_at: due,
                    visit_at: Some(visit),
                },
                now,
            )
        })
    })
}

/// The offsets `new` puts in force that `old` did not: reminders newly owed to the bookings
/// already stored. Empty when reminders are off under `new`; all of `new`'s when they were off
/// under `old` (the master switch or the reminder's own).
fn offsets_added(old: &MessageSettings, new: &MessageSettings) -> Vec<u32> {
    if !new.enabled || !new.reminder.enabled {
        return Vec::new();
    }
    let before: &[u32] = if old.enabled && old.reminder.enabled {
        &old.reminder_offsets_min
    } else {
        &[]
    };
    new.reminder_offsets_min
        .iter()
        .copied()
        .filter(|offset| !before.contains(offset))
        .collect()
}

/// Schedules the reminders for `offsets` owed to the salon's stored bookings whose visit is still
/// ahead, in the settings' transaction. Without it an offset the admin adds (or reminders switched
/// back on) reached only bookings written after the change: a booking stored on Monday for
/// Friday never got the "6 hours before" the admin added on Tuesday. The rules are a new
/// booking's: an active salon, a booking not cancelled, with a client's number and a visit time,
/// the reminder's time still ahead; each row under its unique key (salon, record, kind, offset,
/// version), so a reminder already written — sent, ended or waiting — is not written again.
async fn schedule_stored_reminders<C: ConnectionTrait>(
    db: &C,
    salon: SalonId,
    offsets: &[u32],
    now: Time,
) -> Result<(), DbErr> {
    if offsets.is_empty() {
        return Ok(());
    }
    let Some(salon_row) = salons::Entity::find_by_id(salon.get())
        .one(db)
        .await?
        .filter(|s| s.status == SalonStatus::Active.as_str())
    else {
        return Ok(());
    };
    let tz = salon_timezone(salon_row.timezone.as_deref());
    // Every form a visit time is read in starts with its date (`YYYY-MM-DD`), and a visit still
    // ahead is dated no earlier than the day before today in UTC (no timezone is a day away): the
    // salon's past bookings, most of its projection, are not read.
    let since = (now - chrono::Duration::days(2))
        .format("%Y-%m-%d")
        .to_string();
    let bookings = records::Entity::find()
        .filter(records::Column::SalonId.eq(salon.get()))
        .filter(records::Column::Deleted.eq(false))
        .filter(records::Column::Datetime.gte(since))
        .all(db)
        .await?;
    let mut rows = Vec::new();
    for booking in &bookings {
        let (Ok(phone), Some(visit)) = (
            normalize_client_phone(booking.client_phone.as_deref()),
            visit_time(booking.datetime.as_deref(), tz),
        ) else {
            continue;
        };
        rows.extend(reminder_rows(
            salon,
            booking.record_id,
            booking.version,
            &phone,
            visit,
            offsets,
            now,
        ));
    }
    // In key order, as the webhook's batches write theirs (see `Scheduler::take_insert`).
    rows.sort_by(|a, b| a.dedup_key.try_as_ref().cmp(&b.dedup_key.try_as_ref()));
    while !rows.is_empty() {
        let take = rows.len().min(super::entity_events::ROWS_PER_STATEMENT);
        message_outbox::Entity::insert_many(rows.drain(..take))
            .on_conflict(
                OnConflict::column(message_outbox::Column::DedupKey)
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
}

impl Store {
    /// The salon's settings (the defaults until the admin saves some).
    pub async fn message_settings(&self, salon: SalonId) -> Result<MessageSettings, StoreError> {
        Ok(settings_in(&self.db, salon).await?)
    }

    /// Stores settings already validated by the caller.
    pub async fn save_message_settings(
        &self,
        salon: SalonId,
        settings: &MessageSettings,
    ) -> Result<(), StoreError> {
        let value =
            serde_json::to_value(settings).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        // With its audit entry: what the salon's clients are sent is the tenant's to change, and
        // a token travels as a link, so the console shows who changed it to what, and when.
        // Read before the transaction, which starts with its write (SQLite's WAL cannot upgrade
        // a read transaction once another writer committed). A save racing this one can only
        // make both schedule the same rows, which the unique key writes once.
        let previous = settings_in(&self.db, salon).await?;
        let now = self.clock.now();
        let txn = self.db.begin().await?;
        message_settings::Entity::insert(message_settings::ActiveModel {
            salon_id: Set(salon.get()),
            settings: Set(value.to_string()),
            updated_at: Set(now),
        })
        .on_conflict(
            OnConflict::column(message_settings::Column::SalonId)
                .update_columns([
                    message_settings::Column::Settings,
                    message_settings::Column::UpdatedAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(&txn)
        .await?;
        // The bookings already stored are owed the reminders the change adds, as the next
        // booking is (the sender applies the rest of the settings to rows written earlier).
        schedule_stored_reminders(&txn, salon, &offsets_added(&previous, settings), now).await?;
        super::audit::record(
            &txn,
            Some(salon),
            "message_settings_changed",
            serde_json::json!({ "settings": value }),
        )
        .await?;
        txn.commit().await?;
        Ok(())
    }

    /// Up to `limit` rows due now and not leased, oldest due first (nothing is claimed yet: the
    /// sender claims each with [`Store::claim_message`] when it comes to it).
    pub async fn due_messages(
        &self,
        now: Time,
        limit: u64,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        Ok(message_outbox::Entity::find()
            .filter(message_outbox::Column::Status.eq(state::PENDING))
            .filter(message_outbox::Column::DueAt.lte(now))
            .filter(lease_free(now))
            .order_by_asc(message_outbox::Column::DueAt)
            .order_by_asc(message_outbox::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?)
    }

    /// Takes a due row for `lease` (another worker skips it meanwhile), with its booking; `None`
    /// when another worker took it or it is no longer pending.
    pub async fn claim_message(
        &self,
        row: OutboxMessage,
        now: Time,
        lease: chrono::Duration,
    ) -> Result<Option<Claimed>, StoreError> {
        let won = message_outbox::Entity::update_many()
            .col_expr(message_outbox::Column::LeaseUntil, Expr::value(now + lease))
            .filter(message_outbox::Column::Id.eq(row.id))
            .filter(message_outbox::Column::Status.eq(state::PENDING))
            .filter(lease_free(now))
            .exec(&self.db)
            .await?
            .rows_affected
            == 1;
        if !won {
            return Ok(None);
        }
        let record = if row.record_id > 0 {
            records::Entity::find()
                .filter(records::Column::SalonId.eq(row.salon_id))
                .filter(records::Column::RecordId.eq(row.record_id))
                .one(&self.db)
                .await?
        } else {
            None
        };
        Ok(Some(Claimed {
            message: row,
            record,
        }))
    }

    /// Every row of the salon due now and not leased waits until `due_at` with `reason` — one
    /// statement for a wait that holds for the whole salon (its pacing, its WhatsApp down, the
    /// salon paused), instead of each row being claimed, checked and deferred on its own.
    /// `but_acknowledgements` leaves the opt-out acknowledgements due (the daily cap does not
    /// hold them back). Returns how many rows wait.
    pub async fn defer_salon_messages(
        &self,
        salon: SalonId,
        now: Time,
        due_at: Time,
        reason: &str,
        but_acknowledgements: bool,
    ) -> Result<u64, StoreError> {
        let mut update = message_outbox::Entity::update_many()
            .col_expr(message_outbox::Column::DueAt, Expr::value(due_at))
            .col_expr(message_outbox::Column::Reason, Expr::value(reason))
            .col_expr(message_outbox::Column::UpdatedAt, Expr::value(now))
            .filter(message_outbox::Column::SalonId.eq(salon.get()))
            .filter(message_outbox::Column::Status.eq(state::PENDING))
            .filter(message_outbox::Column::DueAt.lte(now))
            .filter(lease_free(now));
        if but_acknowledgements {
            update = update.filter(message_outbox::Column::Kind.ne(kind::OPT_OUT_ACK));
        }
        Ok(update.exec(&self.db).await?.rows_affected)
    }

    /// The row waits again until `due_at`, saying why; its lease is released.
    pub async fn defer_message(
        &self,
        id: i32,
        due_at: Time,
        reason: &str,
        attempts: i32,
    ) -> Result<(), StoreError> {
        message_outbox::Entity::update_many()
            .col_expr(message_outbox::Column::DueAt, Expr::value(due_at))
            .col_expr(message_outbox::Column::Reason, Expr::value(reason))
            .col_expr(message_outbox::Column::Attempts, Expr::value(attempts))
            .col_expr(
                message_outbox::Column::LeaseUntil,
                Expr::value(Option::<Time>::None),
            )
            .col_expr(
                message_outbox::Column::UpdatedAt,
                Expr::value(self.clock.now()),
            )
            .filter(message_outbox::Column::Id.eq(id))
            .filter(message_outbox::Column::Status.eq(state::PENDING))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// A final state other than sent (`dropped`, `failed`) with its reason.
    pub async fn end_message(&self, id: i32, status: &str, reason: &str) -> Result<(), StoreError> {
        end_messages(
            &self.db,
            message_outbox::Column::Id.eq(id),
            status,
            reason,
            self.clock.now(),
        )
        .await?;
        Ok(())
    }
}

/// Ends the pending rows `which` selects (a row already sent or ended stays as it is).
async fn end_messages<C: ConnectionTrait>(
    db: &C,
    which: sea_orm::sea_query::SimpleExpr,
    status: &str,
    reason: &str,
    now: Time,
) -> Result<(), DbErr> {
    message_outbox::Entity::update_many()
        .col_expr(message_outbox::Column::Status, Expr::value(status))
        .col_expr(message_outbox::Column::Reason, Expr::value(reason))
        .col_expr(
            message_outbox::Column::LeaseUntil,
            Expr::value(Option::<Time>::None),
        )
        .col_expr(message_outbox::Column::UpdatedAt, Expr::value(now))
        .filter(which)
        .filter(message_outbox::Column::Status.eq(state::PENDING))
        .exec(db)
        .await?;
    Ok(())
}

/// What an uninstall ends of the salon's booking messages, in its transaction: every message
/// still owed (`dropped`, `salon_uninstalled`) and the texts the installation chose. A new
/// installation starts from the default texts and owes nothing of the old one — whoever held the
/// old one's link could have reworded a reminder due next week, and the new admin's WhatsApp would
/// have sent it. The opt-outs stay: they are the clients' word, not the installation's.
pub(super) async fn end_installation_messages<C: ConnectionTrait>(
    db: &C,
    salon: SalonId,
    reason: &'static str,
    now: Time,
) -> Result<(), DbErr> {
    end_messages(
        db,
        message_outbox::Column::SalonId.eq(salon.get()),
        state::DROPPED,
        reason,
        now,
    )
    .await?;
    message_settings::Entity::delete_many()
        .filter(message_settings::Column::SalonId.eq(salon.get()))
        .exec(db)
        .await?;
    Ok(())
}

impl Store {
    /// WhatsApp took the message: `sent`, with its id (receipts name it), the text and number —
    /// the number and text only while the salon's app is still installed.
    ///
    /// A send can outlive the installation it was made for: on two instances the uninstall is
    /// applied by whichever claims the lifecycle event, while the salon's session on the other is
    /// sending, and the send is recorded after the uninstall forgot the salon's clients
    /// (`salons::forget_clients`). It went out, so it is recorded as sent, but without putting
    /// the client's number and the text back. On PostgreSQL the salon's row is held first (`FOR
    /// KEY SHARE`; the uninstall takes it `FOR UPDATE` before anything else), so the record
    /// either commits before the uninstall begins (which then forgets it) or waits for it and
    /// finds the app gone; the update's own snapshot is taken after that wait. SQLite runs one
    /// writing transaction at a time, and the update reads the salon under its write lock.
    pub async fn message_sent(
        &self,
        salon: SalonId,
        id: i32,
        phone: &PhoneNumber,
        text: &str,
        message_id: &str,
    ) -> Result<(), StoreError> {
        use sea_orm::sea_query::{CaseStatement, Query};
        use sea_orm::ExprTrait;
        let now = self.clock.now();
        let txn = self.db.begin().await?;
        if txn.get_database_backend() == DbBackend::Postgres {
            salons::Entity::find_by_id(salon.get())
                .select_only()
                .column(salons::Column::Id)
                .lock(sea_orm::sea_query::LockType::KeyShare)
                .into_tuple::<i64>()
                .one(&txn)
                .await?;
        }
        let installed = || {
            Expr::exists(
                Query::select()
                    .expr(Expr::val(1))
                    .from(salons::Entity)
                    .and_where(Expr::col((salons::Entity, salons::Column::Id)).eq(salon.get()))
                    .and_where(
                        Expr::col((salons::Entity, salons::Column::WebhookSecretHash))
                            .is_not_null(),
                    )
                    .to_owned(),
            )
        };
        let while_installed = |value: String| {
            CaseStatement::new()
                .case(installed(), Expr::val(value))
                .finally(Expr::val(Option::<String>::None))
        };
        message_outbox::Entity::update_many()
            .col_expr(message_outbox::Column::Status, Expr::value(state::SENT))
            .col_expr(
                message_outbox::Column::Reason,
                Expr::value(Option::<String>::None),
            )
            .col_expr(
                message_outbox::Column::Phone,
                while_installed(phone.as_str().to_owned()).into(),
            )
            .col_expr(
                message_outbox::Column::Text,
                while_installed(super::storable_text(text).into_owned()).into(),
            )
            .col_expr(message_outbox::Column::MessageId, Expr::value(message_id))
            .col_expr(message_outbox::Column::SentAt, Expr::value(now))
            .col_expr(
                message_outbox::Column::LeaseUntil,
                Expr::value(Option::<Time>::None),
            )
            .col_expr(message_outbox::Column::UpdatedAt, Expr::value(now))
            .filter(message_outbox::Column::Id.eq(id))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(())
    }

    /// A receipt moves a sent message's status forward (never back); `true` when it did.
    pub async fn message_receipt(
        &self,
        salon: SalonId,
        message_id: &str,
        status: DeliveryStatus,
    ) -> Result<bool, StoreError> {
        let before: &[&str] = match status {
            DeliveryStatus::Sent => return Ok(false),
            DeliveryStatus::Delivered => &[state::SENT],
            DeliveryStatus::Read => &[state::SENT, state::DELIVERED],
        };
        let updated = message_outbox::Entity::update_many()
            .col_expr(message_outbox::Column::Status, Expr::value(status.name()))
            .col_expr(
                message_outbox::Column::UpdatedAt,
                Expr::value(self.clock.now()),
            )
            .filter(message_outbox::Column::SalonId.eq(salon.get()))
            .filter(message_outbox::Column::MessageId.eq(message_id))
            .filter(message_outbox::Column::Status.is_in(before.iter().copied()))
            .exec(&self.db)
            .await?
            .rows_affected;
        Ok(updated > 0)
    }

    /// The client asked for no more messages: remembered once, with one acknowledgement owed
    /// (in the same transaction); `false` when the number had already opted out.
    pub async fn opt_out(&self, salon: SalonId, phone: &PhoneNumber) -> Result<bool, StoreError> {
        let now = self.clock.now();
        let txn = self.db.begin().await?;
        let inserted = message_opt_outs::Entity::insert(message_opt_outs::ActiveModel {
            salon_id: Set(salon.get()),
            phone: Set(phone.as_str().to_owned()),
            created_at: Set(now),
            ..Default::default()
        })
        .on_conflict(
            OnConflict::columns([
                message_opt_outs::Column::SalonId,
                message_opt_outs::Column::Phone,
            ])
            .do_nothing()
            .to_owned(),
        )
        .exec_without_returning(&txn)
        .await?
            == 1;
        if inserted {
            message_outbox::Entity::insert(message_outbox::ActiveModel {
                salon_id: Set(salon.get()),
                record_id: Set(0),
                kind: Set(kind::OPT_OUT_ACK.to_owned()),
                offset_min: Set(0),
                version: Set(0),
                dedup_key: Set(format!("{salon}:ack:{}", phone.as_str())),
                phone: Set(Some(phone.as_str().to_owned())),
                status: Set(state::PENDING.to_owned()),
                reason: Set(None),
                due_at: Set(now),
                visit_at: Set(None),
                lease_until: Set(None),
                attempts: Set(0),
                message_id: Set(None),
                text: Set(None),
                sent_at: Set(None),
                created_at: Set(now),
                updated_at: Set(now),
                ..Default::default()
            })
            .on_conflict(
                OnConflict::column(message_outbox::Column::DedupKey)
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(&txn)
            .await?;
        }
        txn.commit().await?;
        Ok(inserted)
    }

    pub async fn is_opted_out(
        &self,
        salon: SalonId,
        phone: &PhoneNumber,
    ) -> Result<bool, StoreError> {
        Ok(message_opt_outs::Entity::find()
            .filter(message_opt_outs::Column::SalonId.eq(salon.get()))
            .filter(message_opt_outs::Column::Phone.eq(phone.as_str()))
            .count(&self.db)
            .await?
            > 0)
    }

    /// Messages the salon sent since `since` (the daily cap counts them).
    pub async fn messages_sent_since(
        &self,
        salon: SalonId,
        since: Time,
    ) -> Result<u64, StoreError> {
        Ok(message_outbox::Entity::find()
            .filter(message_outbox::Column::SalonId.eq(salon.get()))
            .filter(message_outbox::Column::SentAt.gte(since))
            .count(&self.db)
            .await?)
    }

    /// The salon's latest messages, newest first.
    pub async fn recent_messages(
        &self,
        salon: SalonId,
        limit: u64,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        Ok(message_outbox::Entity::find()
            .filter(message_outbox::Column::SalonId.eq(salon.get()))
            .order_by_desc(message_outbox::Column::UpdatedAt)
            .order_by_desc(message_outbox::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?)
    }

    /// The numbers that opted out of the salon's messages, newest first.
    pub async fn opted_out_numbers(
        &self,
        salon: SalonId,
        limit: u64,
    ) -> Result<Vec<String>, StoreError> {
        Ok(message_opt_outs::Entity::find()
            .filter(message_opt_outs::Column::SalonId.eq(salon.get()))
            .order_by_desc(message_opt_outs::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|r| r.phone)
            .collect())
    }

    /// Outbox rows by status (all salons).
    pub async fn message_counts(&self) -> Result<MessageCounts, StoreError> {
        let rows: Vec<(String, i64)> = message_outbox::Entity::find()
            .select_only()
            .column(message_outbox::Column::Status)
            .column_as(message_outbox::Column::Id.count(), "n")
            .group_by(message_outbox::Column::Status)
            .into_tuple()
            .all(&self.db)
            .await?;
        Ok(MessageCounts {
            by_status: rows
                .into_iter()
                .map(|(s, n)| (s, n.max(0) as u64))
                .collect(),
        })
    }
}
