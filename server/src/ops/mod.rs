//! The operator's console: who may use it (`auth`), what its pages read (the [`OpsBackend`] the
//! server functions in `app::ops` call) and the actions that repair a salon, each written to the
//! salon's audit trail with the operator's name.

pub mod auth;

use crate::activation::{Activation, ActivationError, Trigger};
use crate::bus::EventBus;
use crate::domain::SalonStatus;
use crate::linking::{Linking, LinkingError};
use crate::store::{Handover, SalonQuery, Store, StoreError, UnfreezeNoticedBy, WhatsappHealth};
use crate::yclients::{InstallationStatus, YClientsClient};
use app::api::AppError;
use app::domain::SalonId;
use app::ops::{
    AttemptRow, AuditRow, CallbackRow, Flash, FlashQuery, LifecycleRow, OperatorView, OpsBackend,
    SalonDetail, SalonFilter, SalonRow, PAGE_SIZE,
};
use app::status::{LinkState, LiveEventKind};
use auth::Auth;
use serde_json::json;
use std::sync::Arc;

/// A callback still pending after this long counts as "not confirmed" in the list's filter.
const PENDING_TOO_LONG: chrono::Duration = chrono::Duration::minutes(10);

/// The console's actions on one salon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpsAction {
    RequeueCallback,
    RetryLifecycle(i32),
    Restart,
    Stop,
    Logout,
    Reconcile,
    RotateWebhookSecret,
    /// Hand the salon over to the YClients user with this id.
    ReleaseConnectedUser {
        to: String,
    },
}

impl OpsAction {
    /// The action named in the URL; `event_id` for `retry-lifecycle`, `to_user` (a YClients
    /// user id) for `release-connected-user`.
    pub fn parse(name: &str, event_id: Option<i32>, to_user: Option<&str>) -> Result<Self, String> {
        Ok(match name {
            "requeue-callback" => OpsAction::RequeueCallback,
            "retry-lifecycle" => {
                OpsAction::RetryLifecycle(event_id.ok_or("retry-lifecycle needs event_id")?)
            }
            "restart" => OpsAction::Restart,
            "stop" => OpsAction::Stop,
            "logout" => OpsAction::Logout,
            "reconcile" => OpsAction::Reconcile,
            "rotate-webhook-secret" => OpsAction::RotateWebhookSecret,
            "release-connected-user" => OpsAction::ReleaseConnectedUser {
                to: yclients_user_id(to_user.unwrap_or_default())?,
            },
            other => return Err(format!("unknown action «{other}»")),
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            OpsAction::RequeueCallback => "requeue-callback",
            OpsAction::RetryLifecycle(_) => "retry-lifecycle",
            OpsAction::Restart => "restart",
            OpsAction::Stop => "stop",
            OpsAction::Logout => "logout",
            OpsAction::Reconcile => "reconcile",
            OpsAction::RotateWebhookSecret => "rotate-webhook-secret",
            OpsAction::ReleaseConnectedUser { .. } => "release-connected-user",
        }
    }
}

/// A YClients user id as an operator types it: what the refusal page showed the user (digits in
/// production; YClients' `user_data` may carry a string, so any short printable word is taken).
fn yclients_user_id(raw: &str) -> Result<String, String> {
    let id = raw.trim();
    if id.is_empty() {
        return Err("name the YClients user id to hand the salon over to (the refusal page shows it to them)".into());
    }
    if id.chars().count() > 64 || id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "«{}» is not a YClients user id",
            id.chars().take(64).collect::<String>()
        ));
    }
    Ok(id.to_owned())
}

/// Why an action did nothing.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("{0}")]
    Refused(String),
    #[error("salon {0} is not stored")]
    UnknownSalon(SalonId),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Clone)]
pub struct OpsService {
    pub store: Store,
    pub linking: Linking,
    pub activation: Activation,
    pub bus: EventBus,
    pub yclients: Option<YClientsClient>,
    pub application_id: Option<i64>,
    pub auth: Arc<Auth>,
}

fn unavailable(e: StoreError) -> AppError {
    tracing::error!(error = %e, "the operator's console could not read the database");
    AppError::Unavailable("database unavailable".into())
}

