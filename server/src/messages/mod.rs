//! Booking messages over the salon's own WhatsApp. `record` webhooks schedule rows in the
//! message outbox inside their own transaction (`store::messages`); this module sends them:
//! a worker claims due rows with a lease, decides by rule (expired, superseded, cancelled,
//! opted out, switched off → a final state with its reason; quiet hours, the daily cap, pacing,
//! WhatsApp down → waits, saying why), renders the template on the booking as it is now and
//! sends it through the salon's linked session only. Receipts move `sent → delivered → read`;
//! «СТОП»/"STOP" from a client opts the number out with one acknowledgement.
//!
//! Time comes from the injected [`Clock`](crate::clock::Clock): tests move it, never sleep.

use crate::clock::SharedClock;
use crate::config::MessagingSettings;
use crate::domain::booking::{kind, normalize_client_phone, salon_timezone, state};
use crate::domain::SalonStatus;
use crate::instruments::Instruments;
use crate::linking::{Inbound, Linking, LinkingError};
use crate::store::{Claimed, Salon, Store, StoreError, Told};
use app::domain::{PhoneNumber, SalonId};
use app::messages::{
    render, BookingFacts, MessageRow, MessageSettings, MessagesView, SettingsError,
};
use app::status::DeliveryStatus;
use chrono::{DateTime, Datelike, NaiveTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use rand::Rng;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, Notify};

/// A confirmation, change or cancellation not sent within a day is no longer news.
const NEWS_TTL_HOURS: i64 = 24;
/// Rows one pass takes at most.
const PASS_LIMIT: u64 = 200;
/// How long a claimed row is ours before another worker may take it.
const LEASE_SECS: i64 = 120;
/// The admin's list: this many latest messages and opted-out numbers.
const RECENT: u64 = 30;

/// The acknowledgement of an opt-out (not a template: it must always say the same).
const OPT_OUT_ACK: &str =
    "Вы отписались от сообщений «{salon_title}». Больше сообщений от нас не будет.";

#[derive(Clone)]
pub struct Messages {
    store: Store,
    linking: Linking,
    clock: SharedClock,
    settings: MessagingSettings,
    instruments: Instruments,
    wake: Arc<Notify>,
    /// When each salon may send next (the steady rate with jitter).
    next_send: Arc<Mutex<HashMap<SalonId, DateTime<Utc>>>>,
    /// Receipts that came before their message was recorded as sent (WhatsApp can answer
    /// before `send_text` returns); applied when it is. The lock spans "record or park" on
    /// both sides so none is lost in between.
    early_receipts: Arc<tokio::sync::Mutex<HashMap<String, Parked>>>,
}

/// Parked receipts kept at most (a receipt for a message that is not ours never gets a row).
const EARLY_RECEIPTS_MAX: usize = 10_000;
/// How long a parked receipt is tried again: a message sent for another instance is recorded
/// there within the send's round trip; one that is not a booking message never is.
const PARKED_FOR: std::time::Duration = std::time::Duration::from_secs(60);

/// A receipt that came before its message was recorded: the salon, the best status heard, and
/// when it was first heard.
type Parked = (SalonId, DeliveryStatus, std::time::Instant);

