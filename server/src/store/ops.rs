//! What the operator's console reads (the salons list with its filters, one salon's history) and
//! the one row it changes itself (a given-up lifecycle event, queued again). Every filter has an
//! index (migration `m20261202_120000_ops_console`).

use super::{audit, Store, StoreError};
use crate::db::entities::{
    callback_attempts, callback_outbox, entity_events, integration_events, lifecycle_events, salons,
};
use crate::domain::{CallbackPurpose, OutboxStatus, SalonStatus};
use app::domain::SalonId;
use sea_orm::sea_query::{Alias, Expr, Func, Query, SelectStatement};
use sea_orm::{
    ColumnTrait, Condition, EntityTrait, ExprTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
};
use serde_json::json;

/// WhatsApp states that need a person while the salon is active.
pub const TROUBLED_WHATSAPP: [&str; 4] = ["failed", "replaced", "banned", "logged_out"];

/// The list's filters, validated.
#[derive(Debug, Clone, Default)]
pub struct SalonQuery {
    pub text: Option<String>,
    pub status: Option<SalonStatus>,
    /// `Some(None)`: no state recorded.
    pub whatsapp: Option<Option<String>>,
    pub attention: bool,
    /// A callback still pending after this instant counts as "not confirmed".
    pub pending_since: chrono::DateTime<chrono::Utc>,
    pub offset: u64,
    pub limit: u64,
}

/// One salon's history for its console page.
pub struct SalonHistory {
    pub audit: Vec<integration_events::Model>,
    pub callbacks: Vec<callback_outbox::Model>,
    /// Every attempt of those deliveries (the latest 500, oldest first).
    pub attempts: Vec<callback_attempts::Model>,
    pub lifecycle: Vec<lifecycle_events::Model>,
    pub webhook_counts: Vec<(String, i64)>,
}

/// `EXISTS`: the salon's latest activation callback was refused, or is still pending since before
/// `since` (a refused rotation of the webhook secret changes nothing for the salon: not counted).
fn unconfirmed_callback(since: chrono::DateTime<chrono::Utc>) -> SelectStatement {
    use callback_outbox::Column as C;
    let (o, latest) = (Alias::new("o"), Alias::new("latest"));
    let newest = Query::select()
        .expr(Expr::col((latest.clone(), C::Id)).max())
        .from_as(callback_outbox::Entity, latest.clone())
        .and_where(
            Expr::col((latest.clone(), C::SalonId)).equals((salons::Entity, salons::Column::Id)),
        )
        .and_where(Expr::col((latest, C::Purpose)).eq(CallbackPurpose::Activation.as_str()))
        .to_owned();
    Query::select()
        .expr(Expr::val(1))
        .from_as(callback_outbox::Entity, o.clone())
        .and_where(Expr::col((o.clone(), C::SalonId)).equals((salons::Entity, salons::Column::Id)))
        .and_where(Expr::col((o.clone(), C::Id)).in_subquery(newest))
        .cond_where(
            Condition::any()
                .add(Expr::col((o.clone(), C::Status)).eq(OutboxStatus::Failed.as_str()))
                .add(
                    Condition::all()
                        .add(Expr::col((o.clone(), C::Status)).eq(OutboxStatus::Pending.as_str()))
                        .add(Expr::col((o, C::CreatedAt)).lt(since)),
                ),
        )
        .to_owned()
}

/// `EXISTS`: a lifecycle event of the salon's the inbox gave up on, not applied since.
fn given_up_lifecycle() -> SelectStatement {
    use lifecycle_events::Column as L;
    let l = Alias::new("l");
    Query::select()
        .expr(Expr::val(1))
        .from_as(lifecycle_events::Entity, l.clone())
        .and_where(Expr::col((l.clone(), L::SalonId)).equals((salons::Entity, salons::Column::Id)))
        .and_where(Expr::col((l.clone(), L::GaveUpAt)).is_not_null())
        .and_where(Expr::col((l, L::ProcessedAt)).is_null())
        .to_owned()
}

fn condition(query: &SalonQuery) -> Condition {
    let mut all = Condition::all();
    if let Some(text) = query
        .text
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        let cleaned = text.replace(['\\', '%', '_'], "");
        let pattern = format!("%{cleaned}%");
        // `LOWER` for PostgreSQL (which folds Cyrillic too); the plain `LIKE` for SQLite, whose
        // `LIKE` ignores ASCII case and whose `LOWER` folds ASCII only.
        let mut any = Condition::any()
            .add(
                Expr::expr(Func::lower(Expr::col(salons::Column::Title)))
                    .like(format!("%{}%", cleaned.to_lowercase())),
            )
            .add(salons::Column::Title.like(pattern.clone()))
            .add(salons::Column::Phone.like(pattern));
        if let Ok(id) = text.parse::<i64>() {
            any = any.add(salons::Column::Id.eq(id));
        }
        all = all.add(any);
    }
    if let Some(status) = query.status {
        all = all.add(salons::Column::Status.eq(status.as_str()));
    }
    match &query.whatsapp {
        Some(Some(state)) => all = all.add(salons::Column::WhatsappState.eq(state.clone())),
        Some(None) => all = all.add(salons::Column::WhatsappState.is_null()),
        None => {}
    }
    if query.attention {
        all = all.add(
            Condition::any()
                .add(
                    Condition::all()
                        .add(salons::Column::Status.eq(SalonStatus::Active.as_str()))
                        .add(salons::Column::WhatsappState.is_in(TROUBLED_WHATSAPP)),
                )
                .add(Expr::exists(unconfirmed_callback(query.pending_since)))
                .add(Expr::exists(given_up_lifecycle())),
        );
    }
    all
}

