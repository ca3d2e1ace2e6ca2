//! Booking messages through the simulator: what a `record` webhook makes the client's phone
//! receive, when, and what the admin's section shows. Time is a `ManualClock` the tests move;
//! passes of the sender run by hand (`MESSAGES_WORKER=false`), except where the worker itself is
//! the subject.

use crate::helpers::{phone, salon, spawn_app_with_clock, TestApp, SALON};
use chrono::{TimeZone, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};
use server::clock::{ManualClock, SharedClock};
use std::sync::Arc;
use std::time::Duration;

const CLIENT: &str = "79161234567";

/// 2026-12-03 10:00 UTC: 13:00 in Moscow, 17:00 in Novosibirsk.
fn start() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 3, 10, 0, 0).unwrap()
}

struct World {
    app: TestApp,
    clock: ManualClock,
    webhook: String,
    token: String,
}

async fn world_with(
    at: chrono::DateTime<Utc>,
    timezone: Option<&str>,
    vars: &[(&str, &str)],
) -> World {
    let clock = ManualClock::new(at);
    let shared: SharedClock = Arc::new(clock.clone());
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let app = spawn_app_with_clock(shared, move |env| {
        env.insert("MESSAGES_WORKER".into(), "false".into());
        env.insert("MESSAGES_INTERVAL_MS".into(), "0".into());
        env.insert("MESSAGES_JITTER_MS".into(), "0".into());
        for (k, v) in vars {
            env.insert(k, v);
        }
    })
    .await;
    if let Some(tz) = timezone {
        app.sandbox.set_timezone(SALON, tz);
    }
    let (token, webhook) = app.activate(SALON).await;
    let expected = timezone.unwrap_or("Europe/Moscow");
    wait_until(
        &app,
        "the company info read",
        &format!("SELECT COUNT(*) FROM salons WHERE id = {SALON} AND timezone = '{expected}'"),
        1,
    )
    .await;
    World {
        app,
        clock,
        webhook,
        token,
    }
}

async fn world() -> World {
    world_with(start(), None, &[]).await
}