/// What one pass did with one row.
enum Outcome {
    Sent,
    /// The row waits, and with `Some` every due row of the salon waits the same.
    Waits(&'static str, Option<Hold>),
    Ended(&'static str),
}

/// A wait that holds for every due row of a salon.
#[derive(Debug, Clone, Copy)]
struct Hold {
    until: DateTime<Utc>,
    reason: &'static str,
    /// Whether the opt-out acknowledgements wait too (the daily cap does not hold them).
    acknowledgements_too: bool,
}

impl Messages {
    /// Test messages a salon may send in any 24 hours.
    pub fn test_daily_cap(&self) -> u32 {
        self.settings.test_daily_cap
    }

    pub fn new(
        store: Store,
        linking: Linking,
        settings: MessagingSettings,
        instruments: Instruments,
    ) -> Self {
        Self {
            clock: store.clock().clone(),
            store,
            linking,
            settings,
            instruments,
            wake: Arc::default(),
            next_send: Arc::default(),
            early_receipts: Arc::default(),
        }
    }

    /// Applies the parked receipts whose message is recorded by now: with several instances
    /// the message may have been sent through this instance's session for another instance,
    /// which records it there (after this one heard WhatsApp's first receipt).
    async fn apply_parked_receipts(&self) -> Result<(), StoreError> {
        let mut early = self.early_receipts.lock().await;
        early.retain(|_, (_, _, heard)| heard.elapsed() < PARKED_FOR);
        let parked: Vec<(String, SalonId, DeliveryStatus)> = early
            .iter()
            .map(|(id, (salon, status, _))| (id.clone(), *salon, *status))
            .collect();
        for (message_id, salon, status) in parked {
            if self
                .store
                .message_receipt(salon, &message_id, status)
                .await?
            {
                early.remove(&message_id);
            }
        }
        Ok(())
    }

    /// Sends due messages until `shutdown`, a pass every `MESSAGES_POLL_MS` (sooner when woken).
    pub async fn run_worker(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            if let Err(e) = self.pass().await {
                tracing::error!(error = %e, "booking messages pass failed");
            }
            tokio::select! {
                _ = &mut shutdown => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.settings.poll) => {}
            }
        }
    }

    /// Follows receipts and incoming texts until the linking side goes away.
    pub async fn run_inbound(self, mut inbound: mpsc::UnboundedReceiver<Inbound>) {
        while let Some(event) = inbound.recv().await {
            if let Err(e) = self.on_inbound(event).await {
                tracing::error!(error = %e, "a WhatsApp receipt or message was not recorded");
            }
        }
    }

    /// One receipt or incoming text.
    pub async fn on_inbound(&self, event: Inbound) -> Result<(), StoreError> {
        match event {
            Inbound::Receipt {
                salon,
                message_id,
                status,
            } => {
                let mut early = self.early_receipts.lock().await;
                if !self
                    .store
                    .message_receipt(salon, &message_id, status)
                    .await?
                {
                    if early.len() >= EARLY_RECEIPTS_MAX {
                        early.clear();
                    }
                    let entry = early.entry(message_id).or_insert((
                        salon,
                        status,
                        std::time::Instant::now(),
                    ));
                    entry.1 = entry.1.max(status);
                }
            }
            Inbound::Text { salon, from, text } => {
                if is_opt_out(&text) && self.store.opt_out(salon, &from).await? {
                    tracing::info!(salon_id = %salon, "a client opted out of booking messages");
                    self.instruments
                        .count("ai_admin_message_opt_outs_total", &[]);
                    self.wake.notify_one();
                }
            }
        }
        Ok(())
    }

