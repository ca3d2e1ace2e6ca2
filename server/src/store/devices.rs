//! The WhatsApp link: the salon's linked phone and the `whatsapp_devices` row (the supervisor's
//! link), and the simulator's credentials (sealed in `whatsapp_credentials`, like the web
//! backend's: one store, one seal and one fence for every backend's secrets).

use super::leases::{held, SessionLease};
use super::{audit, CredentialWrite, Store, StoreError};
use crate::db::entities::{salons, whatsapp_devices};
use crate::domain::SalonStatus;
use app::domain::{PhoneNumber, SalonId};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, ExprTrait, QueryFilter, QuerySelect, Set,
    TransactionTrait,
};
use serde_json::json;

/// Sets `linked_other_number` from the salon's phone in YClients and its linked WhatsApp phone as
/// stored now: the YClients phone when both are known and differ, else nothing. Returns it.
pub(super) async fn recompute_other_number<C: ConnectionTrait>(
    db: &C,
    salon: SalonId,
) -> Result<Option<PhoneNumber>, StoreError> {
    let phones: Option<(Option<String>, Option<String>)> = salons::Entity::find_by_id(salon.get())
        .select_only()
        .column(salons::Column::Phone)
        .column(salons::Column::WhatsappPhone)
        .into_tuple()
        .one(db)
        .await?;
    let Some((known, linked)) = phones else {
        return Ok(None);
    };
    let linked = linked.and_then(|p| PhoneNumber::parse(&p).ok());
    let other = known
        .and_then(|p| PhoneNumber::parse(&p).ok())
        .filter(|known| linked.as_ref().is_some_and(|l| l != known));
    salons::Entity::update_many()
        .col_expr(
            salons::Column::LinkedOtherNumber,
            Expr::value(other.as_ref().map(ToString::to_string)),
        )
        .filter(salons::Column::Id.eq(salon.get()))
        .exec(db)
        .await?;
    Ok(other)
}

/// What happened to a salon's WhatsApp, as the supervisor records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WhatsappHealth {
    Linked,
    LoggedOut,
    Failed,
    Replaced,
    Banned,
}

impl WhatsappHealth {
    pub const ALL: [WhatsappHealth; 5] = [
        WhatsappHealth::Linked,
        WhatsappHealth::LoggedOut,
        WhatsappHealth::Failed,
        WhatsappHealth::Replaced,
        WhatsappHealth::Banned,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WhatsappHealth::Linked => "linked",
            WhatsappHealth::LoggedOut => "logged_out",
            WhatsappHealth::Failed => "failed",
            WhatsappHealth::Replaced => "replaced",
            WhatsappHealth::Banned => "banned",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }
}

/// What a link changed, beside the phone itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Linked {
    /// The salon's own phone in YClients, when the linked one differs.
    pub other_number: Option<PhoneNumber>,
    /// The number the salon had before, when the phone linked another one.
    pub number_change_from: Option<PhoneNumber>,
}

/// Credentials a backend keeps in the database (the simulator's).
#[derive(Clone, PartialEq, Eq)]
pub struct StoredCredentials {
    pub phone: Option<String>,
    pub credentials: String,
}

