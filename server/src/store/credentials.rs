//! WhatsApp credentials, sealed, in `whatsapp_credentials`: a key/value store per salon and
//! namespace (the web backend's Signal and app-state stores, its device; the simulator's
//! device). Every value is sealed with [`crate::domain::CredentialKeys`] for its own row
//! (salon, namespace, key as associated data) and opened on the way out; the database only
//! ever holds ciphertext, the key id that sealed it and, for the sweeps, a time.
//!
//! Writes are a session owner's: [`Store::write_credentials`] and the sweeps take the
//! [`SessionLease`] and run in one transaction fenced by it (`leases::fence`): a paused old
//! owner's write is refused with [`StoreError::Fenced`] and changes nothing; so is forgetting a
//! device WhatsApp logged out ([`Store::purge_credentials_fenced`]). The uninstall's purge
//! ([`Store::purge_credentials`]) is not an owner's write and is not fenced.

use super::leases::{fence, SessionLease};
use super::{Store, StoreError};
use crate::db::entities::whatsapp_credentials as creds;
use crate::domain::{CredentialKeys, RowContext};
use app::domain::SalonId;
use sea_orm::sea_query::{Expr, Func, OnConflict};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, ExprTrait, QueryFilter, QueryOrder,
    QuerySelect, Set, TransactionTrait,
};

/// Rows per multi-row `INSERT`/`IN (…)`: well inside SQLite's and PostgreSQL's bound-parameter
/// limits (7 columns a row).
const CHUNK: usize = 200;

/// One change in a [`Store::write_credentials`] batch, applied in order.
#[derive(Clone, PartialEq, Eq)]
pub enum CredentialWrite {
    /// Insert or replace the value (plaintext here; sealed on the way in). `stamp` is the time
    /// the namespace's sweep deletes by, if it has one.
    Put {
        namespace: &'static str,
        key: String,
        value: Vec<u8>,
        stamp: Option<i64>,
    },
    Delete {
        namespace: &'static str,
        key: String,
    },
    /// Every key of the namespace that starts with `prefix` (all of them for `""`).
    DeletePrefix {
        namespace: &'static str,
        prefix: String,
    },
}

impl std::fmt::Debug for CredentialWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the value: it is the secret.
        match self {
            CredentialWrite::Put { namespace, key, .. } => write!(f, "Put({namespace}/{key})"),
            CredentialWrite::Delete { namespace, key } => write!(f, "Delete({namespace}/{key})"),
            CredentialWrite::DeletePrefix { namespace, prefix } => {
                write!(f, "DeletePrefix({namespace}/{prefix}*)")
            }
        }
    }
}

/// `key` starts with `prefix`, in SQL that means the same on SQLite and PostgreSQL (`LIKE`
/// would need escaping and is case-insensitive on SQLite; `substr` counts characters on both).
fn key_starts_with(prefix: &str) -> Condition {
    if prefix.is_empty() {
        return Condition::all();
    }
    // `integer`, not `bigint`: PostgreSQL has no `substr(text, integer, bigint)`.
    let length = i32::try_from(prefix.chars().count()).unwrap_or(i32::MAX);
    Condition::all().add(
        Expr::expr(
            Func::cust("substr")
                .arg(Expr::col(creds::Column::Key))
                .arg(1i32)
                .arg(length),
        )
        .eq(prefix),
    )
}

fn of(salon: SalonId, namespace: &str) -> Condition {
    Condition::all()
        .add(creds::Column::SalonId.eq(salon.get()))
        .add(creds::Column::Namespace.eq(namespace))
}

impl Store {
    fn credential_keys(&self) -> Result<&CredentialKeys, StoreError> {
        self.credential_keys
            .as_ref()
            .ok_or(StoreError::NoCredentialKeys)
    }

    fn open_row(&self, row: creds::Model) -> Result<(String, Vec<u8>), StoreError> {
        let salon = SalonId::try_from(row.salon_id)
            .map_err(|_| StoreError::Corrupt(format!("credential of salon {}", row.salon_id)))?;
        let context = RowContext {
            salon: row.salon_id,
            namespace: &row.namespace,
            key: &row.key,
        };
        let value = self
            .credential_keys()?
            .open(&row.key_id, context, &row.value)
            .map_err(|reason| StoreError::Sealed {
                salon,
                namespace: row.namespace.clone(),
                key: row.key.clone(),
                reason,
            })?;
        Ok((row.key, value))
    }