    /// One pass: takes what is due now and deals with each row; returns how many it took.
    ///
    /// A salon whose message was just sent (its next waits for the pacing) or whose row waits
    /// for a reason that holds for the whole salon (WhatsApp down, the salon paused, the pacing,
    /// the daily cap) is done for this pass: its other due rows are not claimed one by one, only
    /// to be checked and deferred each with four statements; one statement defers them together.
    /// (A burst of bookings for one salon used to cost the sender ~1,000 statements a pass while
    /// the burst was still being written.)
    pub async fn pass(&self) -> Result<usize, StoreError> {
        self.apply_parked_receipts().await?;
        let now = self.clock.now();
        let lease = chrono::Duration::seconds(LEASE_SECS);
        let due = self.store.due_messages(now, PASS_LIMIT).await?;
        let mut count = 0;
        let mut salons: HashMap<SalonId, Option<(Salon, MessageSettings)>> = HashMap::new();
        let mut done: HashMap<SalonId, Option<Hold>> = HashMap::new();
        for row in due {
            let Ok(salon) = SalonId::try_from(row.salon_id) else {
                continue;
            };
            if done.contains_key(&salon) {
                continue;
            }
            // Another instance runs the salon's WhatsApp session: its sender sends the salon's
            // messages. Two senders would each pace the salon, each count it under its daily cap
            // and, when a send outlives its claim, send the same message again.
            if self.linking.runs_elsewhere(salon).await {
                done.insert(salon, None);
                continue;
            }
            // Claimed until the claim's own time plus the lease, not the pass's start plus the
            // lease: a long pass (up to `PASS_LIMIT` rows, each send up to the call timeout) must
            // not reach a row with little or none of its claim left for another instance to take.
            let Some(row) = self
                .store
                .claim_message(row, self.clock.now(), lease)
                .await?
            else {
                continue;
            };
            count += 1;
            if let std::collections::hash_map::Entry::Vacant(slot) = salons.entry(salon) {
                let context = match self.store.salon(salon).await? {
                    Some(s) => Some((s, self.store.message_settings(salon).await?)),
                    None => None,
                };
                slot.insert(context);
            }
            let context = salons.get(&salon).and_then(Option::as_ref);
            let outcome = self.process(salon, context, &row).await?;
            let (result, reason) = match outcome {
                Outcome::Sent => {
                    // Paced: the salon's other due rows wait for its next turn.
                    if let Some(next) = self.next_send_at(salon).filter(|next| *next > now) {
                        done.insert(
                            salon,
                            Some(Hold {
                                until: next,
                                reason: "pacing",
                                acknowledgements_too: true,
                            }),
                        );
                    }
                    ("sent", "")
                }
                Outcome::Waits(reason, hold) => {
                    if hold.is_some() {
                        done.insert(salon, hold);
                    }
                    ("waits", reason)
                }
                Outcome::Ended(reason) => ("ended", reason),
            };
            tracing::debug!(salon_id = %salon, id = row.message.id, kind = %row.message.kind, result, reason, "booking message");
            self.instruments.count(
                "ai_admin_messages_total",
                &[("result", result), ("kind", kind_label(&row.message.kind))],
            );
        }
        for (salon, hold) in done {
            let Some(hold) = hold else { continue };
            let deferred = self
                .store
                .defer_salon_messages(
                    salon,
                    now,
                    hold.until,
                    hold.reason,
                    !hold.acknowledgements_too,
                )
                .await?;
            if deferred > 0 {
                tracing::debug!(salon_id = %salon, deferred, reason = hold.reason, "booking messages wait together");
            }
        }
        Ok(count)
    }