impl std::fmt::Debug for StoredCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredCredentials")
            .field("phone", &self.phone)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// WhatsApp reported the link: the salon's linked phone (and whether it differs from the
    /// salon's phone in YClients), the device row, an audit entry — in one transaction. Returns
    /// the salon's own phone when it differs.
    ///
    /// Fenced: refused ([`StoreError::Fenced`]) unless `lease` is still the salon's session lease.
    pub async fn link_phone(
        &self,
        lease: &SessionLease,
        phone: &PhoneNumber,
        backend: &str,
    ) -> Result<Linked, StoreError> {
        let salon = lease.salon;
        let now = super::now();
        // Write first (SQLite cannot upgrade a read transaction after another writer committed;
        // PostgreSQL's row lock orders this against a concurrent company refresh), then derive
        // the warning from the phone YClients gave, as stored now.
        let txn = self.db.begin().await?;
        let linked = salons::Entity::update_many()
            .col_expr(
                salons::Column::WhatsappPhone,
                Expr::value(phone.to_string()),
            )
            .col_expr(
                salons::Column::WhatsappState,
                Expr::value(WhatsappHealth::Linked.as_str()),
            )
            .col_expr(
                salons::Column::WhatsappStateUntil,
                Expr::value(Option::<chrono::DateTime<chrono::Utc>>::None),
            )
            .col_expr(salons::Column::WhatsappStateAt, Expr::value(now))
            .col_expr(salons::Column::UpdatedAt, Expr::value(now))
            .filter(salons::Column::Id.eq(salon.get()))
            .filter(salons::Column::Id.in_subquery(held(lease)))
            .exec(&txn)
            .await?;
        if linked.rows_affected == 0 {
            txn.rollback().await?;
            return Err(StoreError::Fenced(salon));
        }
        // The number the salon had before (its phone unlinked us, or the admin disconnected it):
        // another number now waits for the admin's confirmation; the same one just comes back.
        let previous: Option<Option<String>> = salons::Entity::find_by_id(salon.get())
            .select_only()
            .column(salons::Column::WhatsappPreviousPhone)
            .into_tuple()
            .one(&txn)
            .await?;
        let number_change_from = previous
            .flatten()
            .and_then(|p| PhoneNumber::parse(&p).ok())
            .filter(|previous| previous != phone);
        salons::Entity::update_many()
            .col_expr(
                salons::Column::NumberChangeFrom,
                Expr::value(number_change_from.as_ref().map(ToString::to_string)),
            )
            .filter(salons::Column::Id.eq(salon.get()))
            .exec(&txn)
            .await?;
        let other = recompute_other_number(&txn, salon).await?;
        whatsapp_devices::Entity::insert(whatsapp_devices::ActiveModel {
            salon_id: Set(salon.get()),
            backend: Set(backend.to_owned()),
            phone: Set(Some(phone.to_string())),
            credentials: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
        })
        .on_conflict(
            OnConflict::column(whatsapp_devices::Column::SalonId)
                .update_columns([
                    whatsapp_devices::Column::Phone,
                    whatsapp_devices::Column::Backend,
                    whatsapp_devices::Column::UpdatedAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(&txn)
        .await?;
        audit::record(
            &txn,
            Some(salon),
            "whatsapp_linked",
            json!({"phone": phone.as_str(),
                   "differs_from_salon_phone": other.as_ref().map(ToString::to_string),
                   "replaces_number": number_change_from.as_ref().map(ToString::to_string)}),
        )
        .await?;
        txn.commit().await?;
        Ok(Linked {
            other_number: other,
            number_change_from,
        })
    }

    /// The admin confirmed the newly linked number: it becomes the salon's number. `false` when
    /// no change was waiting.
    pub async fn confirm_number_change(&self, salon: SalonId) -> Result<bool, StoreError> {
        let txn = self.db.begin().await?;
        let moved = salons::Entity::update_many()
            .col_expr(
                salons::Column::NumberChangeFrom,
                Expr::value(Option::<String>::None),
            )
            .col_expr(
                salons::Column::WhatsappPreviousPhone,
                Expr::value(Option::<String>::None),
            )
            .col_expr(salons::Column::UpdatedAt, Expr::value(super::now()))
            .filter(salons::Column::Id.eq(salon.get()))
            .filter(salons::Column::NumberChangeFrom.is_not_null())
            .filter(salons::Column::WhatsappPhone.is_not_null())
            .exec(&txn)
            .await?
            .rows_affected;
        if moved == 1 {
            audit::record(&txn, Some(salon), "whatsapp_number_confirmed", json!({})).await?;
        }
        txn.commit().await?;
        Ok(moved == 1)
    }

    /// What the supervisor saw happen to the salon's WhatsApp, kept so that health, metrics, a
    /// restart and the page agree when no session runs. `event` names an audit entry to write
    /// with it (`None`: a state the audit trail already has, such as a link).
    ///
    /// Fenced: refused ([`StoreError::Fenced`]) unless `lease` is still the salon's session lease.
    pub async fn record_whatsapp_state(
        &self,
        lease: &SessionLease,
        state: WhatsappHealth,
        until: Option<chrono::DateTime<chrono::Utc>>,
        event: Option<(&str, serde_json::Value)>,
    ) -> Result<(), StoreError> {
        let salon = lease.salon;
        let now = super::now();
        let txn = self.db.begin().await?;
        let recorded = salons::Entity::update_many()
            .col_expr(salons::Column::WhatsappState, Expr::value(state.as_str()))
            .col_expr(salons::Column::WhatsappStateUntil, Expr::value(until))
            .col_expr(salons::Column::WhatsappStateAt, Expr::value(now))
            .filter(salons::Column::Id.eq(salon.get()))
            .filter(salons::Column::Id.in_subquery(held(lease)))
            .exec(&txn)
            .await?;
        if recorded.rows_affected == 0 {
            txn.rollback().await?;
            return Err(StoreError::Fenced(salon));
        }
        if let Some((kind, details)) = event {
            audit::record(&txn, Some(salon), kind, details).await?;
        }
        txn.commit().await?;
        Ok(())
    }

    /// The state [`Self::record_whatsapp_state`] last wrote, with a ban's end.
    pub async fn whatsapp_state(
        &self,
        salon: SalonId,
    ) -> Result<Option<(WhatsappHealth, Option<chrono::DateTime<chrono::Utc>>)>, StoreError> {
        let row: Option<(Option<String>, Option<chrono::DateTime<chrono::Utc>>)> =
            salons::Entity::find_by_id(salon.get())
                .select_only()
                .column(salons::Column::WhatsappState)
                .column(salons::Column::WhatsappStateUntil)
                .into_tuple()
                .one(&self.db)
                .await?;
        Ok(row.and_then(|(state, until)| {
            state
                .as_deref()
                .and_then(WhatsappHealth::parse)
                .map(|s| (s, until))
        }))
    }

    /// How many salons active in YClients are in each WhatsApp state (the ones never linked
    /// since this was recorded count as `None`).
    pub async fn whatsapp_health(&self) -> Result<Vec<(Option<WhatsappHealth>, u64)>, StoreError> {
        let rows: Vec<(Option<String>, i64)> = salons::Entity::find()
            .select_only()
            .column(salons::Column::WhatsappState)
            .column_as(salons::Column::Id.count(), "n")
            .filter(salons::Column::Status.eq(SalonStatus::Active.as_str()))
            .group_by(salons::Column::WhatsappState)
            .into_tuple()
            .all(&self.db)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(state, n)| {
                (
                    state.as_deref().and_then(WhatsappHealth::parse),
                    u64::try_from(n).unwrap_or(0),
                )
            })
            .collect())
    }

    /// The phone the salon's device was last linked to.
    pub async fn device_phone(&self, salon: SalonId) -> Result<Option<PhoneNumber>, StoreError> {
        let phone: Option<Option<String>> = whatsapp_devices::Entity::find_by_id(salon.get())
            .select_only()
            .column(whatsapp_devices::Column::Phone)
            .into_tuple()
            .one(&self.db)
            .await?;
        Ok(phone.flatten().and_then(|p| PhoneNumber::parse(&p).ok()))
    }

    /// The link is gone (the phone logged us out, the admin disconnected): the device row and
    /// the salon's linked phone, which is remembered as the previous number (a relink with
    /// another one asks the admin first).
    ///
    /// Fenced: refused ([`StoreError::Fenced`]) unless `lease` is still the salon's session lease.
    pub async fn forget_device(&self, lease: &SessionLease) -> Result<(), StoreError> {
        let salon = lease.salon;
        let txn = self.db.begin().await?;
        // Written first (see `link_phone`); the previous number stays when none is linked now
        // (a second logout) and an unconfirmed change keeps the number it would replace.
        let forgotten = salons::Entity::update_many()
            .col_expr(
                salons::Column::WhatsappPreviousPhone,
                Expr::cust("COALESCE(number_change_from, whatsapp_phone, whatsapp_previous_phone)"),
            )
            .col_expr(
                salons::Column::NumberChangeFrom,
                Expr::value(Option::<String>::None),
            )
            .col_expr(
                salons::Column::WhatsappState,
                Expr::value(WhatsappHealth::LoggedOut.as_str()),
            )
            .col_expr(salons::Column::WhatsappStateAt, Expr::value(super::now()))
            .filter(salons::Column::Id.eq(salon.get()))
            .filter(salons::Column::Id.in_subquery(held(lease)))
            .exec(&txn)
            .await?;
        if forgotten.rows_affected == 0 {
            txn.rollback().await?;
            return Err(StoreError::Fenced(salon));
        }
        whatsapp_devices::Entity::delete_by_id(salon.get())
            .exec(&txn)
            .await?;
        salons::Entity::update_many()
            .col_expr(
                salons::Column::WhatsappPhone,
                Expr::value(Option::<String>::None),
            )
            .col_expr(
                salons::Column::LinkedOtherNumber,
                Expr::value(Option::<String>::None),
            )
            .col_expr(salons::Column::UpdatedAt, Expr::value(super::now()))
            .filter(salons::Column::Id.eq(salon.get()))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(())
    }

    /// Salons whose WhatsApp was linked and may run: reconnected at start-up without a scan.
    pub async fn salons_to_restore(&self) -> Result<Vec<SalonId>, StoreError> {
        let runnable: Vec<&str> = SalonStatus::ALL
            .into_iter()
            .filter(|s| s.may_run_whatsapp())
            .map(SalonStatus::as_str)
            .collect();
        let ids: Vec<i64> = salons::Entity::find()
            .select_only()
            .column(salons::Column::Id)
            .filter(salons::Column::WhatsappPhone.is_not_null())
            .filter(salons::Column::Status.is_in(runnable))
            // Never fight: a session another client took over waits for a person.
            .filter(
                salons::Column::WhatsappState
                    .ne(WhatsappHealth::Replaced.as_str())
                    .or(salons::Column::WhatsappState.is_null()),
            )
            .into_tuple()
            .all(&self.db)
            .await?;
        Ok(ids
            .into_iter()
            .filter_map(|id| SalonId::try_from(id).ok())
            .collect())
    }

    /// A backend's stored credentials for the salon, if it has any (the simulator's: one
    /// sealed row, namespace = the backend's name).
    pub async fn device_credentials(
        &self,
        salon: SalonId,
        backend: &'static str,
    ) -> Result<Option<StoredCredentials>, StoreError> {
        let Some(sealed) = self.credential(salon, backend, DEVICE_KEY).await? else {
            return Ok(None);
        };
        let stored: SealedDevice = serde_json::from_slice(&sealed)
            .map_err(|e| StoreError::Corrupt(format!("{backend} device of salon {salon}: {e}")))?;
        Ok(Some(StoredCredentials {
            phone: stored.phone,
            credentials: stored.credentials,
        }))
    }

    /// Keeps a backend's credentials for the salon, sealed. Fenced: refused
    /// ([`StoreError::Fenced`]) unless `lease` is still the salon's session lease.
    pub async fn save_device_credentials(
        &self,
        lease: &SessionLease,
        backend: &'static str,
        phone: &PhoneNumber,
        credentials: &str,
    ) -> Result<(), StoreError> {
        let value = serde_json::to_vec(&SealedDevice {
            phone: Some(phone.to_string()),
            credentials: credentials.to_owned(),
        })
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.write_credentials(
            lease,
            vec![CredentialWrite::Put {
                namespace: backend,
                key: DEVICE_KEY.to_owned(),
                value,
                stamp: None,
            }],
        )
        .await
        .map(|_| ())
    }

    /// Forgets a backend's credentials for the salon (the device was logged out). Fenced like
    /// [`Self::save_device_credentials`].
    pub async fn clear_device_credentials(
        &self,
        lease: &SessionLease,
        backend: &'static str,
    ) -> Result<(), StoreError> {
        self.write_credentials(
            lease,
            vec![CredentialWrite::DeletePrefix {
                namespace: backend,
                prefix: String::new(),
            }],
        )
        .await
        .map(|_| ())
    }
}

/// The key a backend's device credentials are stored under in its namespace.
const DEVICE_KEY: &str = "device";

/// What the simulator seals for a linked device.
#[derive(serde::Serialize, serde::Deserialize)]
struct SealedDevice {
    phone: Option<String>,
    credentials: String,
}
