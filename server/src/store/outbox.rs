//! The callback outbox: the activation callback owed to YClients, as a row first.

use super::{audit, status_values, Store, StoreError};
use crate::db::entities::{callback_attempts, callback_outbox, salons};
use crate::domain::{
    ApiKey, AttemptOutcome, CallbackPurpose, OutboxStatus, SalonStatus, WebhookSecret,
};
use app::domain::SalonId;
use chrono::SubsecRound;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, QueryTrait, Set, TransactionTrait,
};
use serde_json::{json, Value};

type Time = chrono::DateTime<chrono::Utc>;

/// The API key and webhook secret an activation offers YClients. They become the salon's only
/// when YClients confirms them; until then the previous pair stays valid.
pub struct PendingPair {
    pub api_key: ApiKey,
    pub webhook_secret: WebhookSecret,
}

/// One owed (or ended) callback.
#[derive(Debug, Clone)]
pub struct Callback {
    pub id: i32,
    pub salon: SalonId,
    pub payload: String,
    pub attempts: i32,
    pub deadline_at: Time,
    pub last_error: Option<String>,
    pub purpose: CallbackPurpose,
    pub requested_by: Option<String>,
}

/// One delivery attempt as the worker saw it; recorded with the row's change, in the same
/// transaction. Holds no secret: the answer's excerpt is redacted by the worker.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub started_at: Time,
    pub duration: std::time::Duration,
    /// `None`: no answer came (or nothing was sent).
    pub http_status: Option<u16>,
    pub error: Option<String>,
    pub answer: Option<String>,
}

/// The earliest activation callback of `row`'s salon, in its current installation (after its
/// last uninstall), that ended without YClients' answer being known: failed, with an attempt
/// retried or answered by a gateway or server error. YClients may have accepted it.
async fn earliest_unanswered_activation<C: ConnectionTrait>(
    db: &C,
    row: &Callback,
) -> Result<Option<callback_outbox::Model>, DbErr> {
    use crate::db::entities::integration_events;
    let uninstalled_at: Option<Time> = integration_events::Entity::find()
        .select_only()
        .column(integration_events::Column::CreatedAt)
        .filter(integration_events::Column::SalonId.eq(row.salon.get()))
        .filter(integration_events::Column::Kind.eq("uninstalled"))
        .order_by_desc(integration_events::Column::Id)
        .into_tuple()
        .one(db)
        .await?;
    let unanswered = callback_attempts::Entity::find()
        .select_only()
        .column(callback_attempts::Column::CallbackId)
        .filter(callback_attempts::Column::SalonId.eq(row.salon.get()))
        .filter(
            Condition::any()
                .add(callback_attempts::Column::Outcome.eq(AttemptOutcome::Retry.as_str()))
                .add(callback_attempts::Column::HttpStatus.gte(500))
                .add(callback_attempts::Column::HttpStatus.eq(429)),
        )
        .into_query();
    let mut query = callback_outbox::Entity::find()
        .filter(callback_outbox::Column::SalonId.eq(row.salon.get()))
        .filter(callback_outbox::Column::Id.lt(row.id))
        .filter(callback_outbox::Column::Purpose.eq(CallbackPurpose::Activation.as_str()))
        .filter(callback_outbox::Column::Status.eq(OutboxStatus::Failed.as_str()))
        .filter(callback_outbox::Column::ApiKeyHash.is_not_null())
        .filter(callback_outbox::Column::WebhookSecretHash.is_not_null())
        .filter(callback_outbox::Column::Id.in_subquery(unanswered));
    if let Some(at) = uninstalled_at {
        query = query.filter(callback_outbox::Column::CreatedAt.gt(at));
    }
    query
        .order_by_asc(callback_outbox::Column::Id)
        .one(db)
        .await
}