impl Store {
    /// The salon's row as stored (the console shows every column it knows).
    pub async fn ops_salon(&self, salon: SalonId) -> Result<Option<salons::Model>, StoreError> {
        Ok(salons::Entity::find_by_id(salon.get())
            .one(&self.db)
            .await?)
    }

    /// One page of salons matching `query`, by id, and how many match in all.
    pub async fn ops_salons(
        &self,
        query: &SalonQuery,
    ) -> Result<(Vec<salons::Model>, u64), StoreError> {
        let filter = condition(query);
        let total = salons::Entity::find()
            .filter(filter.clone())
            .count(&self.db)
            .await?;
        let rows = salons::Entity::find()
            .filter(filter)
            .order_by_asc(salons::Column::Id)
            .offset(query.offset)
            .limit(query.limit)
            .all(&self.db)
            .await?;
        Ok((rows, total))
    }

    /// The salon's audit trail, callback deliveries (with their attempts) and lifecycle events
    /// (newest first, the latest 200 of each) and its stored webhook events counted by resource.
    pub async fn ops_history(&self, salon: SalonId) -> Result<SalonHistory, StoreError> {
        let id = salon.get();
        let audit = integration_events::Entity::find()
            .filter(integration_events::Column::SalonId.eq(id))
            .order_by_desc(integration_events::Column::Id)
            .limit(200)
            .all(&self.db)
            .await?;
        let callbacks = callback_outbox::Entity::find()
            .filter(callback_outbox::Column::SalonId.eq(id))
            .order_by_desc(callback_outbox::Column::Id)
            .limit(200)
            .all(&self.db)
            .await?;
        let mut attempts = callback_attempts::Entity::find()
            .filter(callback_attempts::Column::SalonId.eq(id))
            .order_by_desc(callback_attempts::Column::Id)
            .limit(500)
            .all(&self.db)
            .await?;
        attempts.reverse();
        let lifecycle = lifecycle_events::Entity::find()
            .filter(lifecycle_events::Column::SalonId.eq(id))
            .order_by_desc(lifecycle_events::Column::Id)
            .limit(200)
            .all(&self.db)
            .await?;
        let webhook_counts: Vec<(String, i64)> = entity_events::Entity::find()
            .select_only()
            .column(entity_events::Column::Resource)
            .column_as(entity_events::Column::Id.count(), "count")
            .filter(entity_events::Column::SalonId.eq(id))
            .group_by(entity_events::Column::Resource)
            .order_by_asc(entity_events::Column::Resource)
            .into_tuple()
            .all(&self.db)
            .await?;
        Ok(SalonHistory {
            audit,
            callbacks,
            attempts,
            lifecycle,
            webhook_counts,
        })
    }

    /// An operator queues a given-up lifecycle event again (one more attempt by the worker),
    /// audited with their name in the same transaction. `false` when the event is not the
    /// salon's or was not given up.
    pub async fn requeue_lifecycle(
        &self,
        salon: SalonId,
        event_id: i32,
        operator: &str,
    ) -> Result<bool, StoreError> {
        let txn = self.db.begin().await?;
        let moved = lifecycle_events::Entity::update_many()
            .col_expr(
                lifecycle_events::Column::GaveUpAt,
                Expr::value(Option::<chrono::DateTime<chrono::Utc>>::None),
            )
            .col_expr(
                lifecycle_events::Column::NextAttemptAt,
                Expr::value(Option::<chrono::DateTime<chrono::Utc>>::None),
            )
            .filter(lifecycle_events::Column::Id.eq(event_id))
            .filter(lifecycle_events::Column::SalonId.eq(salon.get()))
            .filter(lifecycle_events::Column::GaveUpAt.is_not_null())
            .filter(lifecycle_events::Column::ProcessedAt.is_null())
            .exec(&txn)
            .await?
            .rows_affected
            == 1;
        if !moved {
            txn.rollback().await?;
            return Ok(false);
        }
        audit::record(
            &txn,
            Some(salon),
            "operator_action",
            json!({"operator": operator, "action": "retry-lifecycle", "lifecycle_event_id": event_id, "outcome": "queued again"}),
        )
        .await?;
        txn.commit().await?;
        Ok(true)
    }
}
