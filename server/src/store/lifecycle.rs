//! The lifecycle inbox: `uninstall`/`freeze` stored before the 2xx, applied by a worker in order
//! per salon, retried with backoff over hours, and given up visibly. Claimed like the callback
//! outbox: a worker takes an event with a lease before applying it, and only the lease's holder
//! may record the outcome, so with several instances on one database each event is applied once.

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

/// Unfinished and held by no worker (never leased, or its lease ran out).
fn claimable(now: Time) -> sea_orm::Condition {
    unfinished().add(
        sea_orm::Condition::any()
            .add(lifecycle_events::Column::LeaseUntil.is_null())
            .add(lifecycle_events::Column::LeaseUntil.lt(now)),
    )
}

/// An update of `event` that only its lease's holder `worker` may make; it frees the lease.
fn by_holder(
    event: &LifecycleEvent,
    worker: &str,
) -> sea_orm::UpdateMany<lifecycle_events::Entity> {
    lifecycle_events::Entity::update_many()
        .col_expr(
            lifecycle_events::Column::Attempts,
            Expr::value(event.attempts + 1),
        )
        .col_expr(
            lifecycle_events::Column::LeaseOwner,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            lifecycle_events::Column::LeaseUntil,
            Expr::value(Option::<Time>::None),
        )
        .filter(lifecycle_events::Column::Id.eq(event.id))
        .filter(lifecycle_events::Column::LeaseOwner.eq(worker))
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
    /// salon), and only when its retry time has come and no worker holds it (while one does, the
    /// salon's later events wait).
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
            if row.next_attempt_at.is_some_and(|at| at > now)
                || row.lease_until.is_some_and(|until| until >= now)
            {
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

    /// When the next unfinished event is due (its schedule or its lease, whichever is later).
    pub async fn next_lifecycle_due(&self) -> Result<Option<Time>, StoreError> {
        let next: Option<(Option<Time>, Option<Time>)> = lifecycle_events::Entity::find()
            .select_only()
            .column(lifecycle_events::Column::NextAttemptAt)
            .column(lifecycle_events::Column::LeaseUntil)
            .filter(unfinished())
            .order_by_asc(lifecycle_events::Column::NextAttemptAt)
            .into_tuple()
            .one(&self.db)
            .await?;
        Ok(next.map(|(at, lease)| {
            let at = at.unwrap_or_else(super::now);
            lease.map_or(at, |lease| lease.max(at))
        }))
    }

    /// Takes an event for `worker` until `lease_until`; `false` when another worker holds it or
    /// it is finished.
    pub async fn claim_lifecycle(
        &self,
        event: &LifecycleEvent,
        worker: &str,
        lease_until: Time,
    ) -> Result<bool, StoreError> {
        let result = lifecycle_events::Entity::update_many()
            .col_expr(
                lifecycle_events::Column::LeaseOwner,
                Expr::value(worker.to_owned()),
            )
            .col_expr(
                lifecycle_events::Column::LeaseUntil,
                Expr::value(lease_until),
            )
            .filter(lifecycle_events::Column::Id.eq(event.id))
            .filter(lifecycle_events::Column::Attempts.eq(event.attempts))
            .filter(claimable(super::now()))
            .exec(&self.db)
            .await?;
        Ok(result.rows_affected == 1)
    }

    /// A worker that stops frees the events it holds (due at once for whoever applies next).
    pub async fn release_lifecycle_leases(&self, worker: &str) -> Result<u64, StoreError> {
        Ok(lifecycle_events::Entity::update_many()
            .col_expr(
                lifecycle_events::Column::LeaseOwner,
                Expr::value(Option::<String>::None),
            )
            .col_expr(
                lifecycle_events::Column::LeaseUntil,
                Expr::value(Option::<Time>::None),
            )
            .filter(lifecycle_events::Column::LeaseOwner.eq(worker))
            .exec(&self.db)
            .await?
            .rows_affected)
    }

    /// The event is applied (only its lease's holder may say so).
    pub async fn lifecycle_applied(
        &self,
        event: &LifecycleEvent,
        worker: &str,
    ) -> Result<(), StoreError> {
        by_holder(event, worker)
            .col_expr(
                lifecycle_events::Column::ProcessedAt,
                Expr::value(super::now()),
            )
            .exec(&self.db)
            .await?;
        Ok(())
    }

    pub async fn lifecycle_retry_later(
        &self,
        event: &LifecycleEvent,
        worker: &str,
        next: Time,
        error: &str,
    ) -> Result<(), StoreError> {
        by_holder(event, worker)
            .col_expr(lifecycle_events::Column::NextAttemptAt, Expr::value(next))
            .col_expr(
                lifecycle_events::Column::LastError,
                Expr::value(super::storable_text(error).into_owned()),
            )
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Stops retrying an event: marked, and written to the audit trail (health shows it).
    pub async fn lifecycle_give_up(
        &self,
        event: &LifecycleEvent,
        worker: &str,
        error: &str,
    ) -> Result<(), StoreError> {
        let error = super::storable_text(error).into_owned();
        let txn = self.db.begin().await?;
        let marked = by_holder(event, worker)
            .col_expr(
                lifecycle_events::Column::GaveUpAt,
                Expr::value(super::now()),
            )
            .col_expr(
                lifecycle_events::Column::LastError,
                Expr::value(error.clone()),
            )
            .exec(&txn)
            .await?
            .rows_affected;
        if marked == 0 {
            // Another worker holds it now; it decides.
            txn.rollback().await?;
            return Ok(());
        }
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
