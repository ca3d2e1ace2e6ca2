//! Frozen salons resume by themselves. A `freeze` webhook pauses a salon (its WhatsApp session
//! stops, credentials kept); YClients sends no webhook when the subscription is renewed. So a
//! worker asks YClients, every `FROZEN_CHECK_INTERVAL_MS`, about the installation of each frozen
//! salon it holds our confirmed pair for, and when the answer is `active` resumes it: `Frozen →
//! Active` with an `unfrozen` audit entry in one transaction, the change published (an open page
//! updates), and the WhatsApp session restored from its stored credentials — no new scan, no
//! second activation callback. The entry does the same when the admin comes back first
//! (`store::Store::register`), and writes the same audit entry.
//!
//! The check shares the YClients client, and with it the client's rate limit, with the entry and
//! the activation: a pass asks about at most `FROZEN_CHECK_BATCH` salons, one every
//! `FROZEN_CHECK_PACE_MS`, and the next pass goes on after the last salon answered, so a thousand
//! frozen salons are worked through over several passes instead of in a burst. A pass stops at the
//! first failure to ask (YClients down, rate limited, our token refused) and the next one starts
//! again with that salon; a refusal about one salon alone (403, 422) skips it.

use crate::bus::EventBus;
use crate::config::FrozenCheckSettings;
use crate::linking::Linking;
use crate::store::{Store, StoreError, UnfreezeNoticedBy};
use crate::yclients::{InstallationStatus, YClientsClient, YClientsError};
use app::domain::SalonId;
use app::status::LiveEventKind;
use std::future::Future;

/// The periodic check of frozen salons.
#[derive(Clone)]
pub struct FrozenWatch {
    store: Store,
    yclients: YClientsClient,
    application_id: i64,
    linking: Linking,
    bus: EventBus,
    settings: FrozenCheckSettings,
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Salons YClients answered for.
    pub asked: usize,
    /// Salons that resumed.
    pub resumed: usize,
    /// The pass stopped early because YClients could not be asked.
    pub interrupted: bool,
}

impl FrozenWatch {
    /// `None` without a YClients client (no partner token) or an application id: nobody to ask.
    pub fn new(
        store: Store,
        yclients: Option<YClientsClient>,
        application_id: Option<i64>,
        linking: Linking,
        bus: EventBus,
        settings: FrozenCheckSettings,
    ) -> Option<Self> {
        Some(Self {
            store,
            yclients: yclients?,
            application_id: application_id?,
            linking,
            bus,
            settings,
        })
    }

    /// A pass every interval until `shutdown` (which also ends a pass under way). The first pass
    /// comes one interval after start, so a restart loop cannot turn into a burst of calls.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut cursor = None;
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(self.settings.interval) => {}
            }
            tokio::select! {
                _ = &mut shutdown => return,
                result = self.pass(&mut cursor) => {
                    if let Err(e) = result {
                        tracing::error!(error = %e, "frozen-salon check failed; next interval tries again");
                    }
                }
            }
        }
    }

    /// Asks YClients about the next batch of frozen salons after `cursor` (from the first one
    /// when none are left after it), resuming those it holds as active. `cursor` moves past
    /// each salon YClients answered for.
    pub async fn pass(&self, cursor: &mut Option<SalonId>) -> Result<PassReport, StoreError> {
        let limit = u64::from(self.settings.batch);
        let mut batch = self.store.frozen_salons_to_check(*cursor, limit).await?;
        if batch.is_empty() && cursor.is_some() {
            *cursor = None;
            batch = self.store.frozen_salons_to_check(None, limit).await?;
        }
        let mut report = PassReport::default();
        for (i, salon) in batch.into_iter().enumerate() {
            if i > 0 && !self.settings.pace.is_zero() {
                tokio::time::sleep(self.settings.pace).await;
            }
            match self
                .yclients
                .installation_status(salon.get(), self.application_id)
                .await
            {
                Ok(answer) => {
                    report.asked += 1;
                    *cursor = Some(salon);
                    if self.on_answer(salon, answer).await? {
                        report.resumed += 1;
                    }
                }
                // YClients down or refusing us altogether: the next pass starts with this salon.
                Err(e) if e.is_transient() || matches!(e, YClientsError::Unauthorized(_)) => {
                    tracing::warn!(salon_id = %salon, error = %e, "frozen-salon check: YClients could not be asked; the next interval tries again");
                    report.interrupted = true;
                    break;
                }
                // A refusal about this salon alone: it must not hold up the others.
                Err(e) => {
                    tracing::warn!(salon_id = %salon, error = %e, "frozen-salon check: YClients refused to answer for this salon; left frozen");
                    *cursor = Some(salon);
                }
            }
        }
        Ok(report)
    }

    /// What YClients said about one frozen salon; `true` when it resumed.
    async fn on_answer(
        &self,
        salon: SalonId,
        answer: Option<InstallationStatus>,
    ) -> Result<bool, StoreError> {
        match answer {
            Some(InstallationStatus::Active) => self.resume(salon).await,
            Some(InstallationStatus::Frozen) => {
                tracing::debug!(salon_id = %salon, "still frozen in YClients");
                Ok(false)
            }
            Some(other) => {
                tracing::warn!(salon_id = %salon, status = %other, "frozen salon: YClients reports an installation that is neither active nor frozen; left frozen");
                Ok(false)
            }
            None => {
                tracing::warn!(salon_id = %salon, "frozen salon: YClients knows no installation (404); left frozen, the uninstall webhook removes it");
                Ok(false)
            }
        }
    }

    /// `Frozen → Active` (audited), published, and the WhatsApp session restored from its stored
    /// credentials when the salon has a linked phone.
    async fn resume(&self, salon: SalonId) -> Result<bool, StoreError> {
        if !self
            .store
            .unfreeze(salon, UnfreezeNoticedBy::PeriodicCheck)
            .await?
        {
            // An entry resumed it first, or it changed since it was listed.
            return Ok(false);
        }
        tracing::info!(salon_id = %salon, "frozen salon resumed: YClients holds the installation as active again");
        self.bus.publish(salon, LiveEventKind::ActivationUpdate);
        let runnable = self
            .store
            .salon(salon)
            .await?
            .filter(|row| row.status.may_run_whatsapp() && row.whatsapp_phone.is_some());
        if runnable.is_some() {
            self.linking.ensure_started(salon);
        }
        Ok(true)
    }
}