    async fn process(
        &self,
        salon: SalonId,
        context: Option<&(Salon, MessageSettings)>,
        row: &Claimed,
    ) -> Result<Outcome, StoreError> {
        let now = self.clock.now();
        let message = &row.message;
        let end = |reason: &'static str| async move {
            self.store
                .end_message(message.id, state::DROPPED, reason)
                .await
                .map(|_| Outcome::Ended(reason))
        };
        // `shared`: the wait holds for every due row of the salon (see `pass`), with whether
        // the opt-out acknowledgements wait too.
        let wait = |until: DateTime<Utc>, reason: &'static str, shared: Option<bool>| async move {
            self.store
                .defer_message(message.id, until, reason, message.attempts)
                .await
                .map(|_| {
                    let hold = shared.map(|acknowledgements_too| Hold {
                        until,
                        reason,
                        acknowledgements_too,
                    });
                    Outcome::Waits(reason, hold)
                })
        };
        let Some((salon_row, settings)) = context else {
            return end("salon_uninstalled").await;
        };
        let is_ack = message.kind == kind::OPT_OUT_ACK;
        let is_reminder = message.kind == kind::REMINDER;
        // Expiry first: what can never be right again ends here.
        if is_reminder && message.visit_at.is_none_or(|visit| visit <= now) {
            return end("visit_passed").await;
        }
        if !is_ack
            && !is_reminder
            && now - message.created_at > chrono::Duration::hours(NEWS_TTL_HOURS)
        {
            return end("too_old").await;
        }
        match salon_row.status {
            SalonStatus::Uninstalled => return end("salon_uninstalled").await,
            SalonStatus::Active => {}
            _ => return wait(now + retry(&self.settings), "salon_paused", Some(true)).await,
        }
        // WhatsApp was linked again with another number and the admin has not said yet whether
        // it is theirs: nothing goes out from it — not a client's booking, nor an answer to
        // whoever writes to it — until they confirm it (or disconnect it).
        if salon_row.number_change_from.is_some() {
            return wait(
                now + retry(&self.settings),
                "number_unconfirmed",
                Some(true),
            )
            .await;
        }
        let record = row.record.as_ref();
        let phone = if is_ack {
            match message.phone.as_deref().map(PhoneNumber::parse) {
                Some(Ok(phone)) => phone,
                _ => return end("bad_phone").await,
            }
        } else {
            let Some(record) = record else {
                return end("no_booking").await;
            };
            if record.deleted && message.kind != kind::CANCELLED {
                return end("booking_cancelled").await;
            }
            // The deletion was undone while its cancellation waited (quiet hours, the cap,
            // WhatsApp down): the booking stands, and the client must not be told otherwise.
            if message.kind == kind::CANCELLED && !record.deleted {
                return end("booking_restored").await;
            }
            // A cancellation is news only to a client who heard of the booking. It was
            // scheduled because something of the booking was sent or out for sending then; a
            // send still out waits to be recorded, and one that never went out leaves nobody
            // to tell.
            if message.kind == kind::CANCELLED {
                match self
                    .store
                    .booking_told(salon, message.record_id, message.id, now)
                    .await?
                {
                    Told::Yes => {}
                    Told::InFlight => {
                        return wait(now + retry(&self.settings), "previous_in_flight", None).await
                    }
                    Told::No => return end("never_told").await,
                }
            }
            if message.kind != kind::CANCELLED && record.version != message.version {
                return end("superseded").await;
            }
            if !settings.enabled {
                return end("messages_off").await;
            }
            if !settings.template(&message.kind).is_some_and(|t| t.enabled) {
                return end("template_off").await;
            }
            // A reminder scheduled before the admin removed its offset ("24 hours before"
            // switched off, say): the settings apply to rows written earlier, as the texts do.
            if is_reminder
                && u32::try_from(message.offset_min)
                    .is_ok_and(|offset| !settings.reminder_offsets_min.contains(&offset))
            {
                return end("offset_removed").await;
            }
            match normalize_client_phone(record.client_phone.as_deref()) {
                Ok(phone) => phone,
                Err(problem) => return end(problem.reason()).await,
            }
        };
        if !is_ack && self.store.is_opted_out(salon, &phone).await? {
            return end("opted_out").await;
        }
        let tz = salon_timezone(salon_row.timezone.as_deref());
        // The acknowledgement answers the client at once; everything else keeps the hours.
        if !is_ack {
            if let Some(morning) = quiet_until(settings, tz, now) {
                if is_reminder && message.visit_at.is_some_and(|visit| morning >= visit) {
                    return end("quiet_until_visit").await;
                }
                // The night is the salon's: its other due rows (not the acknowledgements) wait
                // for the morning together, in one statement, instead of each filling the pass
                // that other salons' messages are due in. (A reminder whose visit comes before
                // the morning ends then, as `visit_passed`.)
                return wait(morning, "quiet_hours", Some(false)).await;
            }
            let midnight = local_midnight(tz, now);
            let sent_today = self.store.messages_sent_since(salon, midnight).await?;
            if sent_today >= u64::from(self.settings.daily_cap) {
                // The next calendar day there (days are 23 to 25 hours long).
                let tomorrow = local_midnight(tz, midnight + chrono::Duration::hours(36));
                return wait(tomorrow, "daily_cap", Some(false)).await;
            }
        }
        if let Some(next) = self.next_send_at(salon).filter(|next| *next > now) {
            return wait(next, "pacing", Some(true)).await;
        }
        if !self.linking.current(salon).await.0.is_linked() {
            return wait(now + retry(&self.settings), "whatsapp_down", Some(true)).await;
        }
        let text = match record {
            Some(record) if !is_ack => {
                let template = settings
                    .template(&message.kind)
                    .map(|t| t.text.as_str())
                    .unwrap_or_default();
                render(template, &facts(salon_row, record, tz))
            }
            _ => OPT_OUT_ACK.replace("{salon_title}", &salon_row.title),
        };
        match self
            .linking
            .send_message(salon, phone.clone(), text.clone())
            .await
        {
            Ok(message_id) => {
                let mut early = self.early_receipts.lock().await;
                self.store
                    .message_sent(salon, message.id, &phone, &text, &message_id)
                    .await?;
                if let Some((from, status, _)) = early.remove(&message_id) {
                    if from == salon {
                        self.store
                            .message_receipt(salon, &message_id, status)
                            .await?;
                    }
                }
                drop(early);
                self.paced(salon, now);
                Ok(Outcome::Sent)
            }
            Err(LinkingError::NotLinked | LinkingError::Stopped | LinkingError::Banned { .. }) => {
                wait(now + retry(&self.settings), "whatsapp_down", Some(true)).await
            }
            Err(e) => {
                let attempts = message.attempts + 1;
                tracing::warn!(salon_id = %salon, id = message.id, attempts, error = %e, "a booking message was not sent");
                if attempts >= self.settings.max_attempts as i32 {
                    self.store
                        .end_message(message.id, state::FAILED, "send_refused")
                        .await?;
                    return Ok(Outcome::Ended("send_refused"));
                }
                self.store
                    .defer_message(
                        message.id,
                        now + retry(&self.settings) * attempts,
                        "send_failed",
                        attempts,
                    )
                    .await?;
                Ok(Outcome::Waits("send_failed", None))
            }
        }
    }

    fn next_send_at(&self, salon: SalonId) -> Option<DateTime<Utc>> {
        self.next_send
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&salon)
            .copied()
    }

    /// After a send: the salon's next message waits the interval plus some jitter.
    fn paced(&self, salon: SalonId, now: DateTime<Utc>) {
        let jitter_ms = self.settings.jitter.as_millis() as i64;
        let gap = self.settings.interval.as_millis() as i64
            + if jitter_ms > 0 {
                rand::thread_rng().gen_range(0..=jitter_ms)
            } else {
                0
            };
        if gap > 0 {
            self.next_send
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(salon, now + chrono::Duration::milliseconds(gap));
        }
    }

    /// Wakes the worker (new rows to look at).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// What the admin's section shows.
    pub async fn view(&self, salon: &Salon) -> Result<MessagesView, StoreError> {
        let settings = self.store.message_settings(salon.id).await?;
        let recent = self
            .store
            .recent_messages(salon.id, RECENT)
            .await?
            .into_iter()
            .map(|m| MessageRow {
                to: m
                    .phone
                    .as_deref()
                    .and_then(|p| PhoneNumber::parse(p).ok())
                    .map(|p| p.masked()),
                kind: m.kind,
                offset_min: m.offset_min.max(0) as u32,
                record_id: m.record_id,
                status: m.status,
                reason: m.reason,
                due_at_ms: m.due_at.timestamp_millis(),
                updated_at_ms: m.updated_at.timestamp_millis(),
            })
            .collect();
        let opted_out = self
            .store
            .opted_out_numbers(salon.id, RECENT)
            .await?
            .iter()
            .filter_map(|p| PhoneNumber::parse(p).ok().map(|p| p.masked()))
            .collect();
        Ok(MessagesView {
            settings,
            recent,
            opted_out,
            salon_title: salon.title.clone(),
            timezone: salon_timezone(salon.timezone.as_deref()).name().to_owned(),
        })
    }

    /// Validates and stores the admin's settings (an unknown placeholder is refused here).
    pub async fn save_settings(
        &self,
        salon: SalonId,
        settings: &MessageSettings,
    ) -> Result<Result<(), SettingsError>, StoreError> {
        if let Err(e) = settings.validate() {
            return Ok(Err(e));
        }
        self.store.save_message_settings(salon, settings).await?;
        Ok(Ok(()))
    }
}

