//! The `integration_events` audit trail: what happened to a salon, in order, for operators.

use crate::db::entities::integration_events;
use app::domain::SalonId;
use sea_orm::{ActiveModelTrait, ConnectionTrait, DbErr, Set};

pub async fn record_event<C: ConnectionTrait>(
    db: &C,
    salon: Option<SalonId>,
    kind: &str,
    payload: serde_json::Value,
) -> Result<(), DbErr> {
    integration_events::ActiveModel {
        salon_id: Set(salon.map(SalonId::get)),
        kind: Set(kind.to_owned()),
        payload: Set(payload.to_string()),
        created_at: Set(chrono::Utc::now()),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(())
}
