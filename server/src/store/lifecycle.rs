//! The lifecycle inbox: `uninstall`/`freeze` stored before the 2xx, applied by a worker in order
//! per salon, retried with backoff over hours, and given up visibly.

use super::{audit, Store, StoreError};
use crate::db::entities::lifecycle_events;
use app::domain::SalonId;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Set, TransactionTrait,
};
use serde_json::json;
use std::collections::HashSet;

type Time = chrono::DateTime<chrono::Utc>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LifecycleKind {
    Uninstall,
    Freeze,
    /// Anything else YClients may send one day: stored and audited, nothing else.
    Other(String),
}

impl LifecycleKind {
    pub fn parse(event: &str) -> Self {
        match event {
            "uninstall" => LifecycleKind::Uninstall,
            "freeze" => LifecycleKind::Freeze,
            other => LifecycleKind::Other(other.to_owned()),
        }
    }

    /// A bounded name (for metrics labels): `uninstall`, `freeze`, or `other`.
    pub fn label(&self) -> &'static str {
        match self {
            LifecycleKind::Uninstall => "uninstall",
            LifecycleKind::Freeze => "freeze",
            LifecycleKind::Other(_) => "other",
        }
    }
}

#[derive(Debug, Clone)]
pub struct LifecycleEvent {
    pub id: i32,
    pub salon: SalonId,
    pub kind: LifecycleKind,
    pub attempts: i32,
    pub created_at: Time,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LifecycleCounts {
    pub pending: u64,
    pub given_up: u64,
}

fn unfinished() -> sea_orm::Condition {
    sea_orm::Condition::all()
        .add(lifecycle_events::Column::ProcessedAt.is_null())
        .add(lifecycle_events::Column::GaveUpAt.is_null())
}

impl Store {
    /// Stores a lifecycle event (before the webhook is answered).
    pub async fn receive_lifecycle(
        &self,
        salon: SalonId,
        application_id: i64,
        event: &str,
    ) -> Result<(), StoreError> {
        lifecycle_events::ActiveModel {
            salon_id: Set(salon.get()),
            application_id: Set(application_id),
            event: Set(super::storable_text(event).chars().take(64).collect()),
            attempts: Set(0),
            created_at: Set(super::now()),
            ..Default::default()
        }
        .insert(&self.db)
        .await?;
        Ok(())
    }

    /// The events to apply now: for each salon only its oldest unfinished event (order per
    /// salon), and only when its retry time has come.
    pub async fn due_lifecycle_events(&self) -> Result<Vec<LifecycleEvent>, StoreError> {
        let now = super::now();
        let rows = lifecycle_events::Entity::find()
            .filter(unfinished())
            .order_by_asc(lifecycle_events::Column::Id)
            .limit(1000)
            .all(&self.db)
            .await?;
        let mut seen = HashSet::new();
        let mut due = Vec::new();
        for row in rows {
            if !seen.insert(row.salon_id) {
                continue;
            }
            if row.next_attempt_at.is_some_and(|at| at > now) {
                continue;
            }
            let Ok(salon) = SalonId::try_from(row.salon_id) else {
                continue;
            };
            due.push(LifecycleEvent {
                id: row.id,
                salon,
                kind: LifecycleKind::parse(&row.event),
                attempts: row.attempts,
                created_at: row.created_at,
            });
        }
        Ok(due)
    }

    /// When the next unfinished event is due, if any.
    pub async fn next_lifecycle_due(&self) -> Result<Option<Time>, StoreError> {
        let next: Option<Option<Time>> = lifecycle_events::Entity::find()
            .select_only()
            .column(lifecycle_events::Column::NextAttemptAt)
            .filter(unfinished())
            .order_by_asc(lifecycle_events::Column::NextAttemptAt)
            .into_tuple()
            .one(&self.db)
            .await?;
        Ok(next.map(|at| at.unwrap_or_else(super::now)))
    }

    pub async fn lifecycle_applied(&self, event: &LifecycleEvent) -> Result<(), StoreError> {
        lifecycle_events::Entity::update_many()
            .col_expr(
                lifecycle_events::Column::Attempts,
                Expr::value(event.attempts + 1),
            )
            .col_expr(
                lifecycle_events::Column::ProcessedAt,
                Expr::value(super::now()),
            )
            .filter(lifecycle_events::Column::Id.eq(event.id))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    pub async fn lifecycle_retry_later(
        &self,
        event: &LifecycleEvent,
        next: Time,
        error: &str,
    ) -> Result<(), StoreError> {
        lifecycle_events::Entity::update_many()
            .col_expr(
                lifecycle_events::Column::Attempts,
                Expr::value(event.attempts + 1),
            )
            .col_expr(lifecycle_events::Column::NextAttemptAt, Expr::value(next))
            .col_expr(
                lifecycle_events::Column::LastError,
                Expr::value(super::storable_text(error).into_owned()),
            )
            .filter(lifecycle_events::Column::Id.eq(event.id))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Stops retrying an event: marked, and written to the audit trail (health shows it).
    pub async fn lifecycle_give_up(
        &self,
        event: &LifecycleEvent,
        error: &str,
    ) -> Result<(), StoreError> {
        let error = super::storable_text(error).into_owned();
        let txn = self.db.begin().await?;
        lifecycle_events::Entity::update_many()
            .col_expr(
                lifecycle_events::Column::Attempts,
                Expr::value(event.attempts + 1),
            )
            .col_expr(
                lifecycle_events::Column::GaveUpAt,
                Expr::value(super::now()),
            )
            .col_expr(
                lifecycle_events::Column::LastError,
                Expr::value(error.clone()),
            )
            .filter(lifecycle_events::Column::Id.eq(event.id))
            .exec(&txn)
            .await?;
        audit::record(
            &txn,
            Some(event.salon),
            "lifecycle_gave_up",
            json!({"lifecycle_event_id": event.id, "event": format!("{:?}", event.kind).to_lowercase(),
                   "attempts": event.attempts + 1, "error": error}),
        )
        .await?;
        txn.commit().await?;
        Ok(())
    }

    pub async fn lifecycle_counts(&self) -> Result<LifecycleCounts, StoreError> {
        Ok(LifecycleCounts {
            pending: lifecycle_events::Entity::find()
                .filter(unfinished())
                .count(&self.db)
                .await?,
            given_up: lifecycle_events::Entity::find()
                .filter(lifecycle_events::Column::GaveUpAt.is_not_null())
                .count(&self.db)
                .await?,
        })
    }
}