fn retry(settings: &MessagingSettings) -> chrono::Duration {
    chrono::Duration::from_std(settings.retry).unwrap_or(chrono::Duration::seconds(30))
}

fn kind_label(kind: &str) -> &'static str {
    match kind {
        kind::CONFIRMATION => kind::CONFIRMATION,
        kind::MOVED => kind::MOVED,
        kind::CANCELLED => kind::CANCELLED,
        kind::REMINDER => kind::REMINDER,
        _ => kind::OPT_OUT_ACK,
    }
}

/// «СТОП», "stop", "Stop!" — the whole message, any case, trailing punctuation ignored.
pub fn is_opt_out(text: &str) -> bool {
    let word = text.trim().trim_end_matches(['!', '.', ' ']).to_uppercase();
    matches!(word.as_str(), "СТОП" | "STOP")
}

/// The placeholders' values for a booking as it is now, in the salon's timezone.
fn facts(salon: &Salon, record: &crate::db::entities::records::Model, tz: Tz) -> BookingFacts {
    let visit = crate::domain::booking::visit_time(record.datetime.as_deref(), tz)
        .map(|at| at.with_timezone(&tz));
    BookingFacts {
        client_name: greeting_name(record.client_name.as_deref()),
        date: visit
            .map(|v| format!("{:02}.{:02}.{}", v.day(), v.month(), v.year()))
            .unwrap_or_default(),
        time: visit
            .map(|v| format!("{:02}:{:02}", v.hour(), v.minute()))
            .unwrap_or_default(),
        services: record.services.clone().unwrap_or_default(),
        staff: record.staff.clone().unwrap_or_default(),
        salon_title: salon.title.clone(),
        salon_address: salon.address.clone().unwrap_or_default(),
        salon_phone: salon.phone.clone().unwrap_or_default(),
    }
}

