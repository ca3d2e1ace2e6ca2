//! The instances on one database and the calls between them: every running instance is seen
//! here every lease renewal interval (the live ones share the sessions to restore), and a
//! command for a session another instance runs is a row of `instance_calls` that the caller
//! writes, the owner takes once and answers in place, and the caller reads and deletes. The
//! table is the mailbox: a notification on the bus only wakes its reader sooner.

use super::{Store, StoreError};
use crate::db::entities::{instance_calls, instances};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set};

type Time = chrono::DateTime<chrono::Utc>;

/// A call taken by its target, to carry out and answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TakenCall {
    pub id: i32,
    pub caller: String,
    pub request: String,
}

impl Store {
    /// Records that `instance` is running now (inserted at its first beat).
    pub async fn instance_seen(&self, instance: &str, started_at: Time) -> Result<(), StoreError> {
        instances::Entity::insert(instances::ActiveModel {
            id: Set(instance.to_owned()),
            started_at: Set(started_at),
            seen_at: Set(super::now()),
        })
        .on_conflict(
            OnConflict::column(instances::Column::Id)
                .update_column(instances::Column::SeenAt)
                .to_owned(),
        )
        .exec_without_returning(&self.db)
        .await?;
        Ok(())
    }

    /// The instance stops: it no longer counts among the live ones.
    pub async fn instance_gone(&self, instance: &str) -> Result<(), StoreError> {
        instances::Entity::delete_by_id(instance.to_owned())
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// The instances seen since `since`, oldest first (dead ones' rows older than a day are
    /// swept on the way).
    pub async fn live_instances(&self, since: Time) -> Result<Vec<String>, StoreError> {
        instances::Entity::delete_many()
            .filter(instances::Column::SeenAt.lt(super::now() - chrono::Duration::days(1)))
            .exec(&self.db)
            .await?;
        Ok(instances::Entity::find()
            .select_only()
            .column(instances::Column::Id)
            .filter(instances::Column::SeenAt.gte(since))
            .order_by_asc(instances::Column::StartedAt)
            .order_by_asc(instances::Column::Id)
            .into_tuple()
            .all(&self.db)
            .await?)
    }

    /// Posts a call from `caller` to `target`; returns its id.
    pub async fn post_call(
        &self,
        caller: &str,
        target: &str,
        request: &str,
    ) -> Result<i32, StoreError> {
        let inserted = instance_calls::Entity::insert(instance_calls::ActiveModel {
            caller: Set(caller.to_owned()),
            target: Set(target.to_owned()),
            request: Set(request.to_owned()),
            created_at: Set(super::now()),
            taken_at: Set(None),
            answer: Set(None),
            answered_at: Set(None),
            ..Default::default()
        })
        .exec(&self.db)
        .await?;
        Ok(inserted.last_insert_id)
    }

    /// Takes the calls addressed to `target` that nobody took yet, each once (a second taker's
    /// guarded update changes nothing). Calls older than `stale_before` are not carried out:
    /// their caller has given up.
    pub async fn take_calls(
        &self,
        target: &str,
        stale_before: Time,
    ) -> Result<Vec<TakenCall>, StoreError> {
        let waiting = instance_calls::Entity::find()
            .filter(instance_calls::Column::Target.eq(target))
            .filter(instance_calls::Column::TakenAt.is_null())
            .filter(instance_calls::Column::CreatedAt.gte(stale_before))
            .order_by_asc(instance_calls::Column::Id)
            .limit(100)
            .all(&self.db)
            .await?;
        let mut taken = Vec::with_capacity(waiting.len());
        for call in waiting {
            let updated = instance_calls::Entity::update_many()
                .col_expr(
                    instance_calls::Column::TakenAt,
                    sea_orm::sea_query::Expr::value(super::now()),
                )
                .filter(instance_calls::Column::Id.eq(call.id))
                .filter(instance_calls::Column::TakenAt.is_null())
                .exec(&self.db)
                .await?;
            if updated.rows_affected == 1 {
                taken.push(TakenCall {
                    id: call.id,
                    caller: call.caller,
                    request: call.request,
                });
            }
        }
        Ok(taken)
    }

    /// The target's answer to a call it took (nothing when the caller gave up and deleted it).
    pub async fn answer_call(&self, id: i32, answer: &str) -> Result<(), StoreError> {
        instance_calls::Entity::update_many()
            .col_expr(
                instance_calls::Column::Answer,
                sea_orm::sea_query::Expr::value(answer.to_owned()),
            )
            .col_expr(
                instance_calls::Column::AnsweredAt,
                sea_orm::sea_query::Expr::value(super::now()),
            )
            .filter(instance_calls::Column::Id.eq(id))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// The answer to call `id`, once given (a missing row reads as no answer).
    pub async fn call_answer(&self, id: i32) -> Result<Option<String>, StoreError> {
        Ok(instance_calls::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .and_then(|row| row.answer))
    }

    /// The caller is done with call `id` (answered, or given up on).
    pub async fn delete_call(&self, id: i32) -> Result<(), StoreError> {
        instance_calls::Entity::delete_by_id(id)
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Deletes calls created before `before` (their callers crashed before cleaning up).
    pub async fn sweep_calls(&self, before: Time) -> Result<u64, StoreError> {
        Ok(instance_calls::Entity::delete_many()
            .filter(instance_calls::Column::CreatedAt.lt(before))
            .exec(&self.db)
            .await?
            .rows_affected)
    }
}
