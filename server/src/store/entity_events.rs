//! Entity webhooks (records, clients, …): stored once under a unique key, and a `record` also
//! upserts the bookings projection, in one transaction.

use super::{storable_text, Store, StoreError};
use crate::db::entities::{entity_events, records};
use crate::domain::sha256_hex;
use app::domain::SalonId;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, Set, TransactionTrait,
};
use serde_json::Value;

/// An entity event as YClients sent it, already authenticated and validated.
#[derive(Debug, Clone)]
pub struct EntityEvent {
    pub resource: String,
    pub resource_id: String,
    /// `create`, `update` or `delete`.
    pub status: String,
    pub data: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    New,
    Duplicate,
}

fn truncated(value: &str, max: usize) -> String {
    storable_text(value).chars().take(max).collect()
}

impl Store {
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
    pub async fn store_entity_events(
        &self,
        batch: &[(SalonId, EntityEvent)],
    ) -> Result<Vec<Stored>, StoreError> {
        let now = self.clock.now();
        let txn = self.db.begin().await?;
        let mut answers = Vec::with_capacity(batch.len());
        for (salon, event) in batch {
            answers.push(insert_entity_event(&txn, *salon, event, now).await?);
        }
        txn.commit().await?;
        Ok(answers)
    }
}

async fn insert_entity_event<C: ConnectionTrait>(
    txn: &C,
    salon: SalonId,
    event: &EntityEvent,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Stored, DbErr> {
    // PostgreSQL's text refuses U+0000: JSON keeps it escaped (`\u0000`), so the stored data
    // is the same JSON; only bare strings need replacing.
    let data = event.data.to_string();
    let data_hash = sha256_hex(&data);
    let dedup_key = sha256_hex(format!(
        "{}|{}|{}|{}|{}",
        salon, event.resource, event.resource_id, event.status, data_hash
    ));
    let inserted = entity_events::Entity::insert(entity_events::ActiveModel {
        salon_id: Set(salon.get()),
        resource: Set(truncated(&event.resource, 64)),
        resource_id: Set(truncated(&event.resource_id, 64)),
        status: Set(event.status.clone()),
        data_hash: Set(data_hash),
        dedup_key: Set(dedup_key),
        data: Set(storable_text(&data).into_owned()),
        created_at: Set(now),
        ..Default::default()
    })
    .on_conflict(
        OnConflict::column(entity_events::Column::DedupKey)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(txn)
    .await?;
    if inserted == 0 {
        return Ok(Stored::Duplicate);
    }
    if event.resource == "record" {
        if let Ok(record_id) = event.resource_id.parse::<i64>() {
            // The booking before this event, for what its messages should say.
            let previous = records::Entity::find()
                .filter(records::Column::SalonId.eq(salon.get()))
                .filter(records::Column::RecordId.eq(record_id))
                .one(txn)
                .await?;
            let booking = Booking::from_event(event);
            let version = super::messages::next_version(previous.as_ref(), &booking);
            upsert_record(txn, salon, record_id, &booking, version, now).await?;
            // The messages it causes, in the same transaction: a rolled-back batch owes none,
            // and a duplicate (refused above) owes none twice.
            super::messages::schedule(
                txn,
                salon,
                record_id,
                previous.as_ref(),
                &booking,
                version,
                now,
            )
            .await?;
        }
    }
    Ok(Stored::New)
}

/// A `record` event's booking, as the projection and its messages read it.
#[derive(Debug, Clone)]
pub(super) struct Booking {
    pub client_phone: Option<String>,
    pub client_name: Option<String>,
    pub datetime: Option<String>,
    pub staff: Option<String>,
    pub services: Option<String>,
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
        Self {
            client_phone: text(&client["phone"]),
            client_name: text(&client["name"]),
            datetime: text(&data["datetime"]),
            staff: text(&data["staff"]["name"]),
            services: services
                .filter(|s| !s.is_empty())
                .map(|s| truncated(&s, 1000)),
            status: event.status.clone(),
            deleted: event.status == "delete" || data["deleted"].as_bool().unwrap_or(false),
        }
    }
}

/// The booking, in the form booking messages read it.
async fn upsert_record<C: ConnectionTrait>(
    db: &C,
    salon: SalonId,
    record_id: i64,
    booking: &Booking,
    version: i32,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), DbErr> {
    records::Entity::insert(records::ActiveModel {
        salon_id: Set(salon.get()),
        record_id: Set(record_id),
        client_phone: Set(booking.client_phone.clone()),
        client_name: Set(booking.client_name.clone()),
        datetime: Set(booking.datetime.clone()),
        status: Set(booking.status.clone()),
        deleted: Set(booking.deleted),
        updated_at: Set(now),
        version: Set(version),
        staff: Set(booking.staff.clone()),
        services: Set(booking.services.clone()),
        ..Default::default()
    })
    .on_conflict(
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
            ])
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(())
}