/// Who a message greets. The client's name is as the client typed it (YClients' online booking
/// takes it verbatim), and every text begins with it, so a name is used only when it looks like
/// one: at most three words, each of letters (any script) with hyphens, apostrophes or a closing
/// period, of which the first two are used («Мария», «Анна-Мария И.»). Anything else — a link, a phone number, an e-mail,
/// lines of text, «оплатите…» after a name — would speak in the salon's voice from the salon's
/// number, so it is greeted as «Здравствуйте» instead.
pub fn greeting_name(typed: Option<&str>) -> String {
    const FALLBACK: &str = "Здравствуйте";
    const MAX_WORD_CHARS: usize = 30;
    let Some(typed) = typed else {
        return FALLBACK.to_owned();
    };
    let words: Vec<&str> = typed.split_whitespace().collect();
    let is_word = |word: &str| {
        let core = word.strip_suffix('.').unwrap_or(word);
        !core.is_empty()
            && core.chars().count() <= MAX_WORD_CHARS
            && core.chars().next().is_some_and(char::is_alphabetic)
            && core
                .chars()
                .all(|c| c.is_alphabetic() || matches!(c, '-' | '\'' | '’'))
    };
    // A full name has three words at most (имя, отчество, фамилия); more is a sentence.
    if words.is_empty() || words.len() > 3 || !words.iter().all(|w| is_word(w)) {
        return FALLBACK.to_owned();
    }
    words[..words.len().min(2)].join(" ")
}

/// When the quiet hours around `now` end (in UTC), or `None` outside them.
pub fn quiet_until(
    settings: &MessageSettings,
    tz: Tz,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let local = now.with_timezone(&tz);
    let minute = local.hour() * 60 + local.minute();
    if !settings.is_quiet(minute) {
        return None;
    }
    let end = NaiveTime::from_hms_opt(settings.quiet_end_min / 60, settings.quiet_end_min % 60, 0)?;
    let mut day = local.date_naive();
    if minute >= settings.quiet_end_min {
        day = day.succ_opt()?;
    }
    tz.from_local_datetime(&day.and_time(end))
        .earliest()
        .map(|at| at.with_timezone(&Utc))
}

