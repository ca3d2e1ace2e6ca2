//! The WhatsApp credentials at rest, attacked: what the database holds is ciphertext bound to
//! its row, keys rotate without losing a link, a paused old owner's writes are refused and change
//! nothing, and no credential lands on the instance's disk.

use crate::helpers::{
    build_app_with, salon, spawn_app, spawn_app_with, TestApp, CREDENTIALS_KEYS, OTHER_SALON, SALON,
};
use app::status::LinkState;
use reqwest::StatusCode;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, ExprTrait, IntoActiveModel, QueryFilter, Set,
};
use server::db::entities::{session_leases, whatsapp_credentials as creds};
use server::store::{CredentialWrite, SessionLease, StoreError};

const PHONE: &str = "79990009900";
/// Rotation: `OLD` is the test default's key; `NEW` is another.
const OLD: &str = CREDENTIALS_KEYS;
const NEW: &str = "test2:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

async fn rows(app: &TestApp, salon_id: i64) -> Vec<creds::Model> {
    creds::Entity::find()
        .filter(creds::Column::SalonId.eq(salon_id))
        .all(&app.handles.db)
        .await
        .expect("query")
}

async fn simulator_row(app: &TestApp) -> creds::Model {
    let mut rows = rows(app, SALON).await;
    assert_eq!(rows.len(), 1, "one sealed row for the simulated device");
    rows.remove(0)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The salon's lease as its owner holds it now.
async fn current_lease(app: &TestApp) -> SessionLease {
    let (owner, generation, _) = app
        .handles
        .store
        .session_lease(salon(SALON))
        .await
        .expect("query")
        .expect("a lease row");
    SessionLease {
        salon: salon(SALON),
        owner: owner.expect("held"),
        generation,
    }
}

/// Another instance takes the salon's lease (as after this one paused past the expiry).
async fn take_lease_elsewhere(app: &TestApp) {
    session_leases::Entity::update_many()
        .col_expr(
            session_leases::Column::Owner,
            sea_orm::sea_query::Expr::value("instance-other"),
        )
        .col_expr(
            session_leases::Column::Generation,
            sea_orm::sea_query::Expr::col(session_leases::Column::Generation).add(1),
        )
        .col_expr(
            session_leases::Column::ExpiresAt,
            sea_orm::sea_query::Expr::value(chrono::Utc::now() + chrono::Duration::seconds(60)),
        )
        .filter(session_leases::Column::SalonId.eq(SALON))
        .exec(&app.handles.db)
        .await
        .expect("taken");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_holds_ciphertext_that_opens_for_its_own_row_only() {
    let app = spawn_app().await;
    app.link_whatsapp(SALON, PHONE).await;
    let stored = app
        .handles
        .store
        .device_credentials(salon(SALON), "simulator")
        .await
        .expect("opens")
        .expect("stored");
    assert!(stored.credentials.starts_with("sim-"));

    let row = simulator_row(&app).await;
    assert_eq!(row.key_id, "test1");
    assert!(
        !contains(&row.value, stored.credentials.as_bytes()),
        "the secret is not in the row"
    );
    assert!(!contains(&row.value, PHONE.as_bytes()), "nor the phone");
    assert!(!contains(&row.value, b"sim-"));

    // An attacker with write access copies the sealed device into another salon's row.
    let mut copied = row.clone().into_active_model();
    copied.salon_id = Set(OTHER_SALON);
    copied.insert(&app.handles.db).await.expect("copied");
    match app
        .handles
        .store
        .device_credentials(salon(OTHER_SALON), "simulator")
        .await
    {
        Err(StoreError::Sealed { reason, .. }) => {
            assert_eq!(reason, server::domain::OpenError::Inauthentic)
        }
        other => panic!("a moved value must not open, got {other:?}"),
    }
    // …or flips a byte of it in place.
    let mut flipped = row.value.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x01;
    let mut tampered = row.clone().into_active_model();
    tampered.value = Set(flipped);
    tampered.update(&app.handles.db).await.expect("tampered");
    assert!(matches!(
        app.handles
            .store
            .device_credentials(salon(SALON), "simulator")
            .await,
        Err(StoreError::Sealed { .. })
    ));
    // Neither is a panic: the app still serves.
    assert_eq!(
        app.get("/marketplace/health").await.status(),
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_keys_keep_old_rows_open_and_seal_new_writes_under_the_new_key() {
    let app = spawn_app().await;
    app.link_whatsapp(SALON, PHONE).await;
    assert_eq!(simulator_row(&app).await.key_id, "test1");

    // The new key first, the old one still listed: the link comes back from the old row.
    let app = app
        .restart_with(|vars| {
            vars.insert("CREDENTIALS_KEYS".into(), format!("{NEW},{OLD}"));
        })
        .await;
    app.wait_for_link_state(
        SALON,
        "restored from the old key's row",
        LinkState::is_linked,
    )
    .await;
    assert_eq!(
        simulator_row(&app).await.key_id,
        "test1",
        "read, not rewritten"
    );

    // A new write (the phone unlinks, a new scan) is sealed under the new key.
    app.simulator
        .unlink_from_phone(salon(SALON))
        .await
        .expect("unlinked");
    app.wait_for_link_state(SALON, "a fresh QR", |s| matches!(s, LinkState::Qr { .. }))
        .await;
    assert_eq!(app.scan_qr(SALON, PHONE).await.status(), StatusCode::OK);
    app.wait_for_link_state(SALON, "linked again", LinkState::is_linked)
        .await;
    assert_eq!(simulator_row(&app).await.key_id, "test2");

    // The old key retired: everything still opens.
    let app = app
        .restart_with(|vars| {
            vars.insert("CREDENTIALS_KEYS".into(), NEW.into());
        })
        .await;
    app.wait_for_link_state(SALON, "restored under the new key", LinkState::is_linked)
        .await;

    // The new key dropped by mistake: the row is an error that names the key, not a panic,
    // and the app serves on.
    let app = app
        .restart_with(|vars| {
            vars.insert("CREDENTIALS_KEYS".into(), OLD.into());
        })
        .await;
    match app
        .handles
        .store
        .device_credentials(salon(SALON), "simulator")
        .await
    {
        Err(error @ StoreError::Sealed { .. }) => {
            assert!(error.to_string().contains("test2"), "{error}");
            assert!(!error.to_string().contains("ICEi"), "{error}");
        }
        other => panic!("expected an unknown key, got {other:?}"),
    }
    assert_eq!(
        app.get("/marketplace/health").await.status(),
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_owner_cannot_write_credentials_and_leaves_the_row_unchanged() {
    let app = spawn_app().await;
    app.link_whatsapp(SALON, PHONE).await;
    let stale = current_lease(&app).await;
    let before = simulator_row(&app).await;
    take_lease_elsewhere(&app).await;

    let store = &app.handles.store;
    let phone = crate::helpers::phone(PHONE);
    for refused in [
        store
            .save_device_credentials(&stale, "simulator", &phone, "sim-stale")
            .await,
        store.clear_device_credentials(&stale, "simulator").await,
        store.purge_credentials_fenced(&stale).await.map(drop),
        store
            .write_credentials(
                &stale,
                vec![CredentialWrite::Put {
                    namespace: "wa.session",
                    key: "a@s.whatsapp.net".into(),
                    value: b"stale ratchet".to_vec(),
                    stamp: None,
                }],
            )
            .await
            .map(drop),
    ] {
        assert!(
            matches!(refused, Err(StoreError::Fenced(s)) if s == salon(SALON)),
            "{refused:?}"
        );
    }
    assert_eq!(
        simulator_row(&app).await,
        before,
        "the row is exactly as it was"
    );
}

/// A paused old owner learns late that WhatsApp logged its device out, after another instance
/// took the session over: forgetting the device is the new owner's business, so the old owner's
/// purge is refused and the stored credentials stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_owners_logout_does_not_purge_the_new_owners_credentials() {
    let app = spawn_app().await;
    app.link_whatsapp(SALON, PHONE).await;
    let before = simulator_row(&app).await;
    take_lease_elsewhere(&app).await;
    // The session here has not noticed yet (its next renewal is seconds away); the phone
    // unlinks the device it runs.
    let unlinked = app
        .client
        .post(app.url("/dev/phone/unlink"))
        .form(&[("salon", SALON.to_string().as_str())])
        .send()
        .await
        .expect("sent");
    assert_eq!(unlinked.status(), StatusCode::OK);
    crate::instances::wait_until("the stale session ends", async || {
        app.handles.linking.session_count() == 0
    })
    .await;
    assert_eq!(
        simulator_row(&app).await,
        before,
        "the credentials stay for the instance that holds the lease"
    );
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM whatsapp_devices WHERE salon_id = {SALON}"
        ))
        .await,
        1,
        "the device row stays too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_on_a_session_whose_lease_was_taken_stores_nothing() {
    let app = spawn_app().await;
    app.enter(SALON).await;
    app.current_qr(SALON).await;
    take_lease_elsewhere(&app).await;
    let scanned = app.scan_qr(SALON, PHONE).await;
    assert_eq!(scanned.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(rows(&app, SALON).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credential_lands_on_the_instances_disk() {
    let data_dir = crate::helpers::scratch_dir();
    std::fs::create_dir_all(&data_dir).expect("data dir");
    let dir = data_dir.display().to_string();
    let app = spawn_app_with(|vars| {
        vars.insert("DATA_DIR".into(), dir.clone());
    })
    .await;
    app.link_whatsapp(SALON, PHONE).await;
    let app = app.restart().await;
    app.wait_for_link_state(SALON, "restored", LinkState::is_linked)
        .await;
    assert!(!data_dir.join("whatsapp").exists());
    let files: Vec<_> = std::fs::read_dir(&data_dir)
        .expect("listable")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(files.is_empty(), "nothing under DATA_DIR: {files:?}");
    assert_eq!(rows(&app, SALON).await.len(), 1, "the credentials are rows");
    let _ = std::fs::remove_dir_all(&data_dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_keys_postgres_refuses_to_start_and_sqlite_keeps_a_generated_key() {
    let data_dir = crate::helpers::scratch_dir();
    let dir = data_dir.display().to_string();
    let built = build_app_with(|vars| {
        vars.remove("CREDENTIALS_KEYS");
        vars.insert("DATA_DIR".into(), dir.clone());
    })
    .await;
    let on_postgres =
        std::env::var("TEST_DATABASE_URL").is_ok_and(|url| url.starts_with("postgres"));
    if on_postgres {
        let error = built.err().expect("refused").to_string();
        assert!(error.contains("CREDENTIALS_KEYS"), "{error}");
        return;
    }
    drop(built.expect("SQLite builds without keys"));
    let key_file = data_dir.join("credentials-key");
    let first = std::fs::read_to_string(&key_file).expect("a generated key");
    assert!(first.starts_with("local:"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file)
            .expect("file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "owner-only");
    }
    let again = build_app_with(|vars| {
        vars.remove("CREDENTIALS_KEYS");
        vars.insert("DATA_DIR".into(), dir.clone());
    })
    .await
    .expect("builds again");
    drop(again);
    assert_eq!(
        std::fs::read_to_string(&key_file).expect("kept"),
        first,
        "the same key across restarts"
    );
    let _ = std::fs::remove_dir_all(&data_dir);
}

/// The web backend's storage on this database (PostgreSQL too, where its SQL differs most: the
/// key-prefix match, a batch that puts one key twice, the sweeps), through the crate's traits.
#[cfg(feature = "whatsapp-web")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_backends_storage_works_on_this_database() {
    use bytes::Bytes;
    use server::linking::sealed_backend::{stored_device, SealedBackend};
    use std::sync::Arc;
    use whatsapp_rust::store::traits::{
        AppSyncStore, DeviceStore, MsgSecretEntry, MsgSecretStore, ProtocolStore, SignalStore,
    };
    use whatsapp_rust::wacore::appstate::processor::AppStateMutationMAC;

    let app = spawn_app().await;
    let store = &app.handles.store;
    let lease = store
        .acquire_session_lease(
            salon(OTHER_SALON),
            "instance-test",
            chrono::Utc::now() + chrono::Duration::minutes(5),
        )
        .await
        .expect("query")
        .expect("free");
    let backend = SealedBackend::new(store.clone(), lease);

    backend
        .put_sessions_batch(&[
            (
                Arc::from("111:2@s.whatsapp.net"),
                Bytes::from_static(b"first"),
            ),
            (
                Arc::from("111:2@s.whatsapp.net"),
                Bytes::from_static(b"second"),
            ),
            (
                Arc::from("1110@s.whatsapp.net"),
                Bytes::from_static(b"other"),
            ),
        ])
        .await
        .expect("one key twice in a batch");
    assert_eq!(
        backend
            .get_session("111:2@s.whatsapp.net")
            .await
            .expect("get"),
        Some(Bytes::from_static(b"second")),
        "the last value of the batch wins"
    );
    assert!(backend
        .has_signal_state_for_user("111")
        .await
        .expect("state"));
    assert!(backend
        .has_signal_state_for_user("1110")
        .await
        .expect("state"));
    assert!(!backend
        .has_signal_state_for_user("11")
        .await
        .expect("state"));

    let mac = |i: u8| AppStateMutationMAC {
        index_mac: vec![i; 32],
        value_mac: vec![i],
    };
    backend
        .put_mutation_macs("regular", 1, &[mac(1), mac(2)])
        .await
        .expect("macs");
    backend
        .put_mutation_macs("regular_high", 1, &[mac(1)])
        .await
        .expect("macs");
    backend.clear_mutation_macs("regular").await.expect("clear");
    assert_eq!(
        backend
            .get_mutation_mac("regular", &[1; 32])
            .await
            .expect("get"),
        None
    );
    assert_eq!(
        backend
            .get_mutation_mac("regular_high", &[1; 32])
            .await
            .expect("get"),
        Some(vec![1]),
        "`_` is no wildcard"
    );

    let entry = |id: &str, expires_at: i64| MsgSecretEntry {
        chat: Arc::from("c@s.whatsapp.net"),
        sender: Arc::from("c@s.whatsapp.net"),
        msg_id: Arc::from(id),
        secret: [5; 32],
        expires_at,
        message_ts: 1,
    };
    backend
        .put_msg_secrets(vec![entry("M1", 100), entry("M2", 0), entry("M1", 200)])
        .await
        .expect("secrets");
    assert_eq!(
        backend
            .delete_expired_msg_secrets(150)
            .await
            .expect("sweep"),
        0
    );
    assert_eq!(
        backend
            .delete_expired_msg_secrets(200)
            .await
            .expect("sweep"),
        1
    );

    backend
        .store_sent_message("c@s.whatsapp.net", "S1", b"payload")
        .await
        .expect("sent");
    assert_eq!(
        backend
            .take_sent_message("c@s.whatsapp.net", "S1")
            .await
            .expect("take"),
        Some(b"payload".to_vec())
    );
    assert_eq!(
        backend
            .take_sent_message("c@s.whatsapp.net", "S1")
            .await
            .expect("take"),
        None
    );

    backend.create().await.expect("device");
    let device = stored_device(store, salon(OTHER_SALON))
        .await
        .expect("opens")
        .expect("stored");
    assert!(device.pn.is_none(), "a fresh device is not paired");
    let values = rows(&app, OTHER_SALON).await;
    assert!(values.iter().all(|row| row.key_id == "test1"));
    assert!(!values
        .iter()
        .any(|row| contains(&row.value, b"payload") || contains(&row.value, b"second")));
}