fn time(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// `Linked { .. }` → `Linked`.
fn state_name(state: &LinkState) -> String {
    format!("{state:?}")
        .split(|c: char| !c.is_ascii_alphanumeric())
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[async_trait::async_trait]
impl OpsBackend for OpsService {
    fn operator(&self, cookie_header: Option<&str>) -> Result<OperatorView, AppError> {
        self.auth
            .session(cookie_header)
            .map(|s| OperatorView {
                name: s.operator,
                csrf: s.csrf,
            })
            .ok_or(AppError::Unauthorized)
    }

    fn sign_in_form(&self, cookie_header: Option<&str>) -> (String, Option<String>) {
        match Auth::login_nonce(cookie_header) {
            Some(nonce) => (self.auth.login_token(nonce), None),
            None => {
                let nonce = Auth::new_login_nonce();
                (
                    self.auth.login_token(&nonce),
                    Some(self.auth.login_cookie(&nonce)),
                )
            }
        }
    }

    async fn salons(&self, filter: SalonFilter) -> Result<(Vec<SalonRow>, u64), AppError> {
        let status = match filter.status.trim() {
            "" => None,
            raw => Some(
                SalonStatus::parse(raw)
                    .map_err(|_| AppError::BadRequest(format!("unknown status «{raw}»")))?,
            ),
        };
        let whatsapp = match filter.whatsapp.trim() {
            "" => None,
            "none" => Some(None),
            raw => Some(Some(
                WhatsappHealth::parse(raw)
                    .ok_or_else(|| AppError::BadRequest(format!("unknown WhatsApp state «{raw}»")))?
                    .as_str()
                    .to_owned(),
            )),
        };
        let page = filter.page.clamp(1, 1_000_000);
        let query = SalonQuery {
            text: Some(filter.q.chars().take(100).collect()),
            status,
            whatsapp,
            attention: filter.attention,
            pending_since: chrono::Utc::now() - PENDING_TOO_LONG,
            offset: (page - 1) * PAGE_SIZE,
            limit: PAGE_SIZE,
        };
        let (rows, total) = self.store.ops_salons(&query).await.map_err(unavailable)?;
        Ok((
            rows.into_iter()
                .map(|row| SalonRow {
                    id: row.id,
                    title: row.title,
                    phone: row.phone,
                    status: row.status,
                    whatsapp_state: row.whatsapp_state,
                    updated_at: time(row.updated_at),
                })
                .collect(),
            total,
        ))
    }

    fn flash(&self, operator: &OperatorView, id: i64, query: &FlashQuery) -> Option<Flash> {
        // No signature: nothing claims to be an outcome (a plain page view).
        query.sig.as_ref()?;
        let flash = self
            .auth
            .verified_flash(operator, id, query, chrono::Utc::now().timestamp());
        if flash.is_none() {
            // A stranger's words, another session's or salon's, or an outcome older than a few
            // minutes (a page left open re-reads with its address): not shown.
            tracing::info!(operator = %operator.name, salon_id = id, "a console address carried an outcome not signed for this session now; not shown");
        }
        flash
    }

    async fn salon(&self, operator: OperatorView, id: i64) -> Result<SalonDetail, AppError> {
        let salon = SalonId::try_from(id)
            .map_err(|_| AppError::BadRequest(format!("«{id}» is not a salon id")))?;
        let row = self
            .store
            .ops_salon(salon)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| AppError::BadRequest(format!("salon {id} is not stored")))?;
        let history = self.store.ops_history(salon).await.map_err(unavailable)?;
        let live_state = match self.linking.current(salon).await.0 {
            LinkState::Idle => None,
            state => Some(state_name(&state)),
        };
        Ok(SalonDetail {
            operator,
            id,
            title: row.title,
            phone: row.phone,
            status: row.status,
            activation_error: row.activation_error,
            whatsapp_phone: row.whatsapp_phone,
            whatsapp_state: row.whatsapp_state,
            live_state,
            connected_by: row.connected_by,
            audit: history
                .audit
                .into_iter()
                .map(|a| AuditRow {
                    kind: a.kind,
                    payload: a.payload,
                    created_at: time(a.created_at),
                })
                .collect(),
            callbacks: history
                .callbacks
                .into_iter()
                .map(|c| CallbackRow {
                    id: c.id,
                    purpose: c.purpose,
                    requested_by: c.requested_by,
                    status: c.status,
                    attempts: c.attempts,
                    last_error: c.last_error,
                    created_at: time(c.created_at),
                    updated_at: time(c.updated_at),
                    attempt_log: history
                        .attempts
                        .iter()
                        .filter(|a| a.callback_id == c.id)
                        .map(|a| AttemptRow {
                            attempt: a.attempt,
                            started_at: time(a.started_at),
                            duration_ms: a.duration_ms,
                            http_status: a.http_status,
                            error: a.error.clone(),
                            answer: a.answer.clone(),
                            outcome: a.outcome.clone(),
                        })
                        .collect(),
                })
                .collect(),
            lifecycle: history
                .lifecycle
                .into_iter()
                .map(|e| LifecycleRow {
                    id: e.id,
                    event: e.event,
                    attempts: e.attempts,
                    last_error: e.last_error,
                    processed: e.processed_at.is_some(),
                    gave_up: e.gave_up_at.is_some(),
                    created_at: time(e.created_at),
                })
                .collect(),
            webhook_counts: history
                .webhook_counts
                .into_iter()
                .map(|(resource, count)| (resource, count.max(0) as u64))
                .collect(),
            flash: None,
        })
    }
}

fn linking_refused(e: LinkingError) -> ActionError {
    ActionError::Refused(format!("WhatsApp: {e}"))
}

impl OpsService {
    /// Runs `action` on `salon` for `operator` and writes it to the audit trail (what was done,
    /// or why nothing was). The outcome in words on success.
    #[tracing::instrument(skip(self), fields(salon_id = %salon))]
    pub async fn act(
        &self,
        operator: &str,
        salon: SalonId,
        action: OpsAction,
    ) -> Result<String, ActionError> {
        let row = self
            .store
            .salon(salon)
            .await?
            .ok_or(ActionError::UnknownSalon(salon))?;
        let name = action.name();
        let lifecycle_retry = matches!(action, OpsAction::RetryLifecycle(_));
        let result = self.run(salon, row.status, action, operator).await;
        let (outcome, refused) = match &result {
            Ok(outcome) => (outcome.clone(), false),
            Err(e) => (e.to_string(), true),
        };
        // The lifecycle retry writes its entry with its own row change.
        if !lifecycle_retry || refused {
            self.store
                .audit(
                    Some(salon),
                    "operator_action",
                    json!({"operator": operator, "action": name, "outcome": outcome, "refused": refused}),
                )
                .await
                .map_err(StoreError::from)?;
        }
        // A new audit entry (at least): the console's open salon pages read the salon again.
        self.bus.publish(salon, LiveEventKind::Snapshot);
        tracing::info!(operator, action = name, outcome, refused, "operator action");
        result
    }

    async fn run(
        &self,
        salon: SalonId,
        status: SalonStatus,
        action: OpsAction,
        operator: &str,
    ) -> Result<String, ActionError> {
        let whatsapp_allowed = || {
            if status.may_run_whatsapp() {
                Ok(())
            } else {
                Err(ActionError::Refused(format!(
                    "the salon is {}: no WhatsApp session runs for it",
                    status.as_str()
                )))
            }
        };
        match action {
            OpsAction::RequeueCallback => {
                match self
                    .activation
                    .activate_integration(salon, Trigger::Admin)
                    .await
                {
                    Ok(true) => Ok("a new activation callback is queued".into()),
                    Ok(false) => Err(ActionError::Refused(format!(
                        "no callback to requeue: the salon is {} (only new or activation_failed)",
                        status.as_str()
                    ))),
                    Err(ActivationError::NotConfigured) => Err(ActionError::Refused(
                        "YCLIENTS_APPLICATION_ID is not configured".into(),
                    )),
                    Err(ActivationError::Store(e)) => Err(e.into()),
                }
            }
            OpsAction::RetryLifecycle(event_id) => {
                if self
                    .store
                    .requeue_lifecycle(salon, event_id, operator)
                    .await?
                {
                    Ok(format!("lifecycle event {event_id} queued again"))
                } else {
                    Err(ActionError::Refused(format!(
                        "lifecycle event {event_id} is not this salon's or was not given up"
                    )))
                }
            }
            OpsAction::Restart => {
                whatsapp_allowed()?;
                let state = self.linking.restart(salon).await.map_err(linking_refused)?;
                Ok(format!("session restarted: {}", state_name(&state)))
            }
            OpsAction::Stop => {
                self.linking.stop(salon).await;
                Ok("session stopped (credentials kept)".into())
            }
            OpsAction::Logout => {
                whatsapp_allowed()?;
                self.linking
                    .disconnect(salon)
                    .await
                    .map_err(linking_refused)?;
                Ok("logged out: device unlinked, credentials purged, a new QR offered".into())
            }
            OpsAction::Reconcile => self.reconcile(salon, status).await,
            OpsAction::ReleaseConnectedUser { to } => {
                match self.store.hand_over(salon, &to, operator).await? {
                    Some(Handover::Done { from }) => {
                        // The previous tokens died with the generation: end the open live
                        // streams too.
                        self.bus.publish(salon, LiveEventKind::ActivationUpdate);
                        Ok(format!(
                            "the salon is handed over to YClients user {to}: only they can open it now; {} and every onboarding link issued before are closed",
                            from.map(|u| format!("YClients user {u}"))
                                .unwrap_or_else(|| "nobody held it before".into())
                        ))
                    }
                    Some(Handover::AlreadyHeld) => Err(ActionError::Refused(format!(
                        "YClients user {to} already holds the salon"
                    ))),
                    Some(Handover::Changed) => Err(ActionError::Refused(
                        "someone entered the salon meanwhile: look again and retry".into(),
                    )),
                    None => Err(ActionError::UnknownSalon(salon)),
                }
            }
            OpsAction::RotateWebhookSecret => {
                match self.activation.rotate_webhook_secret(salon, operator).await {
                    Ok(Ok(())) => Ok(
                        "a callback with a new webhook secret is queued; the old one works until YClients confirms it"
                            .into(),
                    ),
                    Ok(Err(reason)) => Err(ActionError::Refused(reason)),
                    Err(ActivationError::NotConfigured) => Err(ActionError::Refused(
                        "YCLIENTS_APPLICATION_ID is not configured".into(),
                    )),
                    Err(ActivationError::Store(e)) => Err(e.into()),
                }
            }
        }
    }

    /// Asks YClients about the installation now; a frozen salon YClients holds as active
    /// resumes (as the periodic check would). Anything else is reported, nothing removed.
    async fn reconcile(&self, salon: SalonId, status: SalonStatus) -> Result<String, ActionError> {
        let (Some(yclients), Some(application_id)) = (&self.yclients, self.application_id) else {
            return Err(ActionError::Refused("YClients is not configured".into()));
        };
        let answer = yclients
            .installation_status(salon.get(), application_id)
            .await
            .map_err(|e| ActionError::Refused(format!("YClients could not be asked: {e}")))?;
        let local = status.as_str();
        match answer {
            Some(InstallationStatus::Active) if status == SalonStatus::Frozen => {
                if self
                    .store
                    .unfreeze(salon, UnfreezeNoticedBy::Operator)
                    .await?
                {
                    self.bus.publish(salon, LiveEventKind::ActivationUpdate);
                    let runnable = self.store.salon(salon).await?.is_some_and(|row| {
                        row.status.may_run_whatsapp() && row.whatsapp_phone.is_some()
                    });
                    if runnable {
                        self.linking.ensure_started(salon);
                    }
                    Ok("YClients: active; the frozen salon resumed".into())
                } else {
                    Ok("YClients: active; the salon could not resume (no confirmed pair)".into())
                }
            }
            Some(remote) => Ok(format!("YClients: {remote}; here: {local}")),
            None => Ok(format!(
                "YClients knows no installation (404); here: {local}; nothing removed"
            )),
        }
    }
}