/// The start of the salon's calendar day holding `now`, in UTC.
fn local_midnight(tz: Tz, now: DateTime<Utc>) -> DateTime<Utc> {
    let day = now.with_timezone(&tz).date_naive();
    tz.from_local_datetime(&day.and_time(NaiveTime::MIN))
        .earliest()
        .map(|at| at.with_timezone(&Utc))
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_message_greets_a_name_only_when_it_looks_like_one() {
        for (typed, greeted) in [
            (Some("Мария"), "Мария"),
            (Some("  Анна-Мария   И. "), "Анна-Мария И."),
            (Some("Анна Ивановна Петрова"), "Анна Ивановна"),
            (Some("O'Brien"), "O'Brien"),
            (
                Some("Мария.\n\nОплатите предоплату: https://pay.example/p/1"),
                "Здравствуйте",
            ),
            (Some("Мария https://pay.example"), "Здравствуйте"),
            (Some("pay.example"), "Здравствуйте"),
            (Some("Позвоните +7 916 123-45-67"), "Здравствуйте"),
            (Some("maria@example.com"), "Здравствуйте"),
            (Some("Мария оплатите предоплату срочно"), "Здравствуйте"),
            (Some("Мария!"), "Здравствуйте"),
            (Some("-"), "Здравствуйте"),
            (Some(""), "Здравствуйте"),
            (Some("Ааааааааааааааааааааааааааааааааааа"), "Здравствуйте"),
            (None, "Здравствуйте"),
        ] {
            assert_eq!(super::greeting_name(typed), greeted, "{typed:?}");
        }
    }

    use super::*;

    #[test]
    fn stop_words_in_any_case() {
        for text in ["СТОП", "стоп", " Стоп! ", "STOP", "stop.", "Stop"] {
            assert!(is_opt_out(text), "{text}");
        }
        for text in ["не стоп", "стопка", "STOPPED", ""] {
            assert!(!is_opt_out(text), "{text}");
        }
    }

    #[test]
    fn quiet_hours_end_in_the_salons_morning() {
        let settings = MessageSettings::default();
        let novosibirsk = salon_timezone(Some("Asia/Novosibirsk"));
        // 15:30 UTC is 22:30 in Novosibirsk (UTC+7): quiet until 09:00 there = 02:00 UTC.
        let evening = Utc.with_ymd_and_hms(2026, 12, 3, 15, 30, 0).unwrap();
        assert_eq!(
            quiet_until(&settings, novosibirsk, evening),
            Some(Utc.with_ymd_and_hms(2026, 12, 4, 2, 0, 0).unwrap())
        );
        // 01:00 UTC is 08:00 there: quiet for another hour.
        let early = Utc.with_ymd_and_hms(2026, 12, 4, 1, 0, 0).unwrap();
        assert_eq!(
            quiet_until(&settings, novosibirsk, early),
            Some(Utc.with_ymd_and_hms(2026, 12, 4, 2, 0, 0).unwrap())
        );
        // The same 15:30 UTC is 18:30 in Moscow: not quiet.
        let moscow = salon_timezone(Some("Europe/Moscow"));
        assert_eq!(quiet_until(&settings, moscow, evening), None);
    }

    #[test]
    fn the_salons_day_starts_at_its_midnight() {
        let novosibirsk = salon_timezone(Some("Asia/Novosibirsk"));
        let at = Utc.with_ymd_and_hms(2026, 12, 3, 20, 0, 0).unwrap(); // 03:00 on the 4th there
        assert_eq!(
            local_midnight(novosibirsk, at),
            Utc.with_ymd_and_hms(2026, 12, 3, 17, 0, 0).unwrap()
        );
    }

    /// Every reason the sender writes on a row — why it waits or why it ended — has words in
    /// the admin's «Сообщения» section (a reason without them showed as «—»). Read off this
    /// file's own `end("…")` and `wait(…, "…", …)` calls, and the uninstall's and hand-over's.
    #[test]
    fn every_reason_the_sender_writes_has_words_for_the_admin() {
        let source = include_str!("mod.rs");
        let mut reasons: Vec<&str> = vec!["salon_uninstalled", "salon_handed_over", "send_failed"];
        for (open, skip_args) in [("end(\"", 0), ("wait(", 1)] {
            for piece in source.split(open).skip(1) {
                let piece = if skip_args == 0 {
                    piece
                } else {
                    // The call's first string literal is its reason.
                    match piece.split_once('"') {
                        Some((before, rest)) if !before.contains(';') => rest,
                        _ => continue,
                    }
                };
                if let Some((reason, _)) = piece.split_once('"') {
                    if !reason.is_empty()
                        && reason.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                    {
                        reasons.push(reason);
                    }
                }
            }
        }
        for expected in [
            "never_told",
            "previous_in_flight",
            "booking_restored",
            "quiet_hours",
        ] {
            assert!(
                reasons.contains(&expected),
                "{expected} not found in {reasons:?}"
            );
        }
        for strings in [&app::messages::MESSAGES_RU, &app::messages::MESSAGES_EN] {
            for reason in &reasons {
                assert_ne!(strings.reason(reason), "—", "{reason} has no words");
            }
        }
    }
}
