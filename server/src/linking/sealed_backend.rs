//! whatsapp-rust's storage (`Backend`: its Signal, app-state, protocol, message-secret and
//! device stores) over our database, sealed: one [`SealedBackend`] per salon and session, every
//! value a row of `whatsapp_credentials` (`store::credentials`) under a namespace per store
//! family, sealed with the configured AEAD keys and written under the session's lease.
//!
//! Why not the crate's `SqliteStore`: it keeps a file per salon on the instance's disk (a
//! takeover by another instance would not find it) and in the clear. Here any instance that
//! takes a session over opens the same rows, and a paused old owner's writes are refused
//! ([`StoreError::Fenced`](crate::store::StoreError::Fenced)) instead of overwriting the new
//! owner's Signal ratchets.
//!
//! The traits are key/value shaped and this stays so: a value is whatever the crate hands over
//! (Signal records as bytes; the structs it derives serde for as JSON), under a key made of the
//! crate's own identifiers (JIDs, ids, collection names) joined with `|`, which none of them
//! contains. The keys are not secret and stay readable (lookups need them); the values are
//! sealed. Semantics follow the crate's `InMemoryBackend`, which the contract test runs beside
//! this one; where the bundled SQLite store differs, it is noted.

use crate::store::{CredentialWrite, SessionLease, Store, StoreError};
use app::domain::SalonId;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Arc;
use whatsapp_rust::store::traits::{
    merge_msg_secret_expiry, merge_msg_secret_message_ts, AppStateSyncKey, AppSyncStore,
    DeviceListRecord, DeviceStore, LidPnMappingEntry, MsgSecretEntry, MsgSecretStore,
    PendingInboundKey, PendingInboundRow, ProtocolStore, SignalStore, TcTokenEntry,
};
use whatsapp_rust::wacore::appstate::hash::HashState;
use whatsapp_rust::wacore::appstate::processor::AppStateMutationMAC;
use whatsapp_rust::wacore::store::error::{Result, StoreError as WaError};
use whatsapp_rust::wacore::store::Device;

/// One namespace per store family (the `namespace` column).
mod ns {
    pub const IDENTITY: &str = "wa.identity";
    pub const SESSION: &str = "wa.session";
    pub const PREKEY: &str = "wa.prekey";
    pub const SIGNED_PREKEY: &str = "wa.signed_prekey";
    pub const SENDER_KEY: &str = "wa.sender_key";
    pub const SYNC_KEY: &str = "wa.sync_key";
    pub const APP_STATE_VERSION: &str = "wa.app_state_version";
    pub const MUTATION_MAC: &str = "wa.mutation_mac";
    pub const SENDER_KEY_DEVICE: &str = "wa.sender_key_device";
    pub const LID_MAPPING: &str = "wa.lid_mapping";
    pub const PN_MAPPING: &str = "wa.pn_mapping";
    pub const BASE_KEY: &str = "wa.base_key";
    pub const DEVICE_LIST: &str = "wa.device_list";
    pub const GROUP_METADATA: &str = "wa.group_metadata";
    pub const TC_TOKEN: &str = "wa.tc_token";
    pub const SENT_MESSAGE: &str = "wa.sent_message";
    pub const PENDING_INBOUND: &str = "wa.pending_inbound";
    pub const MSG_SECRET: &str = "wa.msg_secret";
    pub const DEVICE: &str = "wa.device";
}

/// The one key of the device namespace.
const DEVICE_KEY: &str = "device";

/// Joins the parts of a compound key. None of the crate's identifiers (JIDs, message ids,
/// collection names, hex) contains `|`.
fn key(parts: &[&str]) -> String {
    parts.join("|")
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| WaError::Serialization(Box::new(e)))
}

fn from_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| WaError::Serialization(Box::new(e)))
}

