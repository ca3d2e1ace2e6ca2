//! The WhatsApp link: the salon's linked phone and the `whatsapp_devices` row (the supervisor's
//! link, the simulator's credentials).

use super::{audit, Store, StoreError};
use crate::db::entities::{salons, whatsapp_devices};
use crate::domain::SalonStatus;
use app::domain::{PhoneNumber, SalonId};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect, Set, TransactionTrait,
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

/// Credentials a backend keeps in the database (the simulator's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCredentials {
    pub phone: Option<String>,
    pub credentials: String,
}

impl Store {
    /// WhatsApp reported the link: the salon's linked phone (and whether it differs from the
    /// salon's phone in YClients), the device row, an audit entry — in one transaction. Returns
    /// the salon's own phone when it differs.
    pub async fn link_phone(
        &self,
        salon: SalonId,
        phone: &PhoneNumber,
        backend: &str,
    ) -> Result<Option<PhoneNumber>, StoreError> {
        let now = super::now();
        // Write first (SQLite cannot upgrade a read transaction after another writer committed;
        // PostgreSQL's row lock orders this against a concurrent company refresh), then derive
        // the warning from the phone YClients gave, as stored now.
        let txn = self.db.begin().await?;
        salons::Entity::update_many()
            .col_expr(
                salons::Column::WhatsappPhone,
                Expr::value(phone.to_string()),
            )
            .col_expr(salons::Column::UpdatedAt, Expr::value(now))
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
            json!({"phone": phone.as_str(), "differs_from_salon_phone": other.as_ref().map(ToString::to_string)}),
        )
        .await?;
        txn.commit().await?;
        Ok(other)
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

    /// The link is gone (logged out, uninstalled): the device row and the salon's linked phone.
    pub async fn forget_device(&self, salon: SalonId) -> Result<(), StoreError> {
        let txn = self.db.begin().await?;
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
            .into_tuple()
            .all(&self.db)
            .await?;
        Ok(ids
            .into_iter()
            .filter_map(|id| SalonId::try_from(id).ok())
            .collect())
    }

    /// A backend's stored credentials for the salon, if it has any.
    pub async fn device_credentials(
        &self,
        salon: SalonId,
        backend: &str,
    ) -> Result<Option<StoredCredentials>, StoreError> {
        Ok(whatsapp_devices::Entity::find_by_id(salon.get())
            .filter(whatsapp_devices::Column::Backend.eq(backend))
            .one(&self.db)
            .await?
            .and_then(|row| {
                Some(StoredCredentials {
                    phone: row.phone,
                    credentials: row.credentials?,
                })
            }))
    }

    pub async fn save_device_credentials(
        &self,
        salon: SalonId,
        backend: &str,
        phone: &PhoneNumber,
        credentials: &str,
    ) -> Result<(), StoreError> {
        let now = super::now();
        whatsapp_devices::Entity::insert(whatsapp_devices::ActiveModel {
            salon_id: Set(salon.get()),
            backend: Set(backend.to_owned()),
            phone: Set(Some(phone.to_string())),
            credentials: Set(Some(credentials.to_owned())),
            created_at: Set(now),
            updated_at: Set(now),
        })
        .on_conflict(
            OnConflict::column(whatsapp_devices::Column::SalonId)
                .update_columns([
                    whatsapp_devices::Column::Backend,
                    whatsapp_devices::Column::Phone,
                    whatsapp_devices::Column::Credentials,
                    whatsapp_devices::Column::UpdatedAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(&self.db)
        .await?;
        Ok(())
    }

    pub async fn clear_device_credentials(&self, salon: SalonId) -> Result<(), StoreError> {
        whatsapp_devices::Entity::update_many()
            .col_expr(
                whatsapp_devices::Column::Credentials,
                Expr::value(Option::<String>::None),
            )
            .filter(whatsapp_devices::Column::SalonId.eq(salon.get()))
            .exec(&self.db)
            .await?;
        Ok(())
    }
}
