//! The store: every write to `salons`, the callback outbox, `whatsapp_devices`, the lifecycle
//! inbox, entity events and the audit trail, one function per transition. Each transition's guard
//! is in its SQL (`UPDATE … WHERE status IN (the statuses the domain allows it from)`), so it
//! holds across tasks and processes; the services above never build `update_many` chains.
//!
//! A second implementation (another database, a cache in front) would replace this module's
//! functions one for one; nothing above it sees sea-orm.

mod audit;
mod credentials;
mod devices;
mod entity_events;
mod instances;
mod leases;
mod lifecycle;
mod messages;
mod ops;
mod outbox;
mod salons;

pub use credentials::CredentialWrite;
pub use devices::{Linked, StoredCredentials, WhatsappHealth};
pub use entity_events::{EntityEvent, Stored};
pub use instances::TakenCall;
pub use leases::SessionLease;
pub use lifecycle::{LifecycleCounts, LifecycleEvent, LifecycleKind};
pub use messages::{Claimed, MessageCounts, OutboxMessage, Told};
pub use ops::{SalonHistory, SalonQuery, TROUBLED_WHATSAPP};
pub use outbox::{AttemptRecord, Callback, Claim, OutboxCounts, PendingPair};
pub(crate) use salons::user_id;
pub use salons::{fallback_title, Handover, Installation, Registered, Salon, UnfreezeNoticedBy};

use crate::domain::{SalonStatus, TransitionRefused, UnknownStatus};
use app::domain::SalonId;
use sea_orm::{DatabaseConnection, DbErr};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] DbErr),
    #[error(transparent)]
    Refused(#[from] TransitionRefused),
    #[error("salon {0} is not stored")]
    UnknownSalon(SalonId),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// An entry by a YClients user other than the one who connected the salon (or by a link
    /// that names no user): refused, nothing written.
    #[error("salon {0} was connected by another YClients user")]
    ConnectedByAnother(SalonId),
    /// An entry by the YClients user an operator released the salon from, before another user
    /// connected it: refused, nothing written.
    #[error("salon {0} was released from this YClients user")]
    Released(SalonId),
    /// A write carried a session lease another instance has taken since (or that was freed).
    #[error("the WhatsApp session lease of salon {0} is no longer held")]
    Fenced(SalonId),
    /// A sealed credential did not open (a retired key, a value moved or tampered with).
    #[error("WhatsApp credential {namespace}/{key} of salon {salon}: {reason}")]
    Sealed {
        salon: SalonId,
        namespace: String,
        key: String,
        reason: crate::domain::OpenError,
    },
    /// This store was built without the keys that seal credentials (a tool, not the server).
    #[error("no credential keys are configured for this store")]
    NoCredentialKeys,
}

impl From<UnknownStatus> for StoreError {
    fn from(e: UnknownStatus) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

/// The database behind the stages. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
    /// The confirmed webhook-secret hashes entity webhooks are checked against, cached; every
    /// path that changes one (a confirmation adopting a new pair, an uninstall) forgets it.
    secrets: std::sync::Arc<SecretCache>,
    /// What booking messages take the time from (injected in tests).
    clock: crate::clock::SharedClock,
    /// The keys the WhatsApp credentials are sealed under (`CREDENTIALS_KEYS`).
    credential_keys: Option<crate::domain::CredentialKeys>,
}

impl Store {
    pub fn new(db: DatabaseConnection) -> Self {
        Self {
            db,
            secrets: std::sync::Arc::default(),
            clock: crate::clock::system(),
            credential_keys: None,
        }
    }

    /// The same store sealing and opening WhatsApp credentials with `keys`.
    pub fn with_credential_keys(mut self, keys: crate::domain::CredentialKeys) -> Self {
        self.credential_keys = Some(keys);
        self
    }

    /// The same store reading the time from `clock` (booking messages schedule by it).
    pub fn with_clock(mut self, clock: crate::clock::SharedClock) -> Self {
        self.clock = clock;
        self
    }

    pub fn clock(&self) -> &crate::clock::SharedClock {
        &self.clock
    }

    /// The same store (its secret cache, clock and keys shared) over another connection pool:
    /// the entity webhook writers' own (`webhooks::writer`).
    pub fn with_connection(&self, db: DatabaseConnection) -> Self {
        Self { db, ..self.clone() }
    }

    /// The connection, for health's ping and for tests that inspect rows.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }
}

/// `[a, b]` → the column values of the statuses, for an `IN` guard.
fn status_values(statuses: &[SalonStatus]) -> Vec<&'static str> {
    statuses.iter().map(|s| s.as_str()).collect()
}

/// PostgreSQL's `text` refuses U+0000; outside input keeps everything else.
pub fn storable_text(value: &str) -> std::borrow::Cow<'_, str> {
    if value.contains('\0') {
        std::borrow::Cow::Owned(value.replace('\0', "\u{FFFD}"))
    } else {
        std::borrow::Cow::Borrowed(value)
    }
}

fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

#[cfg(test)]
mod tests {
    use super::storable_text;

    #[test]
    fn nul_characters_are_replaced_before_they_reach_the_database() {
        assert_eq!(storable_text("a\0b"), "a\u{FFFD}b");
        assert!(matches!(
            storable_text("plain"),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}

/// Confirmed webhook-secret hashes per salon. A read that raced an invalidation is not cached
/// (the epoch moved), so a forgotten hash never comes back from a read that began before it.
///
/// An entry lives [`SECRET_CACHE_TTL`]: the instance that rotates or ends a secret forgets it at
/// once, but another instance of the same database learns of it only by reading again — until
/// 2026-12-05 it never did, and a revoked webhook URL kept working there until a restart
/// (`webhooks::a_revoked_webhook_secret_stops_working_on_every_instance`).
#[derive(Default)]
struct SecretCache(std::sync::Mutex<SecretEntries>);

#[derive(Default)]
struct SecretEntries {
    epoch: u64,
    hashes: std::collections::HashMap<SalonId, (String, std::time::Instant)>,
}

/// More salons than this and the cache starts over (bounded memory).
const SECRET_CACHE_MAX: usize = 100_000;

/// How long a cached hash is believed: the longest a secret rotated or ended on another
/// instance still opens this one. One read per salon per this long is nothing beside the
/// webhooks it serves.
pub const SECRET_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(2);

impl SecretCache {
    fn entries(&self) -> std::sync::MutexGuard<'_, SecretEntries> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The cached hash, or the epoch to cache a fresh read under.
    fn get(&self, salon: SalonId) -> Result<String, u64> {
        let entries = self.entries();
        entries
            .hashes
            .get(&salon)
            .filter(|(_, read)| read.elapsed() < SECRET_CACHE_TTL)
            .map(|(hash, _)| hash.clone())
            .ok_or(entries.epoch)
    }

    fn put(&self, salon: SalonId, hash: &str, read_at_epoch: u64) {
        let mut entries = self.entries();
        if entries.epoch != read_at_epoch {
            return;
        }
        if entries.hashes.len() >= SECRET_CACHE_MAX {
            entries.hashes.clear();
        }
        entries
            .hashes
            .insert(salon, (hash.to_owned(), std::time::Instant::now()));
    }

    fn forget(&self, salon: SalonId) {
        let mut entries = self.entries();
        entries.epoch += 1;
        entries.hashes.remove(&salon);
    }
}