fn db(error: StoreError) -> WaError {
    WaError::Database(Box::new(error))
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A stored message secret: the secret and the two times the trait merges.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredMsgSecret {
    secret: Vec<u8>,
    expires_at: i64,
    message_ts: i64,
}

/// Reads the salon's device as stored, without a lease (whether it completed pairing).
pub async fn stored_device(store: &Store, salon: SalonId) -> Result<Option<Device>> {
    let Some(bytes) = store
        .credential(salon, ns::DEVICE, DEVICE_KEY)
        .await
        .map_err(db)?
    else {
        return Ok(None);
    };
    let mut device: Device = from_json(&bytes)?;
    // Not serialized by the crate (`serde(skip)`): what its own SQLite store sets on a load.
    device.device_props = Arc::new(whatsapp_rust::wacore::store::device::DEVICE_PROPS.clone());
    device.client_profile = whatsapp_rust::wacore::client_profile::ClientProfile::web();
    Ok(Some(device))
}

/// One salon's WhatsApp storage, written under one session lease.
pub struct SealedBackend {
    store: Store,
    lease: SessionLease,
}

impl SealedBackend {
    pub fn new(store: Store, lease: SessionLease) -> Self {
        Self { store, lease }
    }

    fn salon(&self) -> SalonId {
        self.lease.salon
    }

    async fn get(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>> {
        self.store
            .credential(self.salon(), namespace, key)
            .await
            .map_err(db)
    }

    async fn list(&self, namespace: &str, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
        self.store
            .credentials_with_prefix(self.salon(), namespace, prefix)
            .await
            .map_err(db)
    }

    async fn keys(&self, namespace: &str, prefix: &str) -> Result<Vec<String>> {
        self.store
            .credential_keys_with_prefix(self.salon(), namespace, prefix)
            .await
            .map_err(db)
    }

    async fn write(&self, writes: Vec<CredentialWrite>) -> Result<u64> {
        if writes.is_empty() {
            return Ok(0);
        }
        self.store
            .write_credentials(&self.lease, writes)
            .await
            .map_err(db)
    }

    async fn put(&self, namespace: &'static str, key: String, value: Vec<u8>) -> Result<()> {
        self.write(vec![put(namespace, key, value)]).await.map(drop)
    }

    async fn delete(&self, namespace: &'static str, key: String) -> Result<()> {
        self.write(vec![CredentialWrite::Delete { namespace, key }])
            .await
            .map(drop)
    }

    async fn sweep(&self, namespace: &'static str, cutoff: i64, inclusive: bool) -> Result<u32> {
        let swept = self
            .store
            .sweep_credentials(&self.lease, namespace, cutoff, inclusive)
            .await
            .map_err(db)?;
        Ok(u32::try_from(swept).unwrap_or(u32::MAX))
    }
}

fn put(namespace: &'static str, key: String, value: Vec<u8>) -> CredentialWrite {
    CredentialWrite::Put {
        namespace,
        key,
        value,
        stamp: None,
    }
}

fn prekey_key(id: u32) -> String {
    id.to_string()
}

// ---------------------------------------------------------------------------------------------
// Signal
// ---------------------------------------------------------------------------------------------

#[async_trait::async_trait]
impl SignalStore for SealedBackend {
    async fn put_identity(&self, address: &str, key: [u8; 32]) -> Result<()> {
        self.put(ns::IDENTITY, address.to_owned(), key.to_vec())
            .await
    }

    async fn put_identities_batch(&self, identities: &[(Arc<str>, [u8; 32])]) -> Result<()> {
        self.write(
            identities
                .iter()
                .map(|(address, key)| put(ns::IDENTITY, address.to_string(), key.to_vec()))
                .collect(),
        )
        .await
        .map(drop)
    }

    async fn load_identity(&self, address: &str) -> Result<Option<[u8; 32]>> {
        self.get(ns::IDENTITY, address)
            .await?
            .map(|bytes| {
                <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
                    WaError::Validation(format!("identity key of {} bytes", bytes.len()))
                })
            })
            .transpose()
    }

    async fn delete_identity(&self, address: &str) -> Result<()> {
        self.delete(ns::IDENTITY, address.to_owned()).await
    }

    async fn get_session(&self, address: &str) -> Result<Option<Bytes>> {
        Ok(self.get(ns::SESSION, address).await?.map(Bytes::from))
    }

    async fn put_session(&self, address: &str, session: &[u8]) -> Result<()> {
        self.put(ns::SESSION, address.to_owned(), session.to_vec())
            .await
    }

    async fn put_sessions_batch(&self, sessions: &[(Arc<str>, Bytes)]) -> Result<()> {
        self.write(
            sessions
                .iter()
                .map(|(address, session)| put(ns::SESSION, address.to_string(), session.to_vec()))
                .collect(),
        )
        .await
        .map(drop)
    }

    async fn delete_session(&self, address: &str) -> Result<()> {
        self.delete(ns::SESSION, address.to_owned()).await
    }

    async fn has_signal_state_for_user(&self, user: &str) -> Result<bool> {
        // Addresses are `user@server` (device 0) or `user:device@server`.
        for namespace in [ns::SESSION, ns::IDENTITY] {
            for separator in ["@", ":"] {
                if !self
                    .keys(namespace, &format!("{user}{separator}"))
                    .await?
                    .is_empty()
                {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// The `uploaded` flag is not kept: the crate only writes it (as `InMemoryBackend`, which
    /// does not keep it either); `mark_prekeys_uploaded` therefore has nothing to change.
    async fn store_prekey(&self, id: u32, record: &[u8], _uploaded: bool) -> Result<()> {
        self.put(ns::PREKEY, prekey_key(id), record.to_vec()).await
    }

    async fn store_prekeys_batch(&self, keys: &[(u32, Bytes)], _uploaded: bool) -> Result<()> {
        self.write(
            keys.iter()
                .map(|(id, record)| put(ns::PREKEY, prekey_key(*id), record.to_vec()))
                .collect(),
        )
        .await
        .map(drop)
    }

    async fn load_prekey(&self, id: u32) -> Result<Option<Bytes>> {
        Ok(self
            .get(ns::PREKEY, &prekey_key(id))
            .await?
            .map(Bytes::from))
    }

    async fn load_prekeys_batch(&self, ids: &[u32]) -> Result<Vec<(u32, Bytes)>> {
        let keys: Vec<String> = ids.iter().copied().map(prekey_key).collect();
        let mut found: HashMap<u32, Bytes> = self
            .store
            .credentials_in(self.salon(), ns::PREKEY, &keys)
            .await
            .map_err(db)?
            .into_iter()
            .filter_map(|(key, value)| Some((key.parse().ok()?, Bytes::from(value))))
            .collect();
        // In the order asked for, as the in-memory store answers.
        Ok(ids
            .iter()
            .filter_map(|id| found.remove(id).map(|record| (*id, record)))
            .collect())
    }

    async fn mark_prekeys_uploaded(&self, _ids: &[u32]) -> Result<()> {
        Ok(())
    }

    async fn remove_prekey(&self, id: u32) -> Result<()> {
        self.delete(ns::PREKEY, prekey_key(id)).await
    }

    async fn get_max_prekey_id(&self) -> Result<u32> {
        Ok(self
            .keys(ns::PREKEY, "")
            .await?
            .iter()
            .filter_map(|key| key.parse::<u32>().ok())
            .max()
            .unwrap_or(0))
    }

    async fn store_signed_prekey(&self, id: u32, record: &[u8]) -> Result<()> {
        self.put(ns::SIGNED_PREKEY, prekey_key(id), record.to_vec())
            .await
    }

    async fn load_signed_prekey(&self, id: u32) -> Result<Option<Vec<u8>>> {
        self.get(ns::SIGNED_PREKEY, &prekey_key(id)).await
    }

    async fn load_all_signed_prekeys(&self) -> Result<Vec<(u32, Vec<u8>)>> {
        Ok(self
            .list(ns::SIGNED_PREKEY, "")
            .await?
            .into_iter()
            .filter_map(|(key, record)| Some((key.parse().ok()?, record)))
            .collect())
    }

    async fn remove_signed_prekey(&self, id: u32) -> Result<()> {
        self.delete(ns::SIGNED_PREKEY, prekey_key(id)).await
    }

    async fn put_sender_key(&self, address: &str, record: &[u8]) -> Result<()> {
        self.put(ns::SENDER_KEY, address.to_owned(), record.to_vec())
            .await
    }

    async fn put_sender_keys_batch(&self, sender_keys: &[(Arc<str>, Bytes)]) -> Result<()> {
        self.write(
            sender_keys
                .iter()
                .map(|(address, record)| put(ns::SENDER_KEY, address.to_string(), record.to_vec()))
                .collect(),
        )
        .await
        .map(drop)
    }

    async fn get_sender_key(&self, address: &str) -> Result<Option<Vec<u8>>> {
        self.get(ns::SENDER_KEY, address).await
    }

    async fn delete_sender_key(&self, address: &str) -> Result<()> {
        self.delete(ns::SENDER_KEY, address.to_owned()).await
    }
}

// ---------------------------------------------------------------------------------------------
// App state
// ---------------------------------------------------------------------------------------------

#[async_trait::async_trait]
impl AppSyncStore for SealedBackend {
    async fn get_sync_key(&self, key_id: &[u8]) -> Result<Option<AppStateSyncKey>> {
        self.get(ns::SYNC_KEY, &hex::encode(key_id))
            .await?
            .map(|bytes| from_json(&bytes))
            .transpose()
    }

    async fn set_sync_key(&self, key_id: &[u8], key: AppStateSyncKey) -> Result<()> {
        self.put(ns::SYNC_KEY, hex::encode(key_id), to_json(&key)?)
            .await
    }

    async fn get_version(&self, name: &str) -> Result<HashState> {
        Ok(match self.get(ns::APP_STATE_VERSION, name).await? {
            Some(bytes) => from_json(&bytes)?,
            None => HashState::default(),
        })
    }

    async fn set_version(&self, name: &str, state: HashState) -> Result<()> {
        self.put(ns::APP_STATE_VERSION, name.to_owned(), to_json(&state)?)
            .await
    }

    async fn put_mutation_macs(
        &self,
        name: &str,
        _version: u64,
        mutations: &[AppStateMutationMAC],
    ) -> Result<()> {
        self.write(
            mutations
                .iter()
                .map(|m| {
                    put(
                        ns::MUTATION_MAC,
                        key(&[name, &hex::encode(&m.index_mac)]),
                        m.value_mac.clone(),
                    )
                })
                .collect(),
        )
        .await
        .map(drop)
    }

    async fn get_mutation_mac(&self, name: &str, index_mac: &[u8]) -> Result<Option<Vec<u8>>> {
        self.get(ns::MUTATION_MAC, &key(&[name, &hex::encode(index_mac)]))
            .await
    }

    async fn get_mutation_macs(
        &self,
        name: &str,
        index_macs: &[[u8; 32]],
    ) -> Result<HashMap<[u8; 32], Vec<u8>>> {
        let keys: Vec<String> = index_macs
            .iter()
            .map(|mac| key(&[name, &hex::encode(mac)]))
            .collect();
        let prefix = format!("{name}|");
        Ok(self
            .store
            .credentials_in(self.salon(), ns::MUTATION_MAC, &keys)
            .await
            .map_err(db)?
            .into_iter()
            .filter_map(|(key, value)| {
                let index = hex::decode(key.strip_prefix(&prefix)?).ok()?;
                Some((<[u8; 32]>::try_from(index).ok()?, value))
            })
            .collect())
    }

    async fn delete_mutation_macs(&self, name: &str, index_macs: &[Vec<u8>]) -> Result<()> {
        self.write(
            index_macs
                .iter()
                .map(|mac| CredentialWrite::Delete {
                    namespace: ns::MUTATION_MAC,
                    key: key(&[name, &hex::encode(mac)]),
                })
                .collect(),
        )
        .await
        .map(drop)
    }

    async fn clear_mutation_macs(&self, name: &str) -> Result<()> {
        self.write(vec![CredentialWrite::DeletePrefix {
            namespace: ns::MUTATION_MAC,
            prefix: format!("{name}|"),
        }])
        .await
        .map(drop)
    }

    /// The greatest key id whose key still opens and decodes, as the crate's SQLite store
    /// answers (hex keeps the byte order). `InMemoryBackend` answers the last one set instead;
    /// WhatsApp's key ids grow, so the two agree in use.
    async fn get_latest_sync_key_id(&self) -> Result<Option<Vec<u8>>> {
        let mut keys = self.keys(ns::SYNC_KEY, "").await?;
        keys.sort();
        for key in keys.iter().rev() {
            let usable = matches!(
                self.get(ns::SYNC_KEY, key).await,
                Ok(Some(bytes)) if from_json::<AppStateSyncKey>(&bytes).is_ok()
            );
            if usable {
                return Ok(hex::decode(key).ok());
            }
        }
        Ok(None)
    }
}

// ---------------------------------------------------------------------------------------------
// Protocol
// ---------------------------------------------------------------------------------------------

#[async_trait::async_trait]
impl ProtocolStore for SealedBackend {
    async fn get_sender_key_devices(&self, group_jid: &str) -> Result<Vec<(String, bool)>> {
        let prefix = format!("{group_jid}|");
        Ok(self
            .list(ns::SENDER_KEY_DEVICE, &prefix)
            .await?
            .into_iter()
            .filter_map(|(key, value)| {
                Some((
                    key.strip_prefix(&prefix)?.to_owned(),
                    value.first() == Some(&1),
                ))
            })
            .collect())
    }

    async fn set_sender_key_status(&self, group_jid: &str, entries: &[(&str, bool)]) -> Result<()> {
        self.write(
            entries
                .iter()
                .map(|(device, has_key)| {
                    put(
                        ns::SENDER_KEY_DEVICE,
                        key(&[group_jid, device]),
                        vec![u8::from(*has_key)],
                    )
                })
                .collect(),
        )
        .await
        .map(drop)
    }

    async fn clear_sender_key_devices(&self, group_jid: &str) -> Result<()> {
        self.write(vec![CredentialWrite::DeletePrefix {
            namespace: ns::SENDER_KEY_DEVICE,
            prefix: format!("{group_jid}|"),
        }])
        .await
        .map(drop)
    }

    async fn delete_sender_key_device_rows(&self, device_jids: &[&str]) -> Result<()> {
        if device_jids.is_empty() {
            return Ok(());
        }
        let doomed = self
            .keys(ns::SENDER_KEY_DEVICE, "")
            .await?
            .into_iter()
            .filter(|key| {
                key.split_once('|')
                    .is_some_and(|(_, device)| device_jids.contains(&device))
            })
            .map(|key| CredentialWrite::Delete {
                namespace: ns::SENDER_KEY_DEVICE,
                key,
            })
            .collect();
        self.write(doomed).await.map(drop)
    }

    async fn clear_all_sender_key_devices(&self) -> Result<()> {
        self.write(vec![CredentialWrite::DeletePrefix {
            namespace: ns::SENDER_KEY_DEVICE,
            prefix: String::new(),
        }])
        .await
        .map(drop)
    }

    async fn get_lid_mapping(&self, lid: &str) -> Result<Option<LidPnMappingEntry>> {
        self.get(ns::LID_MAPPING, lid)
            .await?
            .map(|bytes| from_json(&bytes))
            .transpose()
    }

    /// Through the phone → LID index `put_lid_mapping` keeps (the last LID put for the phone).
    async fn get_pn_mapping(&self, phone: &str) -> Result<Option<LidPnMappingEntry>> {
        let Some(lid) = self.get(ns::PN_MAPPING, phone).await? else {
            return Ok(None);
        };
        let lid = String::from_utf8(lid).map_err(|e| WaError::Serialization(Box::new(e)))?;
        self.get_lid_mapping(&lid).await
    }

    async fn put_lid_mapping(&self, entry: &LidPnMappingEntry) -> Result<()> {
        self.put_lid_mappings(std::slice::from_ref(entry)).await
    }

    async fn put_lid_mappings(&self, entries: &[LidPnMappingEntry]) -> Result<()> {
        let mut writes = Vec::with_capacity(entries.len() * 3);
        // What each LID maps to now, including the earlier entries of this batch.
        let mut current: HashMap<&str, String> = HashMap::new();
        for entry in entries {
            let previous = match current.get(entry.lid.as_str()) {
                Some(phone) => Some(phone.clone()),
                None => self
                    .get_lid_mapping(&entry.lid)
                    .await?
                    .map(|old| old.phone_number),
            };
            // The LID moved to another phone: the old phone's index entry goes.
            if let Some(old_phone) = previous.filter(|p| *p != entry.phone_number) {
                writes.push(CredentialWrite::Delete {
                    namespace: ns::PN_MAPPING,
                    key: old_phone,
                });
            }
            writes.push(put(
                ns::PN_MAPPING,
                entry.phone_number.clone(),
                entry.lid.clone().into_bytes(),
            ));
            writes.push(put(ns::LID_MAPPING, entry.lid.clone(), to_json(entry)?));
            current.insert(entry.lid.as_str(), entry.phone_number.clone());
        }
        self.write(writes).await.map(drop)
    }

    async fn get_all_lid_mappings(&self) -> Result<Vec<LidPnMappingEntry>> {
        self.list(ns::LID_MAPPING, "")
            .await?
            .into_iter()
            .map(|(_, bytes)| from_json(&bytes))
            .collect()
    }

    async fn save_base_key(&self, address: &str, message_id: &str, base_key: &[u8]) -> Result<()> {
        self.put(ns::BASE_KEY, key(&[address, message_id]), base_key.to_vec())
            .await
    }

    async fn has_same_base_key(
        &self,
        address: &str,
        message_id: &str,
        current_base_key: &[u8],
    ) -> Result<bool> {
        Ok(self
            .get(ns::BASE_KEY, &key(&[address, message_id]))
            .await?
            .is_some_and(|stored| stored == current_base_key))
    }

    async fn delete_base_key(&self, address: &str, message_id: &str) -> Result<()> {
        self.delete(ns::BASE_KEY, key(&[address, message_id])).await
    }

    async fn update_device_list(&self, record: DeviceListRecord) -> Result<()> {
        self.update_device_lists(vec![record]).await
    }

    async fn update_device_lists(&self, records: Vec<DeviceListRecord>) -> Result<()> {
        let writes = records
            .iter()
            .map(|record| Ok(put(ns::DEVICE_LIST, record.user.clone(), to_json(record)?)))
            .collect::<Result<Vec<_>>>()?;
        self.write(writes).await.map(drop)
    }

    async fn get_devices(&self, user: &str) -> Result<Option<DeviceListRecord>> {
        self.get(ns::DEVICE_LIST, user)
            .await?
            .map(|bytes| from_json(&bytes))
            .transpose()
    }

    async fn delete_devices(&self, user: &str) -> Result<()> {
        self.delete(ns::DEVICE_LIST, user.to_owned()).await
    }

    async fn get_group_metadata(&self, group_jid: &str) -> Result<Option<Vec<u8>>> {
        self.get(ns::GROUP_METADATA, group_jid).await
    }

    async fn put_group_metadata(&self, group_jid: &str, blob: &[u8]) -> Result<()> {
        self.put(ns::GROUP_METADATA, group_jid.to_owned(), blob.to_vec())
            .await
    }

    async fn delete_group_metadata(&self, group_jid: &str) -> Result<()> {
        self.delete(ns::GROUP_METADATA, group_jid.to_owned()).await
    }

    async fn get_tc_token(&self, jid: &str) -> Result<Option<TcTokenEntry>> {
        self.get(ns::TC_TOKEN, jid)
            .await?
            .map(|bytes| from_json(&bytes))
            .transpose()
    }

    async fn put_tc_token(&self, jid: &str, entry: &TcTokenEntry) -> Result<()> {
        self.put(ns::TC_TOKEN, jid.to_owned(), to_json(entry)?)
            .await
    }

    async fn delete_tc_token(&self, jid: &str) -> Result<()> {
        self.delete(ns::TC_TOKEN, jid.to_owned()).await
    }

    async fn get_all_tc_token_jids(&self) -> Result<Vec<String>> {
        self.keys(ns::TC_TOKEN, "").await
    }

    /// Opens every token (a salon has one per contact it wrote to) and deletes those with
    /// neither window live, as the trait describes.
    async fn delete_expired_tc_tokens(&self, token_cutoff: i64, sender_cutoff: i64) -> Result<u32> {
        let mut doomed = Vec::new();
        for (jid, bytes) in self.list(ns::TC_TOKEN, "").await? {
            let entry: TcTokenEntry = from_json(&bytes)?;
            let token_live = !entry.token.is_empty() && entry.token_timestamp >= token_cutoff;
            let sender_live = entry.sender_timestamp.is_some_and(|ts| ts >= sender_cutoff);
            if !(token_live || sender_live) {
                doomed.push(CredentialWrite::Delete {
                    namespace: ns::TC_TOKEN,
                    key: jid,
                });
            }
        }
        let deleted = self.write(doomed).await?;
        Ok(u32::try_from(deleted).unwrap_or(u32::MAX))
    }

    async fn store_sent_message(
        &self,
        chat_jid: &str,
        message_id: &str,
        payload: &[u8],
    ) -> Result<()> {
        self.write(vec![CredentialWrite::Put {
            namespace: ns::SENT_MESSAGE,
            key: key(&[chat_jid, message_id]),
            value: payload.to_vec(),
            stamp: Some(now_secs()),
        }])
        .await
        .map(drop)
    }

    async fn take_sent_message(&self, chat_jid: &str, message_id: &str) -> Result<Option<Vec<u8>>> {
        self.store
            .take_credential(&self.lease, ns::SENT_MESSAGE, &key(&[chat_jid, message_id]))
            .await
            .map_err(db)
    }

    async fn delete_expired_sent_messages(&self, cutoff_timestamp: i64) -> Result<u32> {
        self.sweep(ns::SENT_MESSAGE, cutoff_timestamp, false).await
    }

    async fn store_pending_inbound(
        &self,
        chat: &str,
        sender: &str,
        id: &str,
        message: &[u8],
    ) -> Result<()> {
        self.store_pending_inbound_batch(&[PendingInboundRow {
            chat,
            sender,
            id,
            message,
        }])
        .await
    }

    async fn get_pending_inbound(
        &self,
        chat: &str,
        sender: &str,
        id: &str,
    ) -> Result<Option<Vec<u8>>> {
        self.get(ns::PENDING_INBOUND, &key(&[chat, sender, id]))
            .await
    }

    async fn delete_pending_inbound(&self, chat: &str, sender: &str, id: &str) -> Result<()> {
        self.delete(ns::PENDING_INBOUND, key(&[chat, sender, id]))
            .await
    }

    async fn delete_expired_pending_inbound(&self, cutoff_timestamp: i64) -> Result<u32> {
        self.sweep(ns::PENDING_INBOUND, cutoff_timestamp, false)
            .await
    }

    async fn store_pending_inbound_batch(&self, rows: &[PendingInboundRow<'_>]) -> Result<()> {
        let now = now_secs();
        self.write(
            rows.iter()
                .map(|row| CredentialWrite::Put {
                    namespace: ns::PENDING_INBOUND,
                    key: key(&[row.chat, row.sender, row.id]),
                    value: row.message.to_vec(),
                    stamp: Some(now),
                })
                .collect(),
        )
        .await
        .map(drop)
    }

    async fn delete_pending_inbound_batch(&self, keys: &[PendingInboundKey<'_>]) -> Result<()> {
        self.write(
            keys.iter()
                .map(|k| CredentialWrite::Delete {
                    namespace: ns::PENDING_INBOUND,
                    key: key(&[k.chat, k.sender, k.id]),
                })
                .collect(),
        )
        .await
        .map(drop)
    }
}

// ---------------------------------------------------------------------------------------------
// Message secrets
// ---------------------------------------------------------------------------------------------

#[async_trait::async_trait]
impl MsgSecretStore for SealedBackend {
    /// Merges with what is stored as the trait asks (the later deadline, `0` = never; the later
    /// parent time) and stamps each row with its deadline so the sweep is one `DELETE`.
    async fn put_msg_secrets(&self, entries: Vec<MsgSecretEntry>) -> Result<usize> {
        let count = entries.len();
        let keys: Vec<String> = entries
            .iter()
            .map(|e| key(&[e.chat.as_ref(), e.sender.as_ref(), e.msg_id.as_ref()]))
            .collect();
        let mut stored: HashMap<String, StoredMsgSecret> = HashMap::new();
        for (key, bytes) in self
            .store
            .credentials_in(self.salon(), ns::MSG_SECRET, &keys)
            .await
            .map_err(db)?
        {
            stored.insert(key, from_json(&bytes)?);
        }
        let mut writes = Vec::with_capacity(count);
        for (entry, key) in entries.into_iter().zip(keys) {
            let merged = match stored.remove(&key) {
                Some(old) => StoredMsgSecret {
                    secret: entry.secret.to_vec(),
                    expires_at: merge_msg_secret_expiry(old.expires_at, entry.expires_at),
                    message_ts: merge_msg_secret_message_ts(old.message_ts, entry.message_ts),
                },
                None => StoredMsgSecret {
                    secret: entry.secret.to_vec(),
                    expires_at: entry.expires_at,
                    message_ts: entry.message_ts,
                },
            };
            let stamp = (merged.expires_at != 0).then_some(merged.expires_at);
            writes.push(CredentialWrite::Put {
                namespace: ns::MSG_SECRET,
                key: key.clone(),
                value: to_json(&merged)?,
                stamp,
            });
            // A key twice in one batch merges with its own earlier entry.
            stored.insert(key, merged);
        }
        self.write(writes).await?;
        Ok(count)
    }

    async fn get_msg_secret(
        &self,
        chat: &str,
        sender: &str,
        msg_id: &str,
    ) -> Result<Option<Vec<u8>>> {
        Ok(self
            .get_msg_secret_with_ts(chat, sender, msg_id)
            .await?
            .map(|(secret, _)| secret))
    }

    async fn get_msg_secret_with_ts(
        &self,
        chat: &str,
        sender: &str,
        msg_id: &str,
    ) -> Result<Option<(Vec<u8>, i64)>> {
        self.get(ns::MSG_SECRET, &key(&[chat, sender, msg_id]))
            .await?
            .map(|bytes| from_json::<StoredMsgSecret>(&bytes).map(|s| (s.secret, s.message_ts)))
            .transpose()
    }

    async fn delete_expired_msg_secrets(&self, cutoff_timestamp: i64) -> Result<u32> {
        // Rows that never expire carry no stamp and stay.
        self.sweep(ns::MSG_SECRET, cutoff_timestamp, true).await
    }
}

// ---------------------------------------------------------------------------------------------
// Device
// ---------------------------------------------------------------------------------------------

#[async_trait::async_trait]
impl DeviceStore for SealedBackend {
    async fn save(&self, device: &Device) -> Result<()> {
        self.put(ns::DEVICE, DEVICE_KEY.to_owned(), to_json(device)?)
            .await
    }

    async fn load(&self) -> Result<Option<Device>> {
        stored_device(&self.store, self.salon()).await
    }

    async fn exists(&self) -> Result<bool> {
        Ok(!self.keys(ns::DEVICE, DEVICE_KEY).await?.is_empty())
    }

    /// A fresh device (new identity keys, not paired), as the crate's SQLite store creates it.
    async fn create(&self) -> Result<i32> {
        if !self.exists().await? {
            self.save(&Device::new()).await?;
        }
        Ok(1)
    }
}

/// A store on a fresh SQLite file with test keys, and leases on it.
#[cfg(test)]
pub(crate) mod testing {
    use crate::store::{SessionLease, Store};
    use app::domain::SalonId;

    pub const TEST_KEYS: &str = "t1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    pub async fn test_store() -> Store {
        let path = std::env::temp_dir().join(format!(
            "sealed-backend-{}.db",
            uuid::Uuid::new_v4().simple()
        ));
        let db =
            crate::db::connect_and_migrate(&format!("sqlite://{}?mode=rwc", path.display()), None)
                .await
                .expect("database");
        Store::new(db).with_credential_keys(
            crate::domain::CredentialKeys::parse(TEST_KEYS).expect("test keys"),
        )
    }

    /// Takes the salon's session lease for a test owner (a new generation each time).
    pub async fn lease_for(store: &Store, salon: SalonId) -> SessionLease {
        store
            .acquire_session_lease(
                salon,
                "test-owner",
                chrono::Utc::now() + chrono::Duration::hours(1),
            )
            .await
            .expect("lease query")
            .expect("lease free")
    }
}

#[cfg(test)]
mod tests {
    //! The contract: the same operations against the crate's `InMemoryBackend` (its reference
    //! implementation) and against ours must answer the same, family by family.

    use super::testing::{lease_for, test_store};
    use super::*;
    use whatsapp_rust::store::traits::Backend;
    use whatsapp_rust::wacore::store::InMemoryBackend;

    fn salon(id: i64) -> SalonId {
        SalonId::try_from(id).expect("positive")
    }

    /// Runs every check on `backend` and returns what it observed, in order.
    async fn exercise<B: Backend>(backend: &B) -> Vec<String> {
        let mut seen = Vec::new();
        macro_rules! see {
            ($label:expr, $value:expr) => {
                seen.push(format!("{}: {:?}", $label, $value))
            };
        }
        let ok = |r: Result<()>| r.expect("backend call");

        // Signal: identities.
        let alice = "111:1@s.whatsapp.net";
        ok(backend.put_identity(alice, [7; 32]).await);
        see!(
            "identity",
            backend.load_identity(alice).await.expect("load")
        );
        see!(
            "identity missing",
            backend
                .load_identity("9@s.whatsapp.net")
                .await
                .expect("load")
        );
        ok(backend
            .put_identities_batch(&[(Arc::from("222@lid"), [8; 32]), (Arc::from(alice), [9; 32])])
            .await);
        see!(
            "identity batch",
            backend.load_identity(alice).await.expect("load")
        );
        see!(
            "identity batch 2",
            backend.load_identity("222@lid").await.expect("load")
        );
        ok(backend.delete_identity("222@lid").await);
        see!(
            "identity deleted",
            backend.load_identity("222@lid").await.expect("load")
        );
        // Sessions.
        ok(backend.put_session(alice, b"ratchet-1").await);
        see!("session", backend.get_session(alice).await.expect("get"));
        ok(backend
            .put_sessions_batch(&[
                (Arc::from(alice), Bytes::from_static(b"ratchet-2")),
                (
                    Arc::from("333@s.whatsapp.net"),
                    Bytes::from_static(b"other"),
                ),
            ])
            .await);
        see!(
            "session batch",
            backend.get_session(alice).await.expect("get")
        );
        see!(
            "has session",
            backend
                .has_session("333@s.whatsapp.net")
                .await
                .expect("has")
        );
        for user in ["111", "11", "333", "444"] {
            see!(
                format!("state for {user}"),
                backend
                    .has_signal_state_for_user(user)
                    .await
                    .expect("state")
            );
        }
        ok(backend.delete_session("333@s.whatsapp.net").await);
        see!(
            "session deleted",
            backend
                .get_session("333@s.whatsapp.net")
                .await
                .expect("get")
        );
        // Pre-keys.
        ok(backend
            .store_prekeys_batch(
                &[
                    (1, Bytes::from_static(b"pk1")),
                    (2, Bytes::from_static(b"pk2")),
                    (10, Bytes::from_static(b"pk10")),
                ],
                false,
            )
            .await);
        ok(backend.store_prekey(3, b"pk3", true).await);
        see!("prekey", backend.load_prekey(2).await.expect("load"));
        see!(
            "prekeys",
            backend
                .load_prekeys_batch(&[10, 1, 99])
                .await
                .expect("load")
        );
        see!(
            "max prekey",
            backend.get_max_prekey_id().await.expect("max")
        );
        ok(backend.remove_prekey(10).await);
        see!(
            "max prekey after removal",
            backend.get_max_prekey_id().await.expect("max")
        );
        ok(backend.mark_prekeys_uploaded(&[2, 10]).await);
        see!(
            "not resurrected",
            backend.load_prekey(10).await.expect("load")
        );
        // Signed pre-keys.
        ok(backend.store_signed_prekey(1, b"spk1").await);
        ok(backend.store_signed_prekey(2, b"spk2").await);
        see!("signed", backend.load_signed_prekey(2).await.expect("load"));
        let mut all = backend.load_all_signed_prekeys().await.expect("all");
        all.sort();
        see!("all signed", all);
        ok(backend.remove_signed_prekey(1).await);
        see!(
            "signed removed",
            backend.load_signed_prekey(1).await.expect("load")
        );
        // Sender keys.
        ok(backend.put_sender_key("g1::s1", b"sk1").await);
        ok(backend
            .put_sender_keys_batch(&[(Arc::from("g1::s2"), Bytes::from_static(b"sk2"))])
            .await);
        see!(
            "sender key",
            backend.get_sender_key("g1::s2").await.expect("get")
        );
        ok(backend.delete_sender_key("g1::s1").await);
        see!(
            "sender key deleted",
            backend.get_sender_key("g1::s1").await.expect("get")
        );

        // App state.
        let key = |n: u8| AppStateSyncKey {
            key_data: vec![n; 32],
            fingerprint: vec![n],
            timestamp: i64::from(n),
        };
        see!(
            "no latest",
            backend.get_latest_sync_key_id().await.expect("latest")
        );
        ok(backend.set_sync_key(&[0, 0, 1], key(1)).await);
        ok(backend.set_sync_key(&[0, 0, 2], key(2)).await);
        see!(
            "sync key",
            backend.get_sync_key(&[0, 0, 1]).await.expect("get")
        );
        see!(
            "sync key missing",
            backend.get_sync_key(&[9]).await.expect("get")
        );
        see!(
            "latest",
            backend.get_latest_sync_key_id().await.expect("latest")
        );
        let version = backend.get_version("regular").await.expect("version");
        see!("no version", (version.version, version.hash.to_vec()));
        let mut state = HashState {
            version: 7,
            ..HashState::default()
        };
        state.hash[0] = 42;
        state.index_value_map.insert("idx".into(), vec![1, 2]);
        ok(backend.set_version("regular", state).await);
        let version = backend.get_version("regular").await.expect("version");
        see!(
            "version",
            (
                version.version,
                version.hash[0],
                version.index_value_map.get("idx").cloned()
            )
        );
        let mac = |i: u8, v: u8| AppStateMutationMAC {
            index_mac: vec![i; 32],
            value_mac: vec![v],
        };
        ok(backend
            .put_mutation_macs("regular", 1, &[mac(1, 10), mac(2, 20)])
            .await);
        ok(backend
            .put_mutation_macs("regular_high", 1, &[mac(1, 11)])
            .await);
        see!(
            "mac",
            backend
                .get_mutation_mac("regular", &[1; 32])
                .await
                .expect("get")
        );
        let mut macs: Vec<_> = backend
            .get_mutation_macs("regular", &[[1; 32], [2; 32], [3; 32]])
            .await
            .expect("batch")
            .into_iter()
            .collect();
        macs.sort();
        see!("macs", macs);
        ok(backend
            .delete_mutation_macs("regular", &[vec![2; 32]])
            .await);
        see!(
            "mac deleted",
            backend
                .get_mutation_mac("regular", &[2; 32])
                .await
                .expect("get")
        );
        ok(backend.clear_mutation_macs("regular").await);
        see!(
            "cleared",
            backend
                .get_mutation_mac("regular", &[1; 32])
                .await
                .expect("get")
        );
        see!(
            "other collection kept",
            backend
                .get_mutation_mac("regular_high", &[1; 32])
                .await
                .expect("get")
        );

        // Protocol: sender-key devices.
        ok(backend
            .set_sender_key_status("g1@g.us", &[("d1", true), ("d2", false)])
            .await);
        ok(backend
            .set_sender_key_status("g2@g.us", &[("d1", true)])
            .await);
        let mut devices = backend
            .get_sender_key_devices("g1@g.us")
            .await
            .expect("get");
        devices.sort();
        see!("skd", devices);
        ok(backend.delete_sender_key_device_rows(&["d1"]).await);
        let mut devices = backend
            .get_sender_key_devices("g1@g.us")
            .await
            .expect("get");
        devices.sort();
        see!("skd after row delete", devices);
        see!(
            "skd g2",
            backend
                .get_sender_key_devices("g2@g.us")
                .await
                .expect("get")
        );
        ok(backend.clear_sender_key_devices("g1@g.us").await);
        see!(
            "skd cleared",
            backend
                .get_sender_key_devices("g1@g.us")
                .await
                .expect("get")
        );
        ok(backend
            .set_sender_key_status("g3@g.us", &[("d3", true)])
            .await);
        ok(backend.clear_all_sender_key_devices().await);
        see!(
            "skd all cleared",
            backend
                .get_sender_key_devices("g3@g.us")
                .await
                .expect("get")
        );
        // LID ↔ phone.
        let mapping = |lid: &str, pn: &str| LidPnMappingEntry {
            lid: lid.into(),
            phone_number: pn.into(),
            created_at: 1,
            updated_at: 2,
            learning_source: "usync".into(),
        };
        ok(backend
            .put_lid_mapping(&mapping("100", "79990000001"))
            .await);
        see!(
            "lid",
            backend
                .get_lid_mapping("100")
                .await
                .expect("get")
                .map(|m| m.phone_number)
        );
        see!(
            "pn",
            backend
                .get_pn_mapping("79990000001")
                .await
                .expect("get")
                .map(|m| m.lid)
        );
        ok(backend
            .put_lid_mappings(&[mapping("100", "79990000002"), mapping("200", "79990000003")])
            .await);
        see!(
            "old pn",
            backend
                .get_pn_mapping("79990000001")
                .await
                .expect("get")
                .map(|m| m.lid)
        );
        see!(
            "new pn",
            backend
                .get_pn_mapping("79990000002")
                .await
                .expect("get")
                .map(|m| m.lid)
        );
        let mut all: Vec<_> = backend
            .get_all_lid_mappings()
            .await
            .expect("all")
            .into_iter()
            .map(|m| (m.lid, m.phone_number))
            .collect();
        all.sort();
        see!("all mappings", all);
        // Base keys.
        ok(backend.save_base_key(alice, "M1", b"base").await);
        see!(
            "same",
            backend
                .has_same_base_key(alice, "M1", b"base")
                .await
                .expect("same")
        );
        see!(
            "differs",
            backend
                .has_same_base_key(alice, "M1", b"other")
                .await
                .expect("same")
        );
        ok(backend.delete_base_key(alice, "M1").await);
        see!(
            "gone",
            backend
                .has_same_base_key(alice, "M1", b"base")
                .await
                .expect("same")
        );
        // Device lists.
        ok(backend
            .update_device_list(DeviceListRecord {
                user: "111".into(),
                devices: vec![],
                timestamp: 5,
                phash: Some("h".into()),
                raw_id: Some(3),
            })
            .await);
        see!(
            "devices",
            backend.get_devices("111").await.expect("get").map(|r| (
                r.timestamp,
                r.phash,
                r.raw_id
            ))
        );
        ok(backend.delete_devices("111").await);
        see!(
            "devices deleted",
            backend.get_devices("111").await.expect("get").is_none()
        );
        // Group metadata.
        ok(backend.put_group_metadata("g1@g.us", b"blob").await);
        see!(
            "group",
            backend.get_group_metadata("g1@g.us").await.expect("get")
        );
        ok(backend.delete_group_metadata("g1@g.us").await);
        see!(
            "group deleted",
            backend.get_group_metadata("g1@g.us").await.expect("get")
        );
        // Trusted-contact tokens.
        ok(backend
            .put_tc_token(
                "a@lid",
                &TcTokenEntry {
                    token: b"t".to_vec(),
                    token_timestamp: 100,
                    sender_timestamp: None,
                },
            )
            .await);
        ok(backend.touch_tc_token_sender_timestamp("a@lid", 150).await);
        ok(backend.touch_tc_token_sender_timestamp("b@lid", 50).await);
        ok(backend.store_received_tc_token("a@lid", b"older", 90).await);
        ok(backend.store_received_tc_token("c@lid", b"c", 300).await);
        see!(
            "tc a",
            backend.get_tc_token("a@lid").await.expect("get").map(|t| (
                t.token,
                t.token_timestamp,
                t.sender_timestamp
            ))
        );
        let mut jids = backend.get_all_tc_token_jids().await.expect("jids");
        jids.sort();
        see!("tc jids", jids);
        see!(
            "tc expired",
            backend
                .delete_expired_tc_tokens(200, 100)
                .await
                .expect("sweep")
        );
        let mut jids = backend.get_all_tc_token_jids().await.expect("jids");
        jids.sort();
        see!("tc left", jids);
        ok(backend.delete_tc_token("a@lid").await);
        see!(
            "tc deleted",
            backend.get_tc_token("a@lid").await.expect("get").is_none()
        );
        // Sent messages.
        ok(backend
            .store_sent_message("c@s.whatsapp.net", "M1", b"payload")
            .await);
        see!(
            "taken",
            backend
                .take_sent_message("c@s.whatsapp.net", "M1")
                .await
                .expect("take")
        );
        see!(
            "taken once",
            backend
                .take_sent_message("c@s.whatsapp.net", "M1")
                .await
                .expect("take")
        );
        ok(backend
            .store_sent_message("c@s.whatsapp.net", "M2", b"p2")
            .await);
        let future = chrono::Utc::now().timestamp() + 60;
        see!(
            "sent kept",
            backend
                .delete_expired_sent_messages(0)
                .await
                .expect("sweep")
        );
        see!(
            "sent swept",
            backend
                .delete_expired_sent_messages(future)
                .await
                .expect("sweep")
        );
        // Pending inbound.
        ok(backend.store_pending_inbound("c", "s", "I1", b"m1").await);
        see!(
            "pending",
            backend
                .get_pending_inbound("c", "s", "I1")
                .await
                .expect("get")
        );
        ok(backend.delete_pending_inbound("c", "s", "I1").await);
        see!(
            "pending deleted",
            backend
                .get_pending_inbound("c", "s", "I1")
                .await
                .expect("get")
        );
        ok(backend
            .store_pending_inbound_batch(&[
                PendingInboundRow {
                    chat: "c",
                    sender: "s",
                    id: "I2",
                    message: b"m2",
                },
                PendingInboundRow {
                    chat: "c",
                    sender: "s",
                    id: "I3",
                    message: b"m3",
                },
            ])
            .await);
        ok(backend
            .delete_pending_inbound_batch(&[PendingInboundKey {
                chat: "c",
                sender: "s",
                id: "I2",
            }])
            .await);
        see!(
            "pending batch",
            (
                backend
                    .get_pending_inbound("c", "s", "I2")
                    .await
                    .expect("get"),
                backend
                    .get_pending_inbound("c", "s", "I3")
                    .await
                    .expect("get"),
            )
        );
        see!(
            "pending swept",
            backend
                .delete_expired_pending_inbound(future)
                .await
                .expect("sweep")
        );

        // Message secrets.
        let secret =
            |chat: &str, id: &str, fill: u8, expires_at: i64, message_ts: i64| MsgSecretEntry {
                chat: Arc::from(chat),
                sender: Arc::from(chat),
                msg_id: Arc::from(id),
                secret: [fill; 32],
                expires_at,
                message_ts,
            };
        see!(
            "secrets stored",
            backend
                .put_msg_secrets(vec![
                    secret("a", "M1", 1, 100, 5),
                    secret("a", "M2", 2, 0, 0)
                ])
                .await
                .expect("put")
        );
        backend
            .put_msg_secrets(vec![secret("a", "M1", 3, 50, 0)])
            .await
            .expect("merge");
        see!(
            "secret merged",
            backend
                .get_msg_secret_with_ts("a", "a", "M1")
                .await
                .expect("get")
        );
        see!(
            "secret",
            backend.get_msg_secret("a", "a", "M2").await.expect("get")
        );
        see!(
            "secrets expired",
            backend
                .delete_expired_msg_secrets(100)
                .await
                .expect("sweep")
        );
        see!(
            "expired gone",
            backend.get_msg_secret("a", "a", "M1").await.expect("get")
        );
        see!(
            "never kept",
            backend
                .get_msg_secret("a", "a", "M2")
                .await
                .expect("get")
                .is_some()
        );

        // The device.
        see!("no device", backend.exists().await.expect("exists"));
        see!(
            "nothing to load",
            backend.load().await.expect("load").is_none()
        );
        see!("created", backend.create().await.expect("create"));
        see!("exists", backend.exists().await.expect("exists"));
        let mut device = backend.load().await.expect("load").expect("device");
        let identity = device.identity_key.public_key.public_key_bytes().to_vec();
        device.push_name = "Салон".into();
        device.pn = Some("79990009900:35@s.whatsapp.net".parse().expect("jid"));
        device.login_counter = 4;
        backend.save(&device).await.expect("save");
        let loaded = backend.load().await.expect("load").expect("device");
        see!(
            "device",
            (
                loaded.push_name.clone(),
                loaded.pn.as_ref().map(ToString::to_string),
                loaded.login_counter,
                loaded.registration_id == device.registration_id,
                loaded.identity_key.public_key.public_key_bytes().to_vec() == identity,
                loaded.adv_secret_key == device.adv_secret_key,
            )
        );
        seen
    }

    #[tokio::test]
    async fn the_sealed_backend_answers_as_the_crates_reference_backend() {
        let reference = exercise(&InMemoryBackend::new()).await;
        let store = test_store().await;
        let ours = SealedBackend::new(store.clone(), lease_for(&store, salon(1)).await);
        let observed = exercise(&ours).await;
        for (expected, got) in reference.iter().zip(&observed) {
            assert_eq!(expected, got);
        }
        assert_eq!(reference.len(), observed.len());
    }

    #[tokio::test]
    async fn a_session_whose_lease_was_taken_over_writes_nothing() {
        let store = test_store().await;
        let stale = lease_for(&store, salon(2)).await;
        let old_owner = SealedBackend::new(store.clone(), stale.clone());
        old_owner
            .put_session("a@s.whatsapp.net", b"mine")
            .await
            .expect("put");
        // Another instance takes the session over (here: a new generation).
        let new_owner = SealedBackend::new(store.clone(), lease_for(&store, salon(2)).await);
        new_owner
            .put_session("a@s.whatsapp.net", b"theirs")
            .await
            .expect("put");

        let refused = old_owner.put_session("a@s.whatsapp.net", b"stale").await;
        let error = refused.expect_err("fenced");
        assert!(error.to_string().contains("database"), "{error}");
        assert!(old_owner.delete_session("a@s.whatsapp.net").await.is_err());
        assert!(old_owner.save(&Device::new()).await.is_err());
        assert_eq!(
            new_owner
                .get_session("a@s.whatsapp.net")
                .await
                .expect("get"),
            Some(Bytes::from_static(b"theirs")),
            "the new owner's value is untouched"
        );
        assert!(!new_owner.exists().await.expect("exists"));
    }

    #[tokio::test]
    async fn a_device_stored_for_one_salon_does_not_open_as_another_salons() {
        use crate::db::entities::whatsapp_credentials as creds;
        use sea_orm::{
            ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, Set,
        };
        let store = test_store().await;
        let one = SealedBackend::new(store.clone(), lease_for(&store, salon(3)).await);
        one.create().await.expect("device");
        let row = creds::Entity::find()
            .filter(creds::Column::SalonId.eq(3))
            .one(store.connection())
            .await
            .expect("query")
            .expect("row");
        let mut moved = row.into_active_model();
        moved.salon_id = Set(4);
        moved.insert(store.connection()).await.expect("copied");
        let Err(error) = stored_device(&store, salon(4)).await else {
            panic!("a device bound to salon 3 opened as salon 4's");
        };
        let printed = format!("{error:?}");
        assert!(printed.contains("Inauthentic"), "{printed}");
        assert!(stored_device(&store, salon(3))
            .await
            .expect("opens")
            .is_some());
    }
}