/// Polls `sql` (a count) until it gives `want` (asynchronous receipts and messages).
async fn wait_until(app: &TestApp, what: &str, sql: &str, want: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let got = app.count(sql).await;
        if got == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {got} instead of {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn record(id: i64, status: &str, datetime: &str, client_phone: Option<&str>) -> Value {
    json!({"company_id": SALON, "resource": "record", "resource_id": id, "status": status,
        "data": {"id": id, "company_id": SALON, "staff_id": 5, "datetime": datetime,
            "services": [{"id": 1, "title": "Стрижка"}, {"id": 2, "title": "Укладка"}],
            "staff": {"id": 5, "name": "Анна"},
            "client": {"id": 9, "name": "Мария", "phone": client_phone.map(Value::from).unwrap_or(Value::Null), "email": ""},
            "attendance": 0, "confirmed": 1, "deleted": status == "delete", "comment": "", "online": true}})
}

impl World {
    async fn post(&self, body: &Value) {
        let response = self.app.post_json(&self.webhook, body).await;
        assert_eq!(response.status(), StatusCode::OK, "webhook stored");
    }

    async fn pass(&self) -> usize {
        self.app.handles.messages.pass().await.expect("a pass runs")
    }

    /// What the client's simulated phone received (reading sends read receipts).
    fn inbox(&self, number: &str) -> Vec<String> {
        self.app.inbox(number)
    }

    async fn count(&self, condition: &str) -> i64 {
        self.app
            .count(&format!(
                "SELECT COUNT(*) FROM message_outbox WHERE salon_id = {SALON} AND {condition}"
            ))
            .await
    }

    /// What the client's phone received, with the number each text came from.
    fn inbox_with_senders(&self, number: &str) -> Vec<(String, String)> {
        self.app
            .simulator
            .read_inbox(&phone(number))
            .into_iter()
            .map(|t| (t.from.map(|f| f.to_string()).unwrap_or_default(), t.text))
            .collect()
    }

    /// Saves the section's settings as the page would; the answer's status.
    async fn save(&self, settings: &Value) -> StatusCode {
        self.app
            .server_fn(
                "onboarding/message-settings",
                &[("token", &self.token), ("settings", &settings.to_string())],
            )
            .await
            .status()
    }

    async fn view(&self) -> Value {
        let response = self
            .app
            .server_fn("onboarding/messages", &[("token", &self.token)])
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.expect("messages JSON")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_booking_is_confirmed_on_the_clients_phone_once_and_its_receipts_follow() {
    let w = world().await;
    let booking = record(
        501,
        "create",
        "2026-12-05T14:30:00+03:00",
        Some("+7 (916) 123-45-67"),
    );
    w.post(&booking).await;
    // YClients delivers again (no exactly-once): nothing more is owed.
    w.post(&booking).await;
    assert_eq!(w.count("kind = 'confirmation'").await, 1);
    assert_eq!(w.count("kind = 'reminder' AND status = 'pending'").await, 2);
    assert_eq!(w.pass().await, 1, "only the confirmation is due now");
    let texts = w.inbox(CLIENT);
    assert_eq!(texts.len(), 1, "one message: {texts:?}");
    let text = &texts[0];
    for part in [
        "Мария",
        "05.12.2026",
        "14:30",
        "Стрижка, Укладка",
        "Анна",
        "ул. Примерная, 1",
    ] {
        assert!(text.contains(part), "{part} in {text}");
    }
    // Delivered when sent; read once the phone opened it.
    wait_until(&w.app, "read receipt", &format!("SELECT COUNT(*) FROM message_outbox WHERE salon_id = {SALON} AND kind = 'confirmation' AND status = 'read'"), 1).await;
    w.post(&booking).await;
    assert_eq!(w.pass().await, 0);
    assert_eq!(
        w.inbox(CLIENT).len(),
        1,
        "the duplicate made no second message"
    );
    let view = w.view().await;
    let row = view["recent"]
        .as_array()
        .expect("recent messages")
        .iter()
        .find(|r| r["kind"] == "confirmation")
        .cloned()
        .expect("the confirmation is listed");
    assert_eq!(row["status"], "read");
    assert_eq!(
        row["to"], "+7 916 ***-**-67",
        "the page shows the number masked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_booking_gets_a_moved_message_and_its_reminder_moves_with_it() {
    let w = world().await;
    w.post(&record(
        502,
        "create",
        "2026-12-05T14:30:00+03:00",
        Some(CLIENT),
    ))
    .await;
    w.pass().await;
    w.post(&record(
        502,
        "update",
        "2026-12-06T16:00:00+03:00",
        Some(CLIENT),
    ))
    .await;
    assert_eq!(
        w.count("status = 'dropped' AND reason = 'superseded'")
            .await,
        2
    );
    w.pass().await;
    let texts = w.inbox(CLIENT);
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(
        texts[1].contains("изменена")
            && texts[1].contains("06.12.2026")
            && texts[1].contains("16:00"),
        "{}",
        texts[1]
    );
    // When the old 24-h reminder would have gone: nothing.
    w.clock
        .set(Utc.with_ymd_and_hms(2026, 12, 4, 11, 35, 0).unwrap());
    w.pass().await;
    assert_eq!(w.inbox(CLIENT).len(), 2);
    // 24 h before the new time: the reminder, about the new time.
    w.clock
        .set(Utc.with_ymd_and_hms(2026, 12, 5, 13, 0, 0).unwrap());
    assert_eq!(w.pass().await, 1);
    let texts = w.inbox(CLIENT);
    assert_eq!(texts.len(), 3);
    assert!(
        texts[2].contains("напоминаем") && texts[2].contains("06.12.2026 в 16:00"),
        "{}",
        texts[2]
    );
    // An update that changes nothing about the visit says nothing.
    let mut same = record(502, "update", "2026-12-06T16:00:00+03:00", Some(CLIENT));
    same["data"]["comment"] = json!("позвонить");
    w.post(&same).await;
    w.pass().await;
    assert_eq!(w.inbox(CLIENT).len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_batch_holding_a_booking_its_move_and_a_repeat_schedules_as_one_by_one_would() {
    use server::store::{EntityEvent, Stored};
    let w = world().await;
    let event = |status: &str, datetime: &str| {
        let body = record(503, status, datetime, Some(CLIENT));
        (
            salon(SALON),
            EntityEvent {
                resource: "record".into(),
                resource_id: "503".into(),
                status: status.into(),
                data: body["data"].clone(),
            },
        )
    };
    let created = event("create", "2026-12-05T14:30:00+03:00");
    let moved = event("update", "2026-12-06T16:00:00+03:00");
    // One group commit: the writer's batch, as concurrent deliveries share it.
    let answers = w
        .app
        .handles
        .store
        .store_entity_events(&[created.clone(), moved, created])
        .await
        .expect("the batch is stored");
    assert_eq!(answers, [Stored::New, Stored::New, Stored::Duplicate]);
    // The move, seen inside the batch, superseded what the booking had waiting (a confirmation
    // and two reminders nobody was sent) and is itself the confirmation, of the new time.
    assert_eq!(
        w.count("status = 'dropped' AND reason = 'superseded'")
            .await,
        3
    );
    assert_eq!(
        w.count("status = 'pending' AND version = 2 AND kind = 'confirmation'")
            .await,
        1
    );
    assert_eq!(w.count("status = 'pending' AND kind = 'reminder'").await, 2);
    assert_eq!(
        w.app
            .count("SELECT COUNT(*) FROM records WHERE record_id = 503 AND version = 2 AND datetime = '2026-12-06T16:00:00+03:00'")
            .await,
        1,
        "the booking is stored as the batch's last event left it"
    );
    w.pass().await;
    let texts = w.inbox(CLIENT);
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert!(
        texts[0].contains("06.12.2026") && texts[0].contains("16:00"),
        "{}",
        texts[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_booking_gets_a_cancellation_and_never_a_reminder() {
    let w = world().await;
    w.post(&record(
        503,
        "create",
        "2026-12-05T14:30:00+03:00",
        Some(CLIENT),
    ))
    .await;
    w.pass().await;
    w.post(&record(
        503,
        "delete",
        "2026-12-05T14:30:00+03:00",
        Some(CLIENT),
    ))
    .await;
    w.pass().await;
    let texts = w.inbox(CLIENT);
    assert_eq!(texts.len(), 2);
    assert!(texts[1].contains("отменена"), "{}", texts[1]);
    assert_eq!(
        w.count("kind = 'reminder' AND status = 'dropped' AND reason = 'booking_cancelled'")
            .await,
        2
    );
    for hour in [11, 12, 13] {
        w.clock
            .set(Utc.with_ymd_and_hms(2026, 12, 5, hour, 0, 0).unwrap());
        w.pass().await;
    }
    assert_eq!(w.inbox(CLIENT).len(), 2, "no reminder after a cancellation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_booking_made_an_hour_ahead_gets_no_day_ahead_reminder_and_a_record_without_a_phone_says_why(
) {
    let w = world().await;
    // 13:00 in Moscow now; the visit at 16:30: the 2-h reminder fits, the 24-h one does not.
    w.post(&record(
        504,
        "create",
        "2026-12-03T16:30:00+03:00",
        Some(CLIENT),
    ))
    .await;
    assert_eq!(
        w.count("record_id = 504 AND kind = 'reminder' AND offset_min = 1440")
            .await,
        0
    );
    assert_eq!(
        w.count("record_id = 504 AND kind = 'reminder' AND offset_min = 120")
            .await,
        1
    );
    w.post(&record(505, "create", "2026-12-04T12:00:00+03:00", None))
        .await;
    w.post(&record(
        506,
        "create",
        "2026-12-04T12:00:00+03:00",
        Some("12-34"),
    ))
    .await;
    w.pass().await;
    let view = w.view().await;
    let reasons: Vec<&str> = view["recent"]
        .as_array()
        .expect("recent messages")
        .iter()
        .filter(|r| r["status"] == "dropped")
        .filter_map(|r| r["reason"].as_str())
        .collect();
    assert!(
        reasons.contains(&"no_phone") && reasons.contains(&"bad_phone"),
        "{reasons:?}"
    );
    assert_eq!(
        w.count("record_id IN (505, 506) AND kind = 'reminder'")
            .await,
        0
    );
    // 14:30 in Moscow: the 2-h reminder.
    w.clock
        .set(Utc.with_ymd_and_hms(2026, 12, 3, 11, 30, 0).unwrap());
    assert_eq!(w.pass().await, 1);
    assert_eq!(w.inbox(CLIENT).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_hours_keep_the_salons_own_timezone_novosibirsk() {
    // 15:30 UTC: 18:30 in Moscow (not quiet) but 22:30 in Novosibirsk (quiet).
    let evening = Utc.with_ymd_and_hms(2026, 12, 3, 15, 30, 0).unwrap();
    let w = world_with(evening, Some("Asia/Novosibirsk"), &[]).await;
    // The visit written with Moscow's offset is shown in the salon's time: 10:00 MSK = 14:00.
    w.post(&record(
        507,
        "create",
        "2026-12-05T10:00:00+03:00",
        Some(CLIENT),
    ))
    .await;
    assert_eq!(w.pass().await, 1);
    assert!(
        w.inbox(CLIENT).is_empty(),
        "nothing at 22:30 in the salon's town"
    );
    assert_eq!(
        w.count("kind = 'confirmation' AND status = 'pending' AND reason = 'quiet_hours'")
            .await,
        1
    );
    // 08:59 there: still quiet.
    w.clock
        .set(Utc.with_ymd_and_hms(2026, 12, 4, 1, 59, 0).unwrap());
    w.pass().await;
    assert!(w.inbox(CLIENT).is_empty());
    // 09:00 in Novosibirsk.
    w.clock
        .set(Utc.with_ymd_and_hms(2026, 12, 4, 2, 0, 0).unwrap());
    w.pass().await;
    let texts = w.inbox(CLIENT);
    assert_eq!(texts.len(), 1);
    assert!(texts[0].contains("05.12.2026 в 14:00"), "{}", texts[0]);
    // A 2-h reminder for a 08:00 visit would fall in the quiet hours until the visit: dropped.
    w.post(&record(
        508,
        "create",
        "2026-12-06T08:00:00+07:00",
        Some("79161234568"),
    ))
    .await;
    w.clock
        .set(Utc.with_ymd_and_hms(2026, 12, 5, 23, 0, 0).unwrap()); // 06:00 there
    w.pass().await;
    assert_eq!(w.count("record_id = 508 AND offset_min = 120 AND status = 'dropped' AND reason = 'quiet_until_visit'").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_opts_the_client_out_with_one_acknowledgement() {
    let w = world().await;
    w.post(&record(
        509,
        "create",
        "2026-12-05T14:30:00+03:00",
        Some(CLIENT),
    ))
    .await;
    w.pass().await;
    assert_eq!(w.inbox(CLIENT).len(), 1);
    w.app
        .simulator
        .reply(salon(SALON), phone(CLIENT), " Стоп ")
        .expect("the phone writes to the salon");
    wait_until(
        &w.app,
        "the opt-out",
        &format!(
            "SELECT COUNT(*) FROM message_opt_outs WHERE salon_id = {SALON} AND phone = '{CLIENT}'"
        ),
        1,
    )
    .await;
    w.pass().await;
    let texts = w.inbox(CLIENT);
    assert_eq!(texts.len(), 2);
    assert!(texts[1].contains("отписались"), "{}", texts[1]);
    // Again "STOP": no second acknowledgement. A new booking: no message.
    w.app
        .simulator
        .reply(salon(SALON), phone(CLIENT), "STOP")
        .expect("the phone replies");
    w.post(&record(
        510,
        "create",
        "2026-12-07T14:30:00+03:00",
        Some(CLIENT),
    ))
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    w.pass().await;
    assert_eq!(w.inbox(CLIENT).len(), 2);
    assert_eq!(w.count("record_id = 510 AND kind = 'confirmation' AND status = 'dropped' AND reason = 'opted_out'").await, 1);
    // Another client of the salon still hears from it; any other text is no opt-out.
    w.app
        .simulator
        .reply(
            salon(SALON),
            phone("79161234599"),
            "Спасибо, стоп-кран не нужен",
        )
        .expect("the phone replies");
    w.post(&record(
        511,
        "create",
        "2026-12-07T14:30:00+03:00",
        Some("79161234599"),
    ))
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    w.pass().await;
    assert_eq!(w.inbox("79161234599").len(), 1);
    let view = w.view().await;
    assert_eq!(view["opted_out"], json!(["+7 916 ***-**-67"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_whatsapp_is_down_messages_wait_and_go_after_the_relink_or_expire_by_rule() {
    let w = world().await;
    w.app
        .simulator
        .unlink_from_phone(salon(SALON))
        .await
        .expect("the phone unlinks");
    w.app
        .wait_for_link_state(SALON, "unlinked", |s| !s.is_linked())
        .await;
    w.post(&record(
        512,
        "create",
        "2026-12-05T14:30:00+03:00",
        Some(CLIENT),
    ))
    .await;
    w.post(&record(
        513,
        "create",
        "2026-12-03T18:00:00+03:00",
        Some("79161234568"),
    ))
    .await;
    w.pass().await;
    assert_eq!(
        w.count("status = 'pending' AND reason = 'whatsapp_down' AND kind = 'confirmation'")
            .await,
        2
    );
    assert!(w.inbox(CLIENT).is_empty());
    // The admin links again; the next pass after the wait sends.
    let scanned = w.app.scan_qr(SALON, "79990009900").await;
    assert_eq!(scanned.status(), StatusCode::OK);
    w.app
        .wait_for_link_state(SALON, "linked again", |s| s.is_linked())
        .await;
    w.clock.advance(chrono::Duration::seconds(31));
    w.pass().await;
    assert_eq!(
        w.inbox(CLIENT).len(),
        1,
        "queued, then sent after the relink"
    );
    assert_eq!(w.inbox("79161234568").len(), 1);
    // Down again for more than a day: a confirmation that old is dropped, a reminder whose
    // visit passed too; each with its reason.
    w.app
        .simulator
        .unlink_from_phone(salon(SALON))
        .await
        .expect("the phone unlinks");
    w.app
        .wait_for_link_state(SALON, "unlinked", |s| !s.is_linked())
        .await;
    w.post(&record(
        514,
        "create",
        "2026-12-10T14:30:00+03:00",
        Some("79161234569"),
    ))
    .await;
    w.clock.advance(chrono::Duration::hours(25));
    w.pass().await;
    assert_eq!(w.count("record_id = 514 AND kind = 'confirmation' AND status = 'dropped' AND reason = 'too_old'").await, 1);
    assert_eq!(w.count("record_id = 513 AND kind = 'reminder' AND status = 'dropped' AND reason = 'visit_passed'").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daily_cap_and_the_pacing_spread_a_burst() {
    let w = world_with(
        start(),
        None,
        &[
            ("MESSAGES_DAILY_CAP", "3"),
            ("MESSAGES_INTERVAL_MS", "60000"),
        ],
    )
    .await;
    for n in 0..5 {
        w.post(&record(
            600 + n,
            "create",
            "2026-12-20T14:30:00+03:00",
            Some(&format!("7916123460{n}")),
        ))
        .await;
    }
    w.pass().await;
    assert_eq!(
        w.count("status IN ('sent', 'delivered', 'read')").await,
        1,
        "one at a time"
    );
    assert_eq!(
        w.count("status = 'pending' AND reason = 'pacing' AND kind = 'confirmation'")
            .await,
        4
    );
    for _ in 0..4 {
        w.clock.advance(chrono::Duration::seconds(60));
        w.pass().await;
    }
    assert_eq!(
        w.count("status IN ('sent', 'delivered', 'read')").await,
        3,
        "the cap of the day"
    );
    assert_eq!(
        w.count("status = 'pending' AND reason = 'daily_cap'").await,
        2
    );
    // The salon's next morning (after midnight come the quiet hours until 09:00 in Moscow).
    w.clock
        .set(Utc.with_ymd_and_hms(2026, 12, 3, 21, 0, 0).unwrap());
    w.pass().await;
    w.clock
        .set(Utc.with_ymd_and_hms(2026, 12, 4, 6, 0, 0).unwrap());
    w.pass().await;
    w.clock.advance(chrono::Duration::seconds(60));
    w.pass().await;
    assert_eq!(
        w.count("kind = 'confirmation' AND status IN ('sent', 'delivered', 'read')")
            .await,
        5
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_are_validated_on_save_and_switched_off_templates_send_nothing() {
    let w = world().await;
    let view = w.view().await;
    let mut settings = view["settings"].clone();
    assert_eq!(settings["reminder_offsets_min"], json!([1440, 120]));
    assert_eq!(settings["quiet_start_min"], 1260);
    settings["confirmation"]["text"] = json!("Здравствуйте, {client}!");
    let refused = w
        .app
        .server_fn(
            "onboarding/message-settings",
            &[("token", &w.token), ("settings", &settings.to_string())],
        )
        .await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let body = refused.text().await.expect("a body");
    assert!(
        body.contains("{client}") && body.contains("client_name"),
        "{body}"
    );
    // Garbage and an oversized body are refused too, never a 500.
    for bad in ["{", &"x".repeat(20_000)] {
        let response = w
            .app
            .server_fn(
                "onboarding/message-settings",
                &[("token", &w.token), ("settings", bad)],
            )
            .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    }
    let forged = w
        .app
        .server_fn("onboarding/messages", &[("token", "not-a-token")])
        .await;
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
    settings["confirmation"]["text"] = json!("Ждём вас, {client_name}, {date} в {time}.");
    settings["moved"]["enabled"] = json!(false);
    settings["reminder_offsets_min"] = json!([180]);
    let saved = w
        .app
        .server_fn(
            "onboarding/message-settings",
            &[("token", &w.token), ("settings", &settings.to_string())],
        )
        .await;
    assert_eq!(saved.status(), StatusCode::OK);
    w.post(&record(
        520,
        "create",
        "2026-12-05T14:30:00+03:00",
        Some(CLIENT),
    ))
    .await;
    // Changed before the confirmation went out: the confirmation, with the new time.
    w.post(&record(
        520,
        "update",
        "2026-12-05T15:30:00+03:00",
        Some(CLIENT),
    ))
    .await;
    w.pass().await;
    assert_eq!(
        w.inbox(CLIENT),
        vec!["Ждём вас, Мария, 05.12.2026 в 15:30.".to_owned()]
    );
    assert_eq!(
        w.count("record_id = 520 AND kind = 'reminder' AND status = 'pending'")
            .await,
        1,
        "one offset: 3 h"
    );
    // "Moved" is off: a later change sends nothing (the reminder still moves).
    w.post(&record(
        520,
        "update",
        "2026-12-05T17:30:00+03:00",
        Some(CLIENT),
    ))
    .await;
    w.pass().await;
    assert_eq!(w.inbox(CLIENT).len(), 1);
    assert_eq!(w.count("record_id = 520 AND kind = 'moved'").await, 0);
    // A booking cancelled before anyone told the client of it: no cancellation either.
    w.post(&record(
        521,
        "create",
        "2026-12-05T14:30:00+03:00",
        Some("79161234568"),
    ))
    .await;
    w.post(&record(
        521,
        "delete",
        "2026-12-05T14:30:00+03:00",
        Some("79161234568"),
    ))
    .await;
    w.pass().await;
    assert!(w.inbox("79161234568").is_empty());
    assert_eq!(w.count("record_id = 521 AND kind = 'confirmation' AND status = 'dropped' AND reason = 'booking_cancelled'").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_sends_by_itself() {
    let clock = ManualClock::new(start());
    let shared: SharedClock = Arc::new(clock.clone());
    let app = spawn_app_with_clock(shared, |env| {
        env.insert("MESSAGES_POLL_MS".into(), "20".into());
    })
    .await;
    let (_, webhook) = app.activate(SALON).await;
    let response = app
        .post_json(
            &webhook,
            &record(530, "create", "2026-12-05T14:30:00+03:00", Some(CLIENT)),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    wait_until(&app, "the confirmation sent", &format!("SELECT COUNT(*) FROM message_outbox WHERE salon_id = {SALON} AND kind = 'confirmation' AND status IN ('sent', 'delivered', 'read')"), 1).await;
    assert_eq!(app.simulator.read_inbox(&phone(CLIENT)).len(), 1);
}

/// A burst of bookings for one salon: the sender sends the first and defers the rest together
/// for the pacing, instead of claiming, checking and deferring each of them with four
/// statements every pass while the burst is still being written (before: a pass took all 40).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_for_one_salon_costs_the_sender_one_row_a_pass_not_the_whole_burst() {
    let w = world_with(start(), None, &[("MESSAGES_INTERVAL_MS", "60000")]).await;
    for n in 0..40 {
        w.post(&record(
            700 + n,
            "create",
            "2026-12-20T14:30:00+03:00",
            Some(&format!("791612347{n:02}")),
        ))
        .await;
    }
    assert_eq!(w.pass().await, 1, "one row taken: the salon is then paced");
    assert_eq!(w.count("status IN ('sent', 'delivered', 'read')").await, 1);
    assert_eq!(
        w.count("status = 'pending' AND reason = 'pacing' AND kind = 'confirmation'")
            .await,
        39,
        "the rest wait for the salon's next turn"
    );
    assert_eq!(w.pass().await, 0, "nothing is due until then");
    // WhatsApp down: the first row finds it and the salon's other due rows wait with it.
    w.app
        .simulator
        .unlink_from_phone(salon(SALON))
        .await
        .expect("the phone unlinks");
    w.app
        .wait_for_link_state(SALON, "unlinked", |s| !s.is_linked())
        .await;
    w.clock.advance(chrono::Duration::seconds(61));
    assert_eq!(w.pass().await, 1);
    assert_eq!(
        w.count("status = 'pending' AND reason = 'whatsapp_down' AND kind = 'confirmation'")
            .await,
        39
    );
    // Linked again: one per turn, in order, until all are sent.
    let scanned = w.app.scan_qr(SALON, "79990009900").await;
    assert_eq!(scanned.status(), StatusCode::OK);
    w.app
        .wait_for_link_state(SALON, "linked again", |s| s.is_linked())
        .await;
    for _ in 0..39 {
        w.clock.advance(chrono::Duration::seconds(61));
        assert_eq!(w.pass().await, 1);
    }
    assert_eq!(w.count("status IN ('sent', 'delivered', 'read')").await, 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_batched_with_a_repeat_another_transaction_is_storing_sees_that_transactions_booking(
) {
    // Another instance given the same delivery stores it while this batch runs: the batch's
    // insert waits for that transaction's key, and the bookings it then reads must be the ones
    // that transaction committed. A read taken before the wait — for instance one riding along
    // in the insert's own statement, whose snapshot predates the wait (tried 2026-12-05,
    // docs/design.md) — would apply the move below to no booking at all: version 1 again, a
    // second confirmation of the old time.
    use sea_orm::{ActiveModelTrait, Set, TransactionTrait};
    use server::db::entities::{entity_events, records};
    use server::domain::sha256_hex;
    use server::store::{EntityEvent, Stored};
    let w = world().await;
    let event = |status: &str, datetime: &str| {
        let body = record(504, status, datetime, Some(CLIENT));
        (
            salon(SALON),
            EntityEvent {
                resource: "record".into(),
                resource_id: "504".into(),
                status: status.into(),
                data: body["data"].clone(),
            },
        )
    };
    let created = event("create", "2026-12-05T14:30:00+03:00");
    let moved = event("update", "2026-12-06T16:00:00+03:00");
    // The other instance's transaction: the creation's event under its key, and the booking.
    let now = Utc::now();
    let other = w.app.handles.db.begin().await.expect("begin");
    let data = created.1.data.to_string();
    let data_hash = sha256_hex(&data);
    entity_events::ActiveModel {
        salon_id: Set(SALON),
        resource: Set("record".into()),
        resource_id: Set("504".into()),
        status: Set("create".into()),
        dedup_key: Set(sha256_hex(format!("{SALON}|record|504|create|{data_hash}"))),
        data_hash: Set(data_hash),
        data: Set(data),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(&other)
    .await
    .expect("the other transaction's event");
    records::ActiveModel {
        salon_id: Set(SALON),
        record_id: Set(504),
        client_phone: Set(Some(CLIENT.into())),
        client_name: Set(None),
        datetime: Set(Some("2026-12-05T14:30:00+03:00".into())),
        status: Set("create".into()),
        deleted: Set(false),
        updated_at: Set(now),
        version: Set(1),
        staff: Set(None),
        services: Set(None),
        ..Default::default()
    }
    .insert(&other)
    .await
    .expect("the other transaction's booking");
    // This instance's batch: the same creation, and the move. Its insert waits for the other
    // transaction's key.
    let store = w.app.handles.store.clone();
    let batch = tokio::spawn(async move { store.store_entity_events(&[created, moved]).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !batch.is_finished(),
        "the batch waits for the other transaction"
    );
    other.commit().await.expect("the other transaction commits");
    let answers = batch.await.expect("task").expect("the batch is stored");
    assert_eq!(answers, [Stored::Duplicate, Stored::New]);
    assert_eq!(
        w.app
            .count("SELECT COUNT(*) FROM records WHERE record_id = 504 AND version = 2 AND datetime = '2026-12-06T16:00:00+03:00'")
            .await,
        1,
        "the move applies to the booking the other transaction stored"
    );
    assert_eq!(
        w.count("kind = 'confirmation' AND version = 2").await,
        1,
        "the move is the client's first message, of the new time"
    );
    assert_eq!(w.count("kind = 'confirmation' AND version = 1").await, 0);
}

/// The documented way out of an unwanted connector is to remove the app in YClients and connect
/// it again ("a new installation … starts clean"). The old installation's wording of the
/// clients' messages and the reminders it owed must not go out through the new installation's
/// WhatsApp (found by an audit read as an attacker, 2026-12-06).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_installation_does_not_send_the_old_installations_words() {
    let w = world().await;
    // The old installation's token holder rewords the reminder.
    let mut settings = w.view().await["settings"].clone();
    settings["reminder"]["text"] =
        json!("{client_name}, запись отменена, оплатите штраф: http://pay.example/{date}");
    assert_eq!(w.save(&settings).await, StatusCode::OK);
    w.post(&record(
        700,
        "create",
        "2026-12-05T14:30:00+03:00",
        Some(CLIENT),
    ))
    .await;
    w.pass().await;
    assert_eq!(w.inbox(CLIENT).len(), 1, "the confirmation");

    // Removed in YClients; someone else at the salon connects it again, with their own WhatsApp.
    w.app.apply_lifecycle(SALON, "uninstall").await;
    w.app.sandbox.create_pending_link(SALON);
    let response = w
        .app
        .redirect_with_query(&crate::helpers::signed_redirect_query(
            SALON,
            r#"{"id":777001,"name":"Новый администратор","phone":"79990007777"}"#,
        ))
        .await;
    assert_eq!(
        response.status(),
        StatusCode::SEE_OTHER,
        "the new installation"
    );
    let new_token = crate::helpers::token_from_location(&response);
    assert_eq!(
        w.app.scan_qr(SALON, "79990007777").await.status(),
        StatusCode::OK
    );
    w.app
        .wait_for_status(&new_token, SALON, "active", |s| {
            s["activation"]["state"] == "active"
        })
        .await;

    // The day before the visit (14:31 in Moscow): the reminder the old installation owed.
    w.clock
        .set(start() + chrono::Duration::minutes(24 * 60 + 91));
    w.pass().await;
    let texts = w.inbox_with_senders(CLIENT);
    assert_eq!(
        texts.len(),
        1,
        "only the old installation's confirmation, nothing through the new one: {texts:#?}"
    );
}

/// Relinked with another number, the salon waits for the admin's answer («use it / disconnect
/// it»); meanwhile nothing goes out from the unconfirmed number, and once it is confirmed the
/// clients' messages go from it (found by an audit read as an attacker, 2026-12-06).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn booking_messages_wait_for_the_number_change_to_be_confirmed() {
    let w = world().await;
    let disconnected = w
        .app
        .server_fn("onboarding/disconnect", &[("token", &w.token)])
        .await;
    assert_eq!(disconnected.status(), StatusCode::OK);
    assert_eq!(
        w.app.scan_qr(SALON, "79990005555").await.status(),
        StatusCode::OK
    );
    w.app
        .wait_for_status(&w.token, SALON, "relinked, change pending", |s| {
            s["number_change_from"].is_string() && s["link"]["state"] == "linked"
        })
        .await;
    w.post(&record(
        800,
        "create",
        "2026-12-05T14:30:00+03:00",
        Some(CLIENT),
    ))
    .await;
    w.pass().await;
    let texts = w.inbox_with_senders(CLIENT);
    assert!(
        texts.is_empty(),
        "sent from the unconfirmed number before the admin answered: {texts:#?}"
    );
    assert_eq!(
        w.count("reason = 'number_unconfirmed'").await,
        1,
        "it waits, and says why"
    );
    // The admin says the new number is theirs: the confirmation goes out at the next retry.
    let confirmed = w
        .app
        .server_fn("onboarding/confirm-number", &[("token", &w.token)])
        .await;
    assert_eq!(confirmed.status(), StatusCode::OK);
    w.clock.set(start() + chrono::Duration::minutes(10));
    w.pass().await;
    let texts = w.inbox_with_senders(CLIENT);
    assert_eq!(texts.len(), 1, "sent once confirmed: {texts:#?}");
    assert_eq!(texts[0].0, "79990005555", "from the confirmed number");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancellation_owed_for_a_booking_restored_meanwhile_is_not_sent() {
    // A booking deleted in the evening owes a cancellation that waits for the salon's morning;
    // the deletion is undone before then. The sender checked neither "still deleted" nor the
    // version for a cancellation, so the client was told «отменена» for a booking that stands
    // (found by an audit read as an attacker, 2026-12-06).
    let w = world().await;
    let visit = "2026-12-05T14:30:00+03:00";
    w.post(&record(950, "create", visit, Some(CLIENT))).await;
    w.pass().await;
    assert_eq!(w.inbox(CLIENT).len(), 1, "the confirmation");
    // 22:00 in Moscow: deleted; the cancellation waits for the morning (quiet hours).
    w.clock
        .set(Utc.with_ymd_and_hms(2026, 12, 3, 19, 0, 0).unwrap());
    w.post(&record(950, "delete", visit, Some(CLIENT))).await;
    w.pass().await;
    assert_eq!(
        w.count("kind = 'cancelled' AND status = 'pending'").await,
        1,
        "the cancellation waits for the morning"
    );
    // 22:10: the deletion is undone — the booking stands again.
    w.clock
        .set(Utc.with_ymd_and_hms(2026, 12, 3, 19, 10, 0).unwrap());
    w.post(&record(950, "update", visit, Some(CLIENT))).await;
    w.pass().await;
    // 09:01 the next morning in Moscow.
    w.clock
        .set(Utc.with_ymd_and_hms(2026, 12, 4, 6, 1, 0).unwrap());
    w.pass().await;
    w.pass().await;
    let texts = w.inbox(CLIENT);
    assert!(
        !texts.iter().any(|t| t.contains("отменена")),
        "the client was told the booking is cancelled although it stands: {texts:#?}"
    );
    assert_eq!(w.count("reason = 'booking_restored'").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_booking_moved_back_and_forth_ends_where_it_really_is() {
    // Moved to 15:00, back to 14:00, and to 15:00 again: the last event is byte for byte the
    // second (YClients' events carry the entity, not a delivery id), so it was answered as a
    // duplicate — for the 90 days events are kept — and never applied. The booking stayed at
    // 14:00, its reminders and the «moved» message with it, while the client was due at 15:00
    // (found by an audit of the message flow, 2026-12-07). The same content is a retry only
    // while YClients could still be retrying (`RETRY_HORIZON`).
    let w = world().await;
    let at = |time: &str| format!("2026-12-05T{time}:00+03:00");
    let post = async |minutes: i64, seconds: i64, time: &str| -> bool {
        w.clock
            .set(start() + chrono::Duration::minutes(minutes) + chrono::Duration::seconds(seconds));
        let response = w
            .app
            .post_json(&w.webhook, &record(970, "update", &at(time), Some(CLIENT)))
            .await;
        assert_eq!(response.status(), StatusCode::OK, "webhook stored");
        let body: Value = response.json().await.expect("JSON");
        body["duplicate"] == json!(true)
    };
    let booked_at = async |time: &str| {
        w.app
            .count(&format!(
                "SELECT COUNT(*) FROM records WHERE salon_id = {SALON} AND record_id = 970 \
                 AND datetime = '{}'",
                at(time)
            ))
            .await
    };
    w.post(&record(970, "create", &at("14:00"), Some(CLIENT)))
        .await;
    w.pass().await;
    assert_eq!(w.inbox(CLIENT).len(), 1, "the confirmation");
    assert!(!post(5, 0, "15:00").await);
    assert!(!post(10, 0, "14:00").await);
    assert!(
        !post(15, 0, "15:00").await,
        "back at 15:00 a quarter of an hour later: a change, not a retry"
    );
    assert_eq!(booked_at("15:00").await, 1, "the booking is at 15:00 again");
    assert_eq!(
        w.count("record_id = 970 AND kind = 'moved' AND status = 'pending' AND version = 4")
            .await,
        1,
        "the client hears of the third move"
    );
    // A retry is still a retry: the same delivery again 30 s later changes nothing …
    assert!(post(15, 30, "15:00").await, "a retry within the horizon");
    // … nor does one arriving after a newer change (YClients keeps no order): 16:00, 17:00,
    // then the 16:00 event's retry 30 s after it.
    assert!(!post(20, 0, "16:00").await);
    assert!(!post(20, 20, "17:00").await);
    assert!(
        post(20, 30, "16:00").await,
        "the 16:00 event's retry is a duplicate"
    );
    assert_eq!(booked_at("17:00").await, 1, "the booking stays at 17:00");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renaming_a_master_or_a_service_is_not_a_move_for_the_client() {
    // The visit's version — and the client's «ваша запись изменена» — followed the master's
    // name and the services' titles as text (and the time as written). The salon renamed its
    // master and a service: the next update of every booking of theirs (confirmed, a comment)
    // told its client the booking had changed, with the same date and time (found by an audit
    // of the message flow, 2026-12-07). Now the ids say who and what; a real move still tells.
    let w = world().await;
    let visit = "2026-12-05T14:30:00+03:00";
    w.post(&record(980, "create", visit, Some(CLIENT))).await;
    w.pass().await;
    assert_eq!(w.inbox(CLIENT).len(), 1, "the confirmation");
    // The same visit: the master and a service renamed, the services in another order, the
    // time written in UTC, and the booking confirmed.
    let mut renamed = record(980, "update", "2026-12-05T11:30:00Z", Some(CLIENT));
    renamed["data"]["staff"] = json!({"id": 5, "name": "Анна Петрова"});
    renamed["data"]["services"] =
        json!([{"id": 2, "title": "Укладка волос"}, {"id": 1, "title": "Стрижка"}]);
    renamed["data"]["confirmed"] = json!(0);
    w.post(&renamed).await;
    w.pass().await;
    assert_eq!(
        w.inbox(CLIENT).len(),
        1,
        "the client was told of a change that is none: {:#?}",
        w.inbox(CLIENT)
    );
    assert_eq!(w.count("record_id = 980 AND kind = 'moved'").await, 0);
    assert_eq!(
        w.count("record_id = 980 AND kind = 'reminder' AND status = 'pending' AND version = 1")
            .await,
        2,
        "the reminders stand"
    );
    // Another master: a move, with the new name.
    let mut moved = renamed.clone();
    moved["data"]["staff_id"] = json!(6);
    moved["data"]["staff"] = json!({"id": 6, "name": "Ольга"});
    w.post(&moved).await;
    w.pass().await;
    let texts = w.inbox(CLIENT);
    assert_eq!(texts.len(), 2, "{texts:#?}");
    assert!(
        texts[1].contains("изменена") && texts[1].contains("Ольга"),
        "{}",
        texts[1]
    );
}

/// Claims the booking's due confirmation as the sender does before sending it (a lease of
/// 120 s), and returns its id: the send is now in flight.
async fn claim_confirmation(w: &World, record_id: i64) -> i32 {
    use server::clock::Clock;
    let now = w.clock.now();
    let store = &w.app.handles.store;
    let row = store
        .due_messages(now, 100)
        .await
        .expect("due rows")
        .into_iter()
        .find(|m| m.record_id == record_id && m.kind == "confirmation")
        .expect("the confirmation is due");
    let id = row.id;
    store
        .claim_message(row, now, chrono::Duration::seconds(120))
        .await
        .expect("claimed")
        .expect("not taken by another sender");
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_booking_cancelled_while_its_confirmation_is_being_sent_still_gets_its_cancellation() {
    // The sender claims the confirmation and hands it to WhatsApp (up to 20 s, longer through
    // another instance); the admin deletes the booking meanwhile. The webhook's transaction asked
    // «was the client told?» by counting rows already recorded as sent: the confirmation in
    // flight was still `pending`, so no cancellation was written — and the confirmation went
    // out. The client was told of a booking that no longer exists, and never that it was
    // cancelled (found by an audit of the message flow, 2026-12-07).
    let w = world().await;
    let visit = "2026-12-05T14:30:00+03:00";
    w.post(&record(960, "create", visit, Some(CLIENT))).await;
    let confirmation = claim_confirmation(&w, 960).await;
    w.post(&record(960, "delete", visit, Some(CLIENT))).await;
    // WhatsApp took the confirmation; the sender records it as sent, as it does.
    w.app
        .handles
        .store
        .message_sent(
            salon(SALON),
            confirmation,
            &phone(CLIENT),
            "Мария, вы записаны в салон на 5 декабря в 14:30",
            "3EB0INFLIGHT0960",
        )
        .await
        .expect("the send is recorded");
    w.pass().await;
    let texts = w.inbox(CLIENT);
    assert!(
        texts.iter().any(|t| t.contains("отменена")),
        "the client got the confirmation and never the cancellation: {texts:#?}"
    );
    assert_eq!(
        w.count(
            "record_id = 960 AND kind = 'cancelled' AND status IN ('sent', 'delivered', 'read')"
        )
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancellation_waits_for_a_send_in_flight_and_is_not_sent_when_that_send_never_went_out() {
    // The other side of the test above: the cancellation is written because the confirmation
    // was out for sending. While that send is still out, the cancellation waits; when it never
    // went out (WhatsApp refused it, the process died: its lease ran out unrecorded), nobody
    // was told of the booking, and «отменена» would be news of a booking the client never heard
    // of.
    let w = world().await;
    let visit = "2026-12-05T14:30:00+03:00";
    w.post(&record(961, "create", visit, Some(CLIENT))).await;
    claim_confirmation(&w, 961).await;
    w.post(&record(961, "delete", visit, Some(CLIENT))).await;
    assert_eq!(
        w.count("record_id = 961 AND kind = 'cancelled' AND status = 'pending'")
            .await,
        1,
        "a confirmation out for sending may reach the client: its cancellation is owed"
    );
    w.pass().await;
    assert_eq!(
        w.count(
            "record_id = 961 AND kind = 'cancelled' AND status = 'pending' \
             AND reason = 'previous_in_flight'"
        )
        .await,
        1,
        "the cancellation waits while the confirmation is out"
    );
    // The confirmation's lease runs out with nothing recorded: it never went out.
    w.clock.set(start() + chrono::Duration::minutes(3));
    w.pass().await;
    assert_eq!(
        w.count("record_id = 961 AND kind = 'cancelled' AND status = 'dropped' AND reason = 'never_told'")
            .await,
        1
    );
    assert!(w.inbox(CLIENT).is_empty(), "{:#?}", w.inbox(CLIENT));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reminder_whose_offset_the_admin_removed_is_not_sent() {
    // The admin keeps only a 1-hour reminder; a booking scheduled before the change still got
    // the 24-hour one: the sender checked the reminder's text and the master switch, not whether
    // the row's offset is still one the admin wants (found by an audit, 2026-12-06).
    let w = world().await;
    w.post(&record(
        960,
        "create",
        "2026-12-05T14:30:00+03:00",
        Some(CLIENT),
    ))
    .await;
    w.pass().await;
    assert_eq!(w.inbox(CLIENT).len(), 1, "the confirmation");
    let mut settings = w.view().await["settings"].clone();
    settings["reminder_offsets_min"] = json!([60]);
    assert_eq!(w.save(&settings).await, StatusCode::OK);
    // The day before the visit, 14:31 in Moscow.
    w.clock
        .set(start() + chrono::Duration::minutes(24 * 60 + 91));
    w.pass().await;
    let texts = w.inbox(CLIENT);
    assert_eq!(
        texts.len(),
        1,
        "a 24-hour reminder went out after the admin kept only the 1-hour one: {texts:#?}"
    );
    assert!(w.count("reason = 'offset_removed'").await >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reminder_offset_the_admin_adds_reaches_the_bookings_already_stored() {
    // The admin adds a 6-hour reminder on Thursday; bookings stored before, for Saturday, never
    // got it: reminders were scheduled only when a booking's webhook was written (left open by
    // the sixth audit). Saving the settings now schedules the added offset for the stored
    // bookings still ahead, by a new booking's rules, and never a reminder twice.
    let w = world().await;
    let saturday = "2026-12-05T14:30:00+03:00";
    let opted = "79161234573";
    w.post(&record(970, "create", saturday, Some(CLIENT))).await;
    // Three hours ahead: too close for a 6-hour reminder.
    w.post(&record(
        971,
        "create",
        "2026-12-03T16:00:00+03:00",
        Some("79161234571"),
    ))
    .await;
    // Cancelled: no reminder.
    w.post(&record(972, "create", saturday, Some("79161234572")))
        .await;
    w.post(&record(972, "delete", saturday, Some("79161234572")))
        .await;
    // Its client opted out.
    w.post(&record(973, "create", saturday, Some(opted))).await;
    w.pass().await;
    assert_eq!(w.inbox(CLIENT).len(), 1, "the confirmation");
    w.app
        .simulator
        .reply(salon(SALON), phone(opted), "СТОП")
        .expect("the phone writes to the salon");
    wait_until(
        &w.app,
        "the opt-out",
        &format!(
            "SELECT COUNT(*) FROM message_opt_outs WHERE salon_id = {SALON} AND phone = '{opted}'"
        ),
        1,
    )
    .await;
    let mut settings = w.view().await["settings"].clone();
    settings["reminder_offsets_min"] = json!([1440, 120, 360]);
    assert_eq!(w.save(&settings).await, StatusCode::OK);
    assert_eq!(
        w.count(
            "kind = 'reminder' AND offset_min = 360 AND record_id = 970 AND status = 'pending'"
        )
        .await,
        1,
        "the booking stored before the change is owed the added reminder"
    );
    assert_eq!(
        w.count("kind = 'reminder' AND offset_min = 360 AND record_id IN (971, 972)")
            .await,
        0,
        "no reminder for a visit too close or a cancelled booking"
    );
    // Saved again, and the offset removed and added back: still one row per booking.
    assert_eq!(w.save(&settings).await, StatusCode::OK);
    settings["reminder_offsets_min"] = json!([1440, 120]);
    assert_eq!(w.save(&settings).await, StatusCode::OK);
    settings["reminder_offsets_min"] = json!([1440, 120, 360]);
    assert_eq!(w.save(&settings).await, StatusCode::OK);
    assert_eq!(
        w.count("kind = 'reminder' AND offset_min = 360").await,
        2,
        "one 6-hour reminder for each of the two bookings owed it"
    );
    // Friday 14:31 in Moscow: the 24-hour reminder.
    w.clock
        .set(Utc.with_ymd_and_hms(2026, 12, 4, 11, 31, 0).unwrap());
    w.pass().await;
    assert_eq!(w.inbox(CLIENT).len(), 2, "the 24-hour reminder");
    // Saturday 08:31 in Moscow: the 6-hour reminder is due, in the quiet hours.
    w.clock
        .set(Utc.with_ymd_and_hms(2026, 12, 5, 5, 31, 0).unwrap());
    w.pass().await;
    assert_eq!(w.inbox(CLIENT).len(), 2, "nothing in the quiet hours");
    // 09:01: it goes out, once.
    w.clock
        .set(Utc.with_ymd_and_hms(2026, 12, 5, 6, 1, 0).unwrap());
    w.pass().await;
    w.pass().await;
    let texts = w.inbox(CLIENT);
    assert_eq!(texts.len(), 3, "{texts:#?}");
    assert!(texts[2].contains("напоминаем"), "{}", texts[2]);
    assert!(
        !w.inbox(opted).iter().any(|t| t.contains("напоминаем")),
        "a client who opted out got a reminder"
    );
    assert_eq!(
        w.count(
            "kind = 'reminder' AND offset_min = 360 AND record_id = 973 AND reason = 'opted_out'"
        )
        .await,
        1
    );
}

/// A person booking online names themselves — YClients' online booking takes the name and the
/// phone as typed — with a paragraph and a link, and gives a stranger's number. Before, the
/// salon's own WhatsApp wrote that stranger a "confirmation" opening with the attacker's text:
/// phishing from the salon's number, with its real title, address and phone after it. A name
/// that does not look like one is now greeted as «Здравствуйте».
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_the_client_typed_cannot_turn_the_salons_message_into_phishing() {
    let world = world().await;
    let victim = "79161230000";
    let mut booking = record(7001, "create", "2026-12-20T14:30:00+03:00", Some(victim));
    booking["data"]["client"]["name"] = json!(
        "Мария.\n\nВНИМАНИЕ: запись НЕ подтверждена. Оплатите предоплату 500 ₽ в течение часа, \
         иначе запись будет отменена: https://yclients-pay.example/p/962302\n\n"
    );
    world.post(&booking).await;
    // And a client whose name is a name.
    world
        .post(&record(
            7002,
            "create",
            "2026-12-20T15:30:00+03:00",
            Some(CLIENT),
        ))
        .await;
    assert_eq!(world.pass().await, 2);
    let texts = world.inbox(victim);
    assert_eq!(texts.len(), 1, "{texts:?}");
    let text = &texts[0];
    assert!(
        !text.contains("https://")
            && !text.contains("yclients-pay")
            && !text.contains("Оплатите")
            && !text.contains('\n'),
        "what the client typed as a name is in the salon's message: {text:?}"
    );
    assert!(text.starts_with("Здравствуйте, вы записаны"), "{text:?}");
    let named = world.inbox(CLIENT);
    assert!(named[0].starts_with("Мария, вы записаны"), "{named:?}");
}

/// A salon whose night it is, with many messages due (a burst of bookings, an import), filled
/// the sender's pass (200 rows, oldest first) with rows each claimed and put off to its morning
/// one by one, so another salon's client, in that salon's afternoon, waited pass after pass.
/// The night now holds the salon's due rows together, as the daily cap and WhatsApp being down
/// do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_salons_night_does_not_hold_another_salons_messages() {
    // 15:00 UTC: 22:00 in Novosibirsk (quiet), 18:00 in Moscow.
    let world = world_with(
        Utc.with_ymd_and_hms(2026, 12, 3, 15, 0, 0).unwrap(),
        Some("Asia/Novosibirsk"),
        &[],
    )
    .await;
    let app = &world.app;
    let (_, other_webhook) = app
        .activate_with(crate::helpers::OTHER_SALON, "79990009911")
        .await;
    let mut posts = tokio::task::JoinSet::new();
    for id in 1..=450i64 {
        let client = app.client.clone();
        let url = world.webhook.clone();
        let body = record(
            id,
            "create",
            "2026-12-20T14:30:00+07:00",
            Some(&format!("7916{id:07}")),
        );
        posts.spawn(async move {
            client
                .post(url)
                .json(&body)
                .send()
                .await
                .map(|r| r.status())
        });
    }
    while let Some(done) = posts.join_next().await {
        assert_eq!(done.expect("joined").expect("sent"), StatusCode::OK);
    }
    let other_client = "79169990011";
    let mut booking = record(1, "create", "2026-12-20T14:30:00+03:00", Some(other_client));
    booking["company_id"] = json!(crate::helpers::OTHER_SALON);
    booking["data"]["company_id"] = json!(crate::helpers::OTHER_SALON);
    let response = app.post_json(&other_webhook, &booking).await;
    assert_eq!(response.status(), StatusCode::OK);
    // Two passes of the sender (a second or two apart in production).
    world.pass().await;
    world.pass().await;
    assert_eq!(
        world.inbox(other_client).len(),
        1,
        "the other salon's client, in its afternoon, still waits behind this salon's night"
    );
    assert_eq!(
        world
            .count("reason = 'quiet_hours' AND status = 'pending'")
            .await,
        450,
        "this salon's messages all wait for its morning"
    );
}

/// The id of the booking's first message (its confirmation).
async fn first_message_id(world: &World, record_id: i64) -> i32 {
    let id = world
        .app
        .count(&format!(
            "SELECT CAST(MIN(id) AS BIGINT) FROM message_outbox \
             WHERE salon_id = {SALON} AND record_id = {record_id}"
        ))
        .await;
    i32::try_from(id).expect("a message id")
}

/// A send in flight when the salon removed the app was recorded after the uninstall had
/// forgotten the salon's clients, and wrote the client's number and the text back into the
/// message's row, kept for ever (named as open in the design notes). With two instances it can
/// happen: the uninstall is applied by whichever instance claims the lifecycle event, while the
/// salon's session on the other one is sending (the sender records a send as `Store::message_sent`, called here as it calls it).
/// The send is still recorded — it went out — but nothing of the client comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_recorded_after_an_uninstall_writes_no_number_or_text_back() {
    let world = world().await;
    world
        .post(&record(
            7003,
            "create",
            "2026-12-20T14:30:00+03:00",
            Some(CLIENT),
        ))
        .await;
    let id = first_message_id(&world, 7003).await;
    world.app.apply_lifecycle(SALON, "uninstall").await;
    world
        .app
        .handles
        .store
        .message_sent(
            salon(SALON),
            id,
            &phone(CLIENT),
            "Мария, вы записаны в салон на 20 декабря в 14:30",
            "3EB0INFLIGHT0001",
        )
        .await
        .expect("the send is recorded");
    world.app.assert_clients_forgotten(SALON).await;
    assert_eq!(
        world
            .count(&format!(
                "id = {id} AND status = 'sent' AND message_id = '3EB0INFLIGHT0001'"
            ))
            .await,
        1,
        "the send is recorded: it went out"
    );
}

/// The same, with the uninstall still under way when the send is recorded (PostgreSQL, where the
/// two run side by side): the uninstall has taken the salon's row and forgotten the message's
/// number, and has not committed. The record waits for it and then writes nothing of the client
/// back; before, it waited for the message's row only, and then wrote the number and text over
/// the forgetting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_recorded_while_an_uninstall_is_under_way_writes_no_number_or_text_back() {
    use sea_orm::{ConnectionTrait, TransactionTrait};
    let world = world().await;
    if !world.app.on_postgres() {
        eprintln!("needs PostgreSQL (TEST_DATABASE_URL=postgres://…): transactions side by side");
        return;
    }
    world
        .post(&record(
            7004,
            "create",
            "2026-12-20T14:30:00+03:00",
            Some(CLIENT),
        ))
        .await;
    let id = first_message_id(&world, 7004).await;
    // An uninstall under way, as `Store::uninstall` goes: the salon's row first, then the
    // forgetting.
    let uninstall = world.app.handles.db.begin().await.expect("a transaction");
    for sql in [
        format!("SELECT id FROM salons WHERE id = {SALON} FOR UPDATE"),
        format!("UPDATE salons SET webhook_secret_hash = NULL, status = 'uninstalled' WHERE id = {SALON}"),
        format!("UPDATE message_outbox SET phone = NULL, text = NULL WHERE salon_id = {SALON}"),
    ] {
        uninstall
            .execute_unprepared(&sql)
            .await
            .expect("the uninstall's statement");
    }
    let store = world.app.handles.store.clone();
    let record = tokio::spawn(async move {
        store
            .message_sent(
                salon(SALON),
                id,
                &phone(CLIENT),
                "Мария, вы записаны в салон на 20 декабря в 14:30",
                "3EB0INFLIGHT0002",
            )
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!record.is_finished(), "the record waits for the uninstall");
    uninstall.commit().await.expect("the uninstall commits");
    record.await.expect("task").expect("the send is recorded");
    assert_eq!(
        world.count("(phone IS NOT NULL OR text IS NOT NULL)").await,
        0,
        "the client's number or the text written back"
    );
    assert_eq!(
        world.count(&format!("id = {id} AND status = 'sent'")).await,
        1,
        "the send is recorded: it went out"
    );
}

/// The salon's clients' names and phones — the entity events as they came, the bookings, the
/// messages' numbers and texts — were kept for ever, even after the salon removed the app (while
/// the uninstall forgot the salon's own credentials and texts). They now go with the app; the
/// opt-outs stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uninstall_forgets_the_salons_clients() {
    let world = world().await;
    world
        .post(&record(
            7002,
            "create",
            "2026-12-20T14:30:00+03:00",
            Some(CLIENT),
        ))
        .await;
    assert_eq!(world.pass().await, 1);
    assert_eq!(world.inbox(CLIENT).len(), 1);
    world.app.apply_lifecycle(SALON, "uninstall").await;
    let app = &world.app;
    app.assert_clients_forgotten(SALON).await;
    assert_eq!(
        world.count("sent_at IS NOT NULL").await,
        1,
        "the sent message is still counted"
    );
    // The salon installs the app again, and the old booking moves: the client is told of the
    // move (the booking's version carried on; a booking forgotten whole would start again at
    // version 1, and its messages' keys would collide with the old ones: nothing sent).
    let (_, webhook) = app.activate(SALON).await;
    let response = app
        .post_json(
            &webhook,
            &record(7002, "update", "2026-12-21T16:00:00+03:00", Some(CLIENT)),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    world.pass().await;
    let texts = world.inbox(CLIENT);
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(texts[1].contains("изменена"), "{texts:?}");
}
