//! The `integration_events` audit trail: what happened to a salon, in order, for operators.

use super::{storable_text, Store};
use crate::db::entities::integration_events;
use app::domain::SalonId;
use sea_orm::{ActiveModelTrait, ConnectionTrait, DbErr, Set};

/// Appends to the audit trail inside the caller's connection or transaction.
pub(super) async fn record<C: ConnectionTrait>(
    db: &C,
    salon: Option<SalonId>,
    kind: &str,
    payload: serde_json::Value,
) -> Result<(), DbErr> {
    integration_events::ActiveModel {
        salon_id: Set(salon.map(SalonId::get)),
        kind: Set(kind.to_owned()),
        payload: Set(storable_text(&payload.to_string()).into_owned()),
        created_at: Set(super::now()),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(())
}

impl Store {
    /// An audit entry on its own (events that change no other row).
    pub async fn audit(
        &self,
        salon: Option<SalonId>,
        kind: &str,
        payload: serde_json::Value,
    ) -> Result<(), DbErr> {
        record(&self.db, salon, kind, payload).await
    }

    /// How many `kind` entries the salon's trail has since `since`.
    pub async fn audited_since(
        &self,
        salon: SalonId,
        kind: &str,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<u64, DbErr> {
        use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
        integration_events::Entity::find()
            .filter(integration_events::Column::SalonId.eq(salon.get()))
            .filter(integration_events::Column::Kind.eq(kind))
            .filter(integration_events::Column::CreatedAt.gte(since))
            .count(&self.db)
            .await
    }
}