    /// The value stored under `(namespace, key)` for the salon, opened.
    pub async fn credential(
        &self,
        salon: SalonId,
        namespace: &str,
        key: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        creds::Entity::find()
            .filter(of(salon, namespace))
            .filter(creds::Column::Key.eq(key))
            .one(&self.db)
            .await?
            .map(|row| self.open_row(row).map(|(_, value)| value))
            .transpose()
    }

    /// The values stored under these keys (those that exist), opened.
    pub async fn credentials_in(
        &self,
        salon: SalonId,
        namespace: &str,
        keys: &[String],
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut found = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(CHUNK) {
            let rows = creds::Entity::find()
                .filter(of(salon, namespace))
                .filter(creds::Column::Key.is_in(chunk.iter().cloned()))
                .all(&self.db)
                .await?;
            for row in rows {
                found.push(self.open_row(row)?);
            }
        }
        Ok(found)
    }

    /// Every value of the namespace whose key starts with `prefix`, opened, by key.
    pub async fn credentials_with_prefix(
        &self,
        salon: SalonId,
        namespace: &str,
        prefix: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        creds::Entity::find()
            .filter(of(salon, namespace))
            .filter(key_starts_with(prefix))
            .order_by_asc(creds::Column::Key)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|row| self.open_row(row))
            .collect()
    }

    /// The keys of the namespace that start with `prefix` (nothing is opened).
    pub async fn credential_keys_with_prefix(
        &self,
        salon: SalonId,
        namespace: &str,
        prefix: &str,
    ) -> Result<Vec<String>, StoreError> {
        Ok(creds::Entity::find()
            .select_only()
            .column(creds::Column::Key)
            .filter(of(salon, namespace))
            .filter(key_starts_with(prefix))
            .order_by_asc(creds::Column::Key)
            .into_tuple()
            .all(&self.db)
            .await?)
    }

    /// Applies `writes` in order, in one transaction fenced by `lease`: all of them, or none
    /// and [`StoreError::Fenced`] when the lease is no longer held. Every value is sealed under
    /// the current sealing key (a rewrite re-seals what an old key sealed). Returns how many
    /// rows the deletes removed.
    pub async fn write_credentials(
        &self,
        lease: &SessionLease,
        writes: Vec<CredentialWrite>,
    ) -> Result<u64, StoreError> {
        let keys = self.credential_keys()?;
        let salon = lease.salon;
        let now = super::now();
        let txn = self.db.begin().await?;
        if let Err(e) = fence(&txn, lease).await {
            txn.rollback().await?;
            return Err(e);
        }
        let mut deleted = 0;
        // Consecutive puts go out as multi-row upserts; a key put twice in one run keeps its
        // last value (one statement may not upsert a row twice on PostgreSQL).
        let mut puts: Vec<creds::ActiveModel> = Vec::new();
        let mut positions: std::collections::HashMap<(&'static str, String), usize> =
            std::collections::HashMap::new();
        for write in writes {
            match write {
                CredentialWrite::Put {
                    namespace,
                    key,
                    value,
                    stamp,
                } => {
                    let sealed = keys.seal(
                        RowContext {
                            salon: salon.get(),
                            namespace,
                            key: &key,
                        },
                        &value,
                    );
                    let row = creds::ActiveModel {
                        salon_id: Set(salon.get()),
                        namespace: Set(namespace.to_owned()),
                        key: Set(key.clone()),
                        value: Set(sealed.bytes),
                        key_id: Set(sealed.key_id),
                        stamp: Set(stamp),
                        updated_at: Set(now),
                    };
                    match positions.get(&(namespace, key.clone())) {
                        Some(&at) => puts[at] = row,
                        None => {
                            positions.insert((namespace, key), puts.len());
                            puts.push(row);
                        }
                    }
                    if puts.len() >= CHUNK {
                        upsert(&txn, &mut puts, &mut positions).await?;
                    }
                }
                CredentialWrite::Delete { namespace, key } => {
                    upsert(&txn, &mut puts, &mut positions).await?;
                    deleted += creds::Entity::delete_many()
                        .filter(of(salon, namespace))
                        .filter(creds::Column::Key.eq(key))
                        .exec(&txn)
                        .await?
                        .rows_affected;
                }
                CredentialWrite::DeletePrefix { namespace, prefix } => {
                    upsert(&txn, &mut puts, &mut positions).await?;
                    deleted += creds::Entity::delete_many()
                        .filter(of(salon, namespace))
                        .filter(key_starts_with(&prefix))
                        .exec(&txn)
                        .await?
                        .rows_affected;
                }
            }
        }
        upsert(&txn, &mut puts, &mut positions).await?;
        txn.commit().await?;
        Ok(deleted)
    }

    /// Removes the value under `(namespace, key)` and returns it, fenced by `lease`. Of two
    /// concurrent takes only the one whose delete removed the row gets the value.
    pub async fn take_credential(
        &self,
        lease: &SessionLease,
        namespace: &'static str,
        key: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(value) = self.credential(lease.salon, namespace, key).await? else {
            return Ok(None);
        };
        let removed = self
            .write_credentials(
                lease,
                vec![CredentialWrite::Delete {
                    namespace,
                    key: key.to_owned(),
                }],
            )
            .await?;
        Ok((removed == 1).then_some(value))
    }

    /// Deletes the namespace's rows whose stamp is before `cutoff` (or at it, `inclusive`),
    /// fenced by `lease`. Rows without a stamp stay. Returns how many went.
    pub async fn sweep_credentials(
        &self,
        lease: &SessionLease,
        namespace: &'static str,
        cutoff: i64,
        inclusive: bool,
    ) -> Result<u64, StoreError> {
        let txn = self.db.begin().await?;
        if let Err(e) = fence(&txn, lease).await {
            txn.rollback().await?;
            return Err(e);
        }
        let due = if inclusive {
            creds::Column::Stamp.lte(cutoff)
        } else {
            creds::Column::Stamp.lt(cutoff)
        };
        let swept = creds::Entity::delete_many()
            .filter(of(lease.salon, namespace))
            .filter(due)
            .exec(&txn)
            .await?
            .rows_affected;
        txn.commit().await?;
        Ok(swept)
    }

    /// Forgets every credential of the salon, of every backend, fenced by `lease`: WhatsApp
    /// logged the owner's device out. A paused old owner learning of its old device's logout
    /// late is refused ([`StoreError::Fenced`]) and leaves the new owner's device alone.
    pub async fn purge_credentials_fenced(&self, lease: &SessionLease) -> Result<u64, StoreError> {
        let txn = self.db.begin().await?;
        if let Err(e) = fence(&txn, lease).await {
            txn.rollback().await?;
            return Err(e);
        }
        let purged = creds::Entity::delete_many()
            .filter(creds::Column::SalonId.eq(lease.salon.get()))
            .exec(&txn)
            .await?
            .rows_affected;
        txn.commit().await?;
        Ok(purged)
    }

    /// Forgets every credential of the salon, of every backend. Not fenced: an uninstall or the
    /// supervisor forgetting a device that WhatsApp logged out, not an owner's ongoing writes.
    pub async fn purge_credentials(&self, salon: SalonId) -> Result<u64, StoreError> {
        Ok(creds::Entity::delete_many()
            .filter(creds::Column::SalonId.eq(salon.get()))
            .exec(&self.db)
            .await?
            .rows_affected)
    }

    /// How many credentials are sealed under each key id (rotation: when none is left under an
    /// old key, it can leave `CREDENTIALS_KEYS`).
    pub async fn credentials_by_key_id(&self) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(creds::Entity::find()
            .select_only()
            .column(creds::Column::KeyId)
            .column_as(creds::Column::SalonId.count(), "n")
            .group_by(creds::Column::KeyId)
            .order_by_asc(creds::Column::KeyId)
            .into_tuple()
            .all(&self.db)
            .await?)
    }
}

/// Sends the buffered puts as one multi-row upsert.
async fn upsert<C: ConnectionTrait>(
    db: &C,
    puts: &mut Vec<creds::ActiveModel>,
    positions: &mut std::collections::HashMap<(&'static str, String), usize>,
) -> Result<(), StoreError> {
    positions.clear();
    if puts.is_empty() {
        return Ok(());
    }
    creds::Entity::insert_many(std::mem::take(puts))
        .on_conflict(
            OnConflict::columns([
                creds::Column::SalonId,
                creds::Column::Namespace,
                creds::Column::Key,
            ])
            .update_columns([
                creds::Column::Value,
                creds::Column::KeyId,
                creds::Column::Stamp,
                creds::Column::UpdatedAt,
            ])
            .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}