/// Writes one attempt of `row`'s delivery.
async fn record_attempt<C: ConnectionTrait>(
    db: &C,
    row: &Callback,
    attempt: &AttemptRecord,
    outcome: AttemptOutcome,
) -> Result<(), DbErr> {
    let text = |value: &Option<String>| {
        value
            .as_deref()
            .map(|v| super::storable_text(v).into_owned())
    };
    callback_attempts::ActiveModel {
        callback_id: Set(row.id),
        salon_id: Set(row.salon.get()),
        attempt: Set(row.attempts + 1),
        started_at: Set(attempt.started_at),
        duration_ms: Set(i64::try_from(attempt.duration.as_millis()).unwrap_or(i64::MAX)),
        http_status: Set(attempt.http_status.map(i32::from)),
        error: Set(text(&attempt.error)),
        answer: Set(text(&attempt.answer)),
        outcome: Set(outcome.as_str().to_owned()),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(())
}

impl TryFrom<callback_outbox::Model> for Callback {
    type Error = StoreError;

    fn try_from(row: callback_outbox::Model) -> Result<Self, Self::Error> {
        Ok(Self {
            id: row.id,
            salon: SalonId::try_from(row.salon_id)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            payload: row.payload,
            attempts: row.attempts,
            deadline_at: row.deadline_at,
            last_error: row.last_error,
            purpose: CallbackPurpose::parse(&row.purpose),
            requested_by: row.requested_by,
        })
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxCounts {
    pub pending: u64,
    pub failed: u64,
    /// How long the oldest callback still owed has waited.
    pub oldest_pending_age: Option<std::time::Duration>,
}

/// The callback body with its secrets removed: what stays at rest once the delivery ended.
pub fn scrubbed(payload: &str) -> String {
    let Ok(mut body) = serde_json::from_str::<Value>(payload) else {
        return json!({"scrubbed": true}).to_string();
    };
    if body.get("api_key").is_some() {
        body["api_key"] = Value::String("[removed]".into());
    }
    if let Some(urls) = body.get_mut("webhook_urls").and_then(Value::as_array_mut) {
        for url in urls.iter_mut() {
            if let Some(text) = url.as_str() {
                let kept = text.rsplit_once('/').map(|(head, _)| head).unwrap_or("");
                *url = Value::String(format!("{kept}/[removed]"));
            }
        }
    }
    body.to_string()
}

/// A worker's claim on a row, as [`Store::claim_callback`] wrote it: the worker and the end of
/// its lease. Once the lease has run out another worker may claim the row, which writes its own;
/// what the first worker then writes about the row finds its claim gone and changes nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    worker: String,
    lease_until: Time,
}

/// The update that takes a row's lease off (whoever held it).
fn unleased(id: i32) -> sea_orm::UpdateMany<callback_outbox::Entity> {
    callback_outbox::Entity::update_many()
        .col_expr(
            callback_outbox::Column::LeaseUntil,
            Expr::value(Option::<Time>::None),
        )
        .col_expr(
            callback_outbox::Column::UpdatedAt,
            Expr::value(super::now()),
        )
        .filter(callback_outbox::Column::Id.eq(id))
}

/// The update that releases a row's lease (its worker is done with it for now), only while the
/// row is still under `claim`. By row id alone, a worker whose lease ran out during a slow call
/// wrote over a row another worker had claimed since: it cleared that worker's lease (a third
/// could then send the callback again while the second's call was in flight) and put its own
/// count, error and status on a row the second had confirmed.
fn release(row: &Callback, claim: &Claim) -> sea_orm::UpdateMany<callback_outbox::Entity> {
    unleased(row.id)
        .filter(callback_outbox::Column::LeaseOwner.eq(claim.worker.as_str()))
        .filter(callback_outbox::Column::LeaseUntil.eq(claim.lease_until))
}

/// The update that ends an attempt on a row under `claim`: counts it, releases the lease.
fn end_attempt(row: &Callback, claim: &Claim) -> sea_orm::UpdateMany<callback_outbox::Entity> {
    release(row, claim).col_expr(
        callback_outbox::Column::Attempts,
        Expr::value(row.attempts + 1),
    )
}

/// Ends a delivery under `claim`: the row's status, its secrets removed (payload and pending
/// pair).
fn end_delivery(
    row: &Callback,
    claim: &Claim,
    status: OutboxStatus,
) -> sea_orm::UpdateMany<callback_outbox::Entity> {
    end_attempt(row, claim)
        .col_expr(
            callback_outbox::Column::Status,
            Expr::value(status.as_str()),
        )
        .col_expr(
            callback_outbox::Column::Payload,
            Expr::value(scrubbed(&row.payload)),
        )
}

/// Withdraws a salon's owed callbacks (uninstall): failed, secrets removed.
pub(super) async fn withdraw_pending<C: ConnectionTrait>(
    db: &C,
    salon: SalonId,
    reason: &str,
) -> Result<(), DbErr> {
    let rows = callback_outbox::Entity::find()
        .filter(callback_outbox::Column::SalonId.eq(salon.get()))
        .filter(callback_outbox::Column::Status.eq(OutboxStatus::Pending.as_str()))
        .all(db)
        .await?;
    for row in rows {
        // Whoever holds it: what its worker writes after this finds its claim gone.
        unleased(row.id)
            .col_expr(
                callback_outbox::Column::Status,
                Expr::value(OutboxStatus::Failed.as_str()),
            )
            .col_expr(
                callback_outbox::Column::Payload,
                Expr::value(scrubbed(&row.payload)),
            )
            .col_expr(
                callback_outbox::Column::LastError,
                Expr::value(reason.to_owned()),
            )
            .exec(db)
            .await?;
    }
    Ok(())
}

/// Whether a worker's update of its row found the row still under its claim (the update is
/// filtered by the claim, so it changed the one row or none).
fn still_claimed(result: sea_orm::UpdateResult) -> bool {
    result.rows_affected == 1
}

fn pending_and_unleased(now: Time) -> Condition {
    Condition::all()
        .add(callback_outbox::Column::Status.eq(OutboxStatus::Pending.as_str()))
        .add(
            Condition::any()
                .add(callback_outbox::Column::LeaseUntil.is_null())
                .add(callback_outbox::Column::LeaseUntil.lt(now)),
        )
}

impl Store {
    /// Moves the salon to `activating` and owes YClients the callback, in one transaction; only
    /// one caller (in any process) wins. `from` are the statuses this trigger may start from;
    /// the salon must be linked. `deadline` is computed from the salon's registration time.
    #[tracing::instrument(skip_all, fields(salon_id = %salon))]
    pub async fn begin_activation(
        &self,
        salon: SalonId,
        from: &[SalonStatus],
        pair: &PendingPair,
        payload: String,
        pending_window: chrono::Duration,
        trigger: &str,
    ) -> Result<bool, StoreError> {
        for status in from {
            status.transition(SalonStatus::Activating)?;
        }
        let now = super::now();
        let txn = self.db.begin().await?;
        let won = salons::Entity::update_many()
            .col_expr(
                salons::Column::Status,
                Expr::value(SalonStatus::Activating.as_str()),
            )
            .col_expr(
                salons::Column::ActivationError,
                Expr::value(Option::<String>::None),
            )
            .col_expr(salons::Column::UpdatedAt, Expr::value(now))
            .filter(salons::Column::Id.eq(salon.get()))
            .filter(salons::Column::Status.is_in(status_values(from)))
            .filter(salons::Column::WhatsappPhone.is_not_null())
            .exec(&txn)
            .await?
            .rows_affected
            == 1;
        if !won {
            txn.rollback().await?;
            return Ok(false);
        }
        let registered_at: Option<Time> = salons::Entity::find_by_id(salon.get())
            .select_only()
            .column(salons::Column::RegisteredAt)
            .into_tuple()
            .one(&txn)
            .await?;
        let registered_at = registered_at.unwrap_or(now);
        callback_outbox::ActiveModel {
            salon_id: Set(salon.get()),
            payload: Set(payload),
            status: Set(OutboxStatus::Pending.as_str().to_owned()),
            attempts: Set(0),
            next_attempt_at: Set(now),
            deadline_at: Set(registered_at.max(now - pending_window) + pending_window),
            api_key_hash: Set(Some(pair.api_key.hash())),
            api_key_prefix: Set(Some(pair.api_key.prefix())),
            webhook_secret_hash: Set(Some(pair.webhook_secret.hash())),
            created_at: Set(now),
            updated_at: Set(now),
            purpose: Set(CallbackPurpose::Activation.as_str().to_owned()),
            ..Default::default()
        }
        .insert(&txn)
        .await?;
        audit::record(
            &txn,
            Some(salon),
            "activation_started",
            json!({"trigger": trigger, "api_key_prefix": pair.api_key.prefix()}),
        )
        .await?;
        txn.commit().await?;
        Ok(true)
    }

    /// Owed callbacks whose time has come and that no worker holds.
    pub async fn due_callbacks(&self, limit: u64) -> Result<Vec<Callback>, StoreError> {
        let now = super::now();
        callback_outbox::Entity::find()
            .filter(pending_and_unleased(now))
            .filter(callback_outbox::Column::NextAttemptAt.lte(now))
            .order_by_asc(callback_outbox::Column::NextAttemptAt)
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(Callback::try_from)
            .collect()
    }

    /// When the next owed callback may be tried (its schedule or its lease, whichever is later).
    pub async fn next_callback_due(&self) -> Result<Option<Time>, StoreError> {
        Ok(callback_outbox::Entity::find()
            .filter(callback_outbox::Column::Status.eq(OutboxStatus::Pending.as_str()))
            .order_by_asc(callback_outbox::Column::NextAttemptAt)
            .one(&self.db)
            .await?
            .map(|row| {
                row.next_attempt_at
                    .max(row.lease_until.unwrap_or(row.next_attempt_at))
            }))
    }

    /// Takes a row for one worker until `lease_until`; `None` if another worker has it. What the
    /// worker then writes about the row is written only while the returned claim still holds.
    pub async fn claim_callback(
        &self,
        id: i32,
        worker: &str,
        lease_until: Time,
    ) -> Result<Option<Claim>, StoreError> {
        // Whole microseconds: the claim is matched by equality later, and PostgreSQL keeps no
        // finer time than that.
        let lease_until = lease_until.trunc_subsecs(6);
        let result = callback_outbox::Entity::update_many()
            .col_expr(
                callback_outbox::Column::LeaseOwner,
                Expr::value(worker.to_owned()),
            )
            .col_expr(
                callback_outbox::Column::LeaseUntil,
                Expr::value(lease_until),
            )
            .filter(callback_outbox::Column::Id.eq(id))
            .filter(pending_and_unleased(super::now()))
            .exec(&self.db)
            .await?;
        Ok((result.rows_affected == 1).then(|| Claim {
            worker: worker.to_owned(),
            lease_until,
        }))
    }

    /// A worker that stops (graceful shutdown) frees the rows it holds: an attempt it broke off
    /// is not counted and is due at once for whoever delivers next (a callback YClients did get
    /// answers "already installed", which counts as confirmed). Returns how many it freed.
    pub async fn release_leases(&self, worker: &str) -> Result<u64, StoreError> {
        let freed = callback_outbox::Entity::update_many()
            .col_expr(
                callback_outbox::Column::LeaseUntil,
                Expr::value(Option::<Time>::None),
            )
            .col_expr(
                callback_outbox::Column::LeaseOwner,
                Expr::value(Option::<String>::None),
            )
            .col_expr(
                callback_outbox::Column::UpdatedAt,
                Expr::value(super::now()),
            )
            .filter(callback_outbox::Column::LeaseOwner.eq(worker))
            .filter(callback_outbox::Column::LeaseUntil.is_not_null())
            .exec(&self.db)
            .await?
            .rows_affected;
        Ok(freed)
    }

    /// The salon's latest callback (the page shows its attempts and last error).
    pub async fn latest_callback(&self, salon: SalonId) -> Result<Option<Callback>, StoreError> {
        callback_outbox::Entity::find()
            .filter(callback_outbox::Column::SalonId.eq(salon.get()))
            .order_by_desc(callback_outbox::Column::Id)
            .one(&self.db)
            .await?
            .map(Callback::try_from)
            .transpose()
    }

    /// YClients confirmed: the salon is `active`. With `offered_pair_accepted` (a 201) the
    /// callback's pair becomes the salon's; otherwise ("already installed") YClients kept the pair
    /// it had, and so do we — unless we never had one, when the offered pair is the only one
    /// YClients can hold. A rotation's pair replaces the salon's (its status unchanged), only
    /// when accepted. A salon that froze while its activation callback was owed keeps the pair
    /// and stays frozen (it resumes when YClients un-freezes it). The attempt is recorded in the
    /// same transaction. `false`, with nothing written, when `claim` no longer holds the row.
    pub async fn confirm_callback(
        &self,
        row: &Callback,
        claim: &Claim,
        offered_pair_accepted: bool,
        confirmed_by: &str,
        attempt: &AttemptRecord,
    ) -> Result<bool, StoreError> {
        let now = super::now();
        let txn = self.db.begin().await?;
        if !still_claimed(
            end_delivery(row, claim, OutboxStatus::Confirmed)
                .exec(&txn)
                .await?,
        ) {
            txn.rollback().await?;
            return Ok(false);
        }
        record_attempt(&txn, row, attempt, AttemptOutcome::Confirmed).await?;
        let offered = callback_outbox::Entity::find_by_id(row.id)
            .one(&txn)
            .await?;
        let salon = salons::Entity::find_by_id(row.salon.get())
            .one(&txn)
            .await?;
        let adopt = match row.purpose {
            CallbackPurpose::Activation => {
                let had_pair = salon
                    .as_ref()
                    .is_some_and(|s| s.api_key_hash.is_some() && s.webhook_secret_hash.is_some());
                offered_pair_accepted || !had_pair
            }
            CallbackPurpose::Rotation => offered_pair_accepted,
        };
        // "Already installed" for a salon with no pair: YClients holds the pair of the first
        // callback it accepted in this installation. An earlier row whose answers were lost
        // (failed when its window closed while YClients could not be asked either) may be that
        // one; if so its pair, not this row's, is the one YClients holds.
        let earlier = match (row.purpose, offered_pair_accepted, adopt) {
            (CallbackPurpose::Activation, false, true) => {
                earliest_unanswered_activation(&txn, row).await?
            }
            _ => None,
        };
        let adopted_from = earlier.as_ref().map_or(row.id, |e| e.id);
        let offered_prefix = offered.as_ref().and_then(|o| o.api_key_prefix.clone());
        let pair = earlier.or(offered).filter(|_| adopt);
        // The salon's row as this confirmation leaves it: an activation makes an activating
        // salon `active`; one that froze while its callback was owed stays frozen but keeps the
        // pair YClients now holds, so it resumes when YClients un-freezes it (without the pair
        // it could only start over, and a new callback would be refused as "already
        // installed"). A rotation changes no status; an uninstalled salon keeps no pair.
        let update = |status: Option<SalonStatus>| {
            let mut update = salons::Entity::update_many()
                .col_expr(salons::Column::UpdatedAt, Expr::value(now))
                .filter(salons::Column::Id.eq(row.salon.get()));
            if let Some(status) = status {
                update = update.col_expr(salons::Column::Status, Expr::value(status.as_str()));
            }
            if let Some(offered) = &pair {
                update = update
                    .col_expr(
                        salons::Column::ApiKeyHash,
                        Expr::value(offered.api_key_hash.clone()),
                    )
                    .col_expr(
                        salons::Column::ApiKeyPrefix,
                        Expr::value(offered.api_key_prefix.clone()),
                    )
                    .col_expr(
                        salons::Column::WebhookSecretHash,
                        Expr::value(offered.webhook_secret_hash.clone()),
                    );
            }
            update
        };
        let mut while_frozen = false;
        let moved = match row.purpose {
            CallbackPurpose::Activation => {
                let activated = update(Some(SalonStatus::Active))
                    .filter(salons::Column::Status.eq(SalonStatus::Activating.as_str()))
                    .exec(&txn)
                    .await?
                    .rows_affected;
                if activated == 0 && pair.is_some() {
                    while_frozen = update(None)
                        .filter(salons::Column::Status.eq(SalonStatus::Frozen.as_str()))
                        .exec(&txn)
                        .await?
                        .rows_affected
                        == 1;
                    u64::from(while_frozen)
                } else {
                    activated
                }
            }
            CallbackPurpose::Rotation => {
                update(None)
                    .filter(salons::Column::Status.ne(SalonStatus::Uninstalled.as_str()))
                    .exec(&txn)
                    .await?
                    .rows_affected
            }
        };
        if moved == 1 {
            match row.purpose {
                CallbackPurpose::Activation => {
                    audit::record(
                        &txn,
                        Some(row.salon),
                        "integration_activated",
                        json!({"confirmed_by": confirmed_by, "attempts": row.attempts + 1,
                               "pair": match (adopt, adopted_from == row.id) {
                                   (false, _) => "kept",
                                   (true, true) => "offered",
                                   (true, false) => "earlier_unanswered",
                               },
                               "pair_from_callback": adopt.then_some(adopted_from),
                               "while_frozen": while_frozen}),
                    )
                    .await?
                }
                CallbackPurpose::Rotation => {
                    audit::record(
                        &txn,
                        Some(row.salon),
                        "webhook_secret_rotated",
                        json!({"confirmed_by": confirmed_by, "attempts": row.attempts + 1,
                               "requested_by": row.requested_by, "api_key_prefix": offered_prefix,
                               "pair": if adopt { "offered" } else { "kept" }}),
                    )
                    .await?
                }
            }
        }
        txn.commit().await?;
        if adopt && moved == 1 {
            // The rotated secret: the old URL is refused from now on.
            self.secrets.forget(row.salon);
        }
        Ok(true)
    }

    /// A transient failure: tried again at `next`. The attempt is recorded with it. `false`,
    /// with nothing written, when `claim` no longer holds the row.
    pub async fn retry_callback_later(
        &self,
        row: &Callback,
        claim: &Claim,
        next: Time,
        error: &str,
        attempt: &AttemptRecord,
    ) -> Result<bool, StoreError> {
        let txn = self.db.begin().await?;
        if !still_claimed(
            end_attempt(row, claim)
                .col_expr(callback_outbox::Column::NextAttemptAt, Expr::value(next))
                .col_expr(
                    callback_outbox::Column::LastError,
                    Expr::value(super::storable_text(error).into_owned()),
                )
                .exec(&txn)
                .await?,
        ) {
            txn.rollback().await?;
            return Ok(false);
        }
        record_attempt(&txn, row, attempt, AttemptOutcome::Retry).await?;
        txn.commit().await?;
        Ok(true)
    }

    /// Records an attempt whose worker lost its claim on the row during the call
    /// (`AttemptOutcome::LeaseLost`): the call happened, so the trail shows it; the row and the
    /// salon are not touched.
    pub async fn record_lost_attempt(
        &self,
        row: &Callback,
        attempt: &AttemptRecord,
    ) -> Result<(), StoreError> {
        record_attempt(&self.db, row, attempt, AttemptOutcome::LeaseLost).await?;
        Ok(())
    }

    /// YClients refused, or the window closed: the activation failed, with YClients' reason (a
    /// rotation's refusal leaves the salon as it is: its pair stays the only one). The attempt
    /// is recorded with it. `false`, with nothing written, when `claim` no longer holds the row.
    pub async fn fail_callback(
        &self,
        row: &Callback,
        claim: &Claim,
        reason: &str,
        attempt: &AttemptRecord,
    ) -> Result<bool, StoreError> {
        let reason = super::storable_text(reason).into_owned();
        let txn = self.db.begin().await?;
        if !still_claimed(
            end_delivery(row, claim, OutboxStatus::Failed)
                .col_expr(
                    callback_outbox::Column::LastError,
                    Expr::value(reason.clone()),
                )
                .exec(&txn)
                .await?,
        ) {
            txn.rollback().await?;
            return Ok(false);
        }
        record_attempt(&txn, row, attempt, AttemptOutcome::Failed).await?;
        match row.purpose {
            CallbackPurpose::Activation => {
                salons::Entity::update_many()
                    .col_expr(
                        salons::Column::Status,
                        Expr::value(SalonStatus::ActivationFailed.as_str()),
                    )
                    .col_expr(salons::Column::ActivationError, Expr::value(reason.clone()))
                    .col_expr(salons::Column::UpdatedAt, Expr::value(super::now()))
                    .filter(salons::Column::Id.eq(row.salon.get()))
                    .filter(salons::Column::Status.eq(SalonStatus::Activating.as_str()))
                    .exec(&txn)
                    .await?;
                audit::record(
                    &txn,
                    Some(row.salon),
                    "activation_failed",
                    json!({"reason": reason}),
                )
                .await?;
            }
            CallbackPurpose::Rotation => {
                audit::record(
                    &txn,
                    Some(row.salon),
                    "webhook_secret_rotation_refused",
                    json!({"reason": reason, "requested_by": row.requested_by}),
                )
                .await?;
            }
        }
        txn.commit().await?;
        Ok(true)
    }

    /// An operator's rotation of an active salon's webhook secret (and API key): a callback
    /// offering `pair`, owed to YClients until `pending_window` from now. Nothing changes for the
    /// salon until YClients confirms it. `Err(reason)` when the salon is not active or a callback
    /// is already owed for it.
    #[tracing::instrument(skip_all, fields(salon_id = %salon))]
    pub async fn begin_rotation(
        &self,
        salon: SalonId,
        pair: &PendingPair,
        payload: String,
        pending_window: chrono::Duration,
        operator: &str,
    ) -> Result<Result<(), String>, StoreError> {
        let now = super::now();
        let txn = self.db.begin().await?;
        // Takes the salon's row (a lock on PostgreSQL): two rotations at once queue one.
        let active = salons::Entity::update_many()
            .col_expr(salons::Column::UpdatedAt, Expr::value(now))
            .filter(salons::Column::Id.eq(salon.get()))
            .filter(salons::Column::Status.eq(SalonStatus::Active.as_str()))
            .filter(salons::Column::WebhookSecretHash.is_not_null())
            .exec(&txn)
            .await?
            .rows_affected
            == 1;
        if !active {
            txn.rollback().await?;
            return Ok(Err(
                "only an active salon with a confirmed webhook secret can rotate it".into(),
            ));
        }
        let owed = callback_outbox::Entity::find()
            .filter(callback_outbox::Column::SalonId.eq(salon.get()))
            .filter(callback_outbox::Column::Status.eq(OutboxStatus::Pending.as_str()))
            .count(&txn)
            .await?;
        if owed > 0 {
            txn.rollback().await?;
            return Ok(Err(
                "a callback for this salon is still owed to YClients; wait for its answer".into(),
            ));
        }
        callback_outbox::ActiveModel {
            salon_id: Set(salon.get()),
            payload: Set(payload),
            status: Set(OutboxStatus::Pending.as_str().to_owned()),
            attempts: Set(0),
            next_attempt_at: Set(now),
            deadline_at: Set(now + pending_window),
            api_key_hash: Set(Some(pair.api_key.hash())),
            api_key_prefix: Set(Some(pair.api_key.prefix())),
            webhook_secret_hash: Set(Some(pair.webhook_secret.hash())),
            created_at: Set(now),
            updated_at: Set(now),
            purpose: Set(CallbackPurpose::Rotation.as_str().to_owned()),
            requested_by: Set(Some(operator.to_owned())),
            ..Default::default()
        }
        .insert(&txn)
        .await?;
        txn.commit().await?;
        Ok(Ok(()))
    }

    /// How many callbacks are owed and how many ended refused (for health and metrics).
    pub async fn outbox_counts(&self) -> Result<OutboxCounts, StoreError> {
        let count = |status: OutboxStatus| {
            callback_outbox::Entity::find()
                .filter(callback_outbox::Column::Status.eq(status.as_str()))
                .count(&self.db)
        };
        let oldest: Option<Time> = callback_outbox::Entity::find()
            .select_only()
            .column(callback_outbox::Column::CreatedAt)
            .filter(callback_outbox::Column::Status.eq(OutboxStatus::Pending.as_str()))
            .order_by_asc(callback_outbox::Column::CreatedAt)
            .into_tuple()
            .one(&self.db)
            .await?;
        Ok(OutboxCounts {
            pending: count(OutboxStatus::Pending).await?,
            failed: count(OutboxStatus::Failed).await?,
            oldest_pending_age: oldest.and_then(|at| (super::now() - at).to_std().ok()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::scrubbed;

    #[test]
    fn an_ended_delivery_keeps_neither_the_key_nor_the_url_secret() {
        let payload = r#"{"salon_id":1,"application_id":2,"api_key":"2f181e2a-5c22-4ae7-9d9b-07104f312c28","webhook_urls":["https://x.example/webhook/yclients/events/1/abcdef0123"],"channels":["whatsapp"]}"#;
        let clean = scrubbed(payload);
        assert!(!clean.contains("2f181e2a"));
        assert!(!clean.contains("abcdef0123"));
        assert!(clean.contains("https://x.example/webhook/yclients/events/1/[removed]"));
        assert!(!scrubbed("not json").contains("not json"));
    }
}
