//! The `salons` row: registration, freeze, unfreeze, uninstall, and what the token verifier reads.

use super::{audit, status_values, Store, StoreError};
use crate::db::entities::{salons, whatsapp_credentials, whatsapp_devices};
use crate::domain::SalonStatus;
use crate::yclients::Company;
use app::domain::{PhoneNumber, SalonId};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::ExprTrait;
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
    TransactionTrait,
};
use serde_json::json;

/// A salon as the stages see it.
#[derive(Debug, Clone)]
pub struct Salon {
    pub id: SalonId,
    pub title: String,
    /// The salon's phone in YClients.
    pub phone: Option<String>,
    pub status: SalonStatus,
    pub whatsapp_phone: Option<String>,
    pub linked_other_number: Option<String>,
    pub activation_error: Option<String>,
    pub token_generation: i32,
    pub company_refreshed_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Whether YClients holds a confirmed API key and webhook URL of ours.
    pub has_confirmed_pair: bool,
    /// A relink with another number waiting for the admin's confirmation: the old number.
    pub number_change_from: Option<String>,
    /// The phone of the admin who last came from YClients.
    pub admin_phone: Option<String>,
    /// The YClients user who connected the app here (see [`Store::register`]).
    pub connected_by: Option<String>,
    /// The user an operator released the salon from ([`Store::release_connected_user`]).
    pub released_user: Option<String>,
    /// The holder entered by a link naming no user (see [`Store::register`]).
    pub entered_unnamed: bool,
    /// From the company info (booking messages use them).
    pub address: Option<String>,
    pub timezone: Option<String>,
}

impl TryFrom<salons::Model> for Salon {
    type Error = StoreError;

    fn try_from(row: salons::Model) -> Result<Self, Self::Error> {
        Ok(Self {
            id: SalonId::try_from(row.id).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            status: SalonStatus::parse(&row.status)?,
            has_confirmed_pair: row.api_key_hash.is_some() && row.webhook_secret_hash.is_some(),
            title: row.title,
            phone: row.phone,
            whatsapp_phone: row.whatsapp_phone,
            linked_other_number: row.linked_other_number,
            activation_error: row.activation_error,
            token_generation: row.token_generation,
            company_refreshed_at: row.company_refreshed_at,
            number_change_from: row.number_change_from,
            admin_phone: row.admin_phone,
            connected_by: row.connected_by,
            released_user: row.released_user,
            entered_unnamed: row.entered_unnamed,
            address: row.address,
            timezone: row.timezone,
        })
    }
}

/// What YClients said about our installation in the branch (the states that may enter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Installation {
    Pending,
    Active,
}

/// The outcome of a registration: the status to show and the generation tokens must carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registered {
    pub status: SalonStatus,
    pub generation: i32,
    /// When the company info was last read from YClients (`None`: never).
    pub company_refreshed_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The registration resumed a frozen salon (`Frozen → Active`, audited as `unfrozen`).
    pub unfrozen: bool,
    /// The registration moved the token generation (a new installation, or a named user
    /// connecting a salon nobody was kept for): every token issued before is dead, and the live
    /// streams they opened must hear it.
    pub generation_moved: bool,
}

/// Who noticed that YClients holds a frozen salon's installation as active again (the
/// `unfrozen` audit entry says which).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnfreezeNoticedBy {
    /// The admin entered through the marketplace redirect.
    Entry,
    /// The periodic check of frozen salons.
    PeriodicCheck,
    /// An operator asked YClients from the console.
    Operator,
}

impl UnfreezeNoticedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            UnfreezeNoticedBy::Entry => "entry",
            UnfreezeNoticedBy::PeriodicCheck => "periodic_check",
            UnfreezeNoticedBy::Operator => "operator",
        }
    }
}

/// The `unfrozen` audit entry, the same whichever way the salon resumed.
async fn record_unfrozen<C: sea_orm::ConnectionTrait>(
    db: &C,
    id: SalonId,
    noticed_by: UnfreezeNoticedBy,
) -> Result<(), StoreError> {
    audit::record(
        db,
        Some(id),
        "unfrozen",
        json!({"noticed_by": noticed_by.as_str(), "installation": "active"}),
    )
    .await?;
    Ok(())
}

/// What [`Store::hand_over`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handover {
    /// Handed over; `from` held it before (`None`: nobody).
    Done { from: Option<String> },
    /// `to` holds it already: nothing changed.
    AlreadyHeld,
    /// Someone entered while it was being handed over: nothing changed, try again.
    Changed,
}

/// Where a registration takes a stored salon.
fn registration_target(salon: &Salon, installation: Installation) -> SalonStatus {
    match (salon.status, installation) {
        // A new "Подключить" after removal or a refusal starts a clean onboarding.
        (SalonStatus::Uninstalled | SalonStatus::ActivationFailed, _) => SalonStatus::New,
        // YClients un-froze the installation it holds our pair for: the integration resumes.
        (SalonStatus::Frozen, Installation::Active) if salon.has_confirmed_pair => {
            SalonStatus::Active
        }
        (SalonStatus::Frozen, _) => SalonStatus::New,
        (other, _) => other,
    }
}

impl Store {
    pub async fn salon(&self, id: SalonId) -> Result<Option<Salon>, StoreError> {
        salons::Entity::find_by_id(id.get())
            .one(&self.db)
            .await?
            .map(Salon::try_from)
            .transpose()
    }

    /// Stores a salon whose installation YClients confirmed as pending or active: a new row, or
    /// the stored one moved as [`registration_target`] says. A salon coming back after an
    /// uninstall gets a new token generation.
    ///
    /// **Who may enter.** The signed `user_data` proves the user, not the branch, and YClients'
    /// installation check proves only that our app is installed in the branch. So the first
    /// signed user id to enter an installation is kept (`connected_by`), and an entry by anyone
    /// else — another id, or a link that names none — is [`StoreError::ConnectedByAnother`],
    /// with nothing written. A new installation (after an uninstall) is connected afresh. A salon
    /// nobody was kept for that a named user connects is theirs from then on: the tokens issued
    /// before die (a new generation); when a link naming no user entered it, the message texts
    /// and the messages still owed that link chose end too, as a hand-over ends them.
    ///
    /// Each write transaction starts with its write (SQLite's WAL cannot upgrade a read
    /// transaction once another writer committed); the guard on the status it read makes a
    /// concurrent change a retry, not a lost update.
    #[tracing::instrument(skip_all, fields(salon_id = %id))]
    pub async fn register(
        &self,
        id: SalonId,
        installation: Installation,
        user: serde_json::Value,
    ) -> Result<Registered, StoreError> {
        for _ in 0..3 {
            if let Some(registered) = self.try_register(id, installation, &user).await? {
                return Ok(registered);
            }
        }
        Err(StoreError::Corrupt(format!(
            "salon {id} kept changing while it was registered"
        )))
    }

    async fn try_register(
        &self,
        id: SalonId,
        installation: Installation,
        user: &serde_json::Value,
    ) -> Result<Option<Registered>, StoreError> {
        let now = super::now();
        let admin_phone = user
            .get("phone")
            .and_then(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .or_else(|| v.as_i64().map(|n| n.to_string()))
            })
            .and_then(|p| PhoneNumber::parse(&p).ok())
            .map(|p| p.to_string());
        let user_id = user_id(user);
        let existing = self.salon(id).await?;
        // Connected by someone else (a salon connected before the id was kept is connected by
        // whoever enters it next with one).
        if let Some(salon) = &existing {
            let new_installation = salon.status == SalonStatus::Uninstalled;
            // Handed over by an operator to someone else: not the previous holder again, whose
            // signed link has no expiry (a page of its own says why).
            if !new_installation
                && user_id.is_some()
                && salon.released_user == user_id
                && salon.connected_by != user_id
            {
                tracing::warn!(salon_id = %id, "entry by the YClients user the salon was handed over from refused");
                return Err(StoreError::Released(id));
            }
            if !new_installation && salon.connected_by.is_some() && salon.connected_by != user_id {
                tracing::warn!(salon_id = %id, "entry by a YClients user who did not connect the salon refused");
                return Err(StoreError::ConnectedByAnother(id));
            }
        }
        let txn = self.db.begin().await?;
        let registered = match existing {
            None => {
                let inserted = salons::Entity::insert(salons::ActiveModel {
                    id: Set(id.get()),
                    title: Set(fallback_title(id)),
                    status: Set(SalonStatus::New.as_str().to_owned()),
                    registered_at: Set(now),
                    created_at: Set(now),
                    updated_at: Set(now),
                    token_generation: Set(0),
                    admin_phone: Set(admin_phone.clone()),
                    connected_by: Set(user_id.clone()),
                    entered_unnamed: Set(user_id.is_none()),
                    ..Default::default()
                })
                .on_conflict(
                    OnConflict::column(salons::Column::Id)
                        .do_nothing()
                        .to_owned(),
                )
                .exec_without_returning(&txn)
                .await?;
                if inserted != 1 {
                    txn.rollback().await?;
                    return Ok(None);
                }
                Registered {
                    status: SalonStatus::New,
                    generation: 0,
                    company_refreshed_at: None,
                    unfrozen: false,
                    generation_moved: false,
                }
            }
            Some(salon) => {
                let target = registration_target(&salon, installation);
                if target != salon.status {
                    salon.status.transition(target)?;
                }
                // A new installation starts a new generation; so does a salon nobody was kept for
                // (stored before `connected_by` existed, or first entered by a link naming no
                // user) that a named user now connects: tokens issued while anyone could enter
                // must not outlive it.
                let claimed = salon.connected_by.is_none() && user_id.is_some();
                let generation = if salon.status == SalonStatus::Uninstalled || claimed {
                    salon.token_generation + 1
                } else {
                    salon.token_generation
                };
                let mut update = salons::Entity::update_many()
                    .col_expr(salons::Column::Status, Expr::value(target.as_str()))
                    .col_expr(salons::Column::TokenGeneration, Expr::value(generation))
                    .col_expr(salons::Column::RegisteredAt, Expr::value(now))
                    .col_expr(salons::Column::UpdatedAt, Expr::value(now));
                if let Some(phone) = &admin_phone {
                    update =
                        update.col_expr(salons::Column::AdminPhone, Expr::value(phone.clone()));
                }
                if target == SalonStatus::New {
                    update = update.col_expr(
                        salons::Column::ActivationError,
                        Expr::value(Option::<String>::None),
                    );
                }
                // Whoever enters a new installation, or one nobody is kept for, connects it; the
                // guard below makes a concurrent entry by someone else a retry that is refused.
                if salon.status == SalonStatus::Uninstalled || salon.connected_by.is_none() {
                    update = update
                        .col_expr(salons::Column::ConnectedBy, Expr::value(user_id.clone()))
                        .col_expr(
                            salons::Column::EnteredUnnamed,
                            Expr::value(user_id.is_none()),
                        );
                    // A new installation forgets a hand-over.
                    if salon.status == SalonStatus::Uninstalled {
                        update = update.col_expr(
                            salons::Column::ReleasedUser,
                            Expr::value(Option::<String>::None),
                        );
                    }
                }
                // The WhatsApp number a nameless link linked (perhaps its holder's own phone,
                // which would then carry the salon's clients' messages, names and numbers) waits
                // for the named user's «use it / disconnect it», as after a hand-over.
                if claimed && salon.entered_unnamed {
                    update = update.col_expr(
                        salons::Column::NumberChangeFrom,
                        Expr::cust("COALESCE(number_change_from, whatsapp_phone)"),
                    );
                }
                let connected_by = match &salon.connected_by {
                    Some(user) => salons::Column::ConnectedBy.eq(user.as_str()),
                    None => salons::Column::ConnectedBy.is_null(),
                };
                let moved = update
                    .filter(salons::Column::Id.eq(id.get()))
                    .filter(salons::Column::Status.eq(salon.status.as_str()))
                    .filter(salons::Column::TokenGeneration.eq(salon.token_generation))
                    .filter(connected_by)
                    .exec(&txn)
                    .await?
                    .rows_affected;
                if moved != 1 {
                    txn.rollback().await?;
                    return Ok(None);
                }
                // What the nameless holder chose goes with them, as with a hand-over: whoever
                // held a link naming no user (anyone's, for all we know) could have reworded the
                // texts into a payment link, and the messages still owed would have gone out in
                // those words to the named user's clients. A salon stored before `connected_by`
                // existed has nobody kept for it either, but its texts are its own admin's: its
                // first named entry keeps them (`entered_unnamed` is false there).
                if claimed && salon.entered_unnamed {
                    super::messages::end_installation_messages(
                        &txn,
                        id,
                        "salon_claimed",
                        self.clock.now(),
                    )
                    .await?;
                }
                Registered {
                    status: target,
                    generation,
                    company_refreshed_at: salon.company_refreshed_at,
                    unfrozen: salon.status == SalonStatus::Frozen && target == SalonStatus::Active,
                    generation_moved: generation != salon.token_generation,
                }
            }
        };
        audit::record(
            &txn,
            Some(id),
            "registration_started",
            // Who entered, as YClients' user id alone: the trail outlives uninstalls and
            // operators read it, so the admin's name, phone and e-mail stay out of it.
            json!({"user_id": user_id, "status": registered.status.as_str(),
                   "installation": format!("{installation:?}").to_lowercase()}),
        )
        .await?;
        if registered.unfrozen {
            record_unfrozen(&txn, id, UnfreezeNoticedBy::Entry).await?;
        }
        txn.commit().await?;
        Ok(Some(registered))
    }

    /// Whether the salon was registered — an entry YClients confirmed as a pending or active
    /// installation — after `at`.
    pub async fn registered_after(
        &self,
        id: SalonId,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, StoreError> {
        let registered: Option<chrono::DateTime<chrono::Utc>> =
            salons::Entity::find_by_id(id.get())
                .select_only()
                .column(salons::Column::RegisteredAt)
                .into_tuple()
                .one(&self.db)
                .await?;
        Ok(registered.is_some_and(|registered| registered > at))
    }

    /// An operator hands the salon over to another YClients user, named by their id (someone
    /// new at the salon who cannot remove and install the app again; the refusal page shows them
    /// their id to pass on): from now on only `to` can open it, the user who held it is refused
    /// with a page of its own, and anyone else as before. Handed to a named user, not to "the
    /// next one to enter": a release left open let any YClients user who knew the branch id —
    /// of another salon, with their own signed link — take the salon before the newcomer. The
    /// token generation moves on in the same transaction, so every onboarding token issued before
    /// (the previous holder's among them) is dead at once; the caller publishes the change so
    /// open live streams end. What the previous holder chose goes with them: the booking messages
    /// still owed and the message texts end, and the linked WhatsApp number waits for the new
    /// holder's confirmation before anything is sent from it. `Ok(None)` when the salon is not
    /// stored.
    pub async fn hand_over(
        &self,
        id: SalonId,
        to: &str,
        operator: &str,
    ) -> Result<Option<Handover>, StoreError> {
        let held: Option<Option<String>> = salons::Entity::find_by_id(id.get())
            .select_only()
            .column(salons::Column::ConnectedBy)
            .into_tuple()
            .one(&self.db)
            .await?;
        let Some(held) = held else {
            return Ok(None);
        };
        if held.as_deref() == Some(to) {
            return Ok(Some(Handover::AlreadyHeld));
        }
        let guard = match &held {
            Some(user) => salons::Column::ConnectedBy.eq(user.as_str()),
            None => salons::Column::ConnectedBy.is_null(),
        };
        // The transaction starts with its write, guarded by the holder read above.
        let txn = self.db.begin().await?;
        let moved = salons::Entity::update_many()
            .col_expr(salons::Column::ConnectedBy, Expr::value(to))
            .col_expr(salons::Column::ReleasedUser, Expr::value(held.clone()))
            .col_expr(salons::Column::EnteredUnnamed, Expr::value(false))
            // The WhatsApp number the previous holder linked (perhaps their own) waits for the
            // new holder's «use it / disconnect it», as a number change does: nothing is sent
            // from it until then.
            .col_expr(
                salons::Column::NumberChangeFrom,
                Expr::cust("COALESCE(number_change_from, whatsapp_phone)"),
            )
            .col_expr(
                salons::Column::TokenGeneration,
                Expr::col(salons::Column::TokenGeneration).add(1),
            )
            .col_expr(salons::Column::UpdatedAt, Expr::value(super::now()))
            .filter(salons::Column::Id.eq(id.get()))
            .filter(guard)
            .exec(&txn)
            .await?
            .rows_affected;
        if moved != 1 {
            txn.rollback().await?;
            return Ok(Some(Handover::Changed));
        }
        // The previous holder's words go with them: the messages still owed and the texts they
        // chose (perhaps reworded into a phishing link), as an uninstall ends them.
        super::messages::end_installation_messages(&txn, id, "salon_handed_over", self.clock.now())
            .await?;
        audit::record(
            &txn,
            Some(id),
            "connected_user_released",
            json!({"user": held, "to": to, "operator": operator}),
        )
        .await?;
        txn.commit().await?;
        Ok(Some(Handover::Done { from: held }))
    }

    /// Company info read from YClients (title, phone, address, timezone) and when.
    pub async fn refresh_company(&self, id: SalonId, company: &Company) -> Result<(), StoreError> {
        let title = if company.title.trim().is_empty() {
            fallback_title(id)
        } else {
            super::storable_text(&company.title).into_owned()
        };
        let text = |v: &Option<String>| {
            v.as_deref()
                .filter(|s| !s.is_empty())
                .map(|s| super::storable_text(s).into_owned())
        };
        let txn = self.db.begin().await?;
        salons::Entity::update_many()
            .col_expr(salons::Column::Title, Expr::value(title))
            .col_expr(salons::Column::Phone, Expr::value(text(&company.phone)))
            .col_expr(salons::Column::Address, Expr::value(text(&company.address)))
            .col_expr(
                salons::Column::Timezone,
                Expr::value(text(&company.timezone_name)),
            )
            .col_expr(
                salons::Column::CompanyRefreshedAt,
                Expr::value(super::now()),
            )
            .filter(salons::Column::Id.eq(id.get()))
            .exec(&txn)
            .await?;
        // The salon's phone may arrive after WhatsApp linked: the "another number" warning is
        // worked out again from both, whichever came last.
        super::devices::recompute_other_number(&txn, id).await?;
        txn.commit().await?;
        Ok(())
    }

    /// `freeze`: paused, data and credentials kept. `false` when the salon is not stored or is
    /// uninstalled (the state machine refuses it).
    pub async fn freeze(&self, id: SalonId, lifecycle_event: i32) -> Result<bool, StoreError> {
        let txn = self.db.begin().await?;
        let moved = salons::Entity::update_many()
            .col_expr(
                salons::Column::Status,
                Expr::value(SalonStatus::Frozen.as_str()),
            )
            .col_expr(salons::Column::UpdatedAt, Expr::value(super::now()))
            .filter(salons::Column::Id.eq(id.get()))
            .filter(
                salons::Column::Status
                    .is_in(status_values(&SalonStatus::sources_of(SalonStatus::Frozen))),
            )
            .exec(&txn)
            .await?
            .rows_affected
            == 1;
        audit::record(
            &txn,
            Some(id),
            "frozen",
            json!({"lifecycle_event_id": lifecycle_event, "applied": moved}),
        )
        .await?;
        txn.commit().await?;
        Ok(moved)
    }

    /// Frozen salons YClients holds our confirmed pair for (the ones that resume by themselves
    /// when YClients says their installation is active again, as [`registration_target`] does),
    /// in id order after `after`, at most `limit` of them.
    pub async fn frozen_salons_to_check(
        &self,
        after: Option<SalonId>,
        limit: u64,
    ) -> Result<Vec<SalonId>, StoreError> {
        let mut query = salons::Entity::find()
            .select_only()
            .column(salons::Column::Id)
            .filter(salons::Column::Status.eq(SalonStatus::Frozen.as_str()))
            .filter(salons::Column::ApiKeyHash.is_not_null())
            .filter(salons::Column::WebhookSecretHash.is_not_null());
        if let Some(after) = after {
            query = query.filter(salons::Column::Id.gt(after.get()));
        }
        let ids: Vec<i64> = query
            .order_by_asc(salons::Column::Id)
            .limit(limit)
            .into_tuple()
            .all(&self.db)
            .await?;
        Ok(ids
            .into_iter()
            .filter_map(|id| SalonId::try_from(id).ok())
            .collect())
    }

    /// YClients says a frozen salon's installation is active again: `Frozen → Active` and the
    /// `unfrozen` audit entry, in one transaction that starts with its write. Only a salon that is
    /// still frozen and whose pair YClients confirmed moves (the condition of
    /// [`registration_target`]); `false` otherwise (already resumed by an entry, uninstalled, …).
    pub async fn unfreeze(
        &self,
        id: SalonId,
        noticed_by: UnfreezeNoticedBy,
    ) -> Result<bool, StoreError> {
        SalonStatus::Frozen.transition(SalonStatus::Active)?;
        let txn = self.db.begin().await?;
        let moved = salons::Entity::update_many()
            .col_expr(
                salons::Column::Status,
                Expr::value(SalonStatus::Active.as_str()),
            )
            .col_expr(salons::Column::UpdatedAt, Expr::value(super::now()))
            .filter(salons::Column::Id.eq(id.get()))
            .filter(salons::Column::Status.eq(SalonStatus::Frozen.as_str()))
            .filter(salons::Column::ApiKeyHash.is_not_null())
            .filter(salons::Column::WebhookSecretHash.is_not_null())
            .exec(&txn)
            .await?
            .rows_affected
            == 1;
        if !moved {
            txn.rollback().await?;
            return Ok(false);
        }
        record_unfrozen(&txn, id, noticed_by).await?;
        txn.commit().await?;
        Ok(true)
    }

    /// `uninstall`, in one transaction: the status, the API key and webhook secret gone, the
    /// WhatsApp link and device row forgotten, an owed callback withdrawn, the booking messages
    /// still owed and the message texts ended, the salon's clients forgotten (`forget_clients`), and a new token generation, so every onboarding
    /// token issued before it is dead.
    pub async fn uninstall(&self, id: SalonId, lifecycle_event: i32) -> Result<(), StoreError> {
        let txn = self.db.begin().await?;
        if txn.get_database_backend() == sea_orm::DbBackend::Postgres {
            // A batch of entity webhooks holds its salons' rows (`FOR KEY SHARE`) until it
            // commits: wait for it, so that what it stored is forgotten below; a batch after this
            // lock finds the webhook secret gone and stores nothing (`store::entity_events`).
            // SQLite runs one writing transaction at a time (and a read first would only risk a
            // stale snapshot there).
            salons::Entity::find_by_id(id.get())
                .select_only()
                .column(salons::Column::Id)
                .lock_exclusive()
                .into_tuple::<i64>()
                .one(&txn)
                .await?;
        }
        let none = || Expr::value(Option::<String>::None);
        salons::Entity::update_many()
            .col_expr(
                salons::Column::Status,
                Expr::value(SalonStatus::Uninstalled.as_str()),
            )
            .col_expr(salons::Column::ApiKeyHash, none())
            .col_expr(salons::Column::ApiKeyPrefix, none())
            .col_expr(salons::Column::WebhookSecretHash, none())
            .col_expr(salons::Column::WhatsappPhone, none())
            .col_expr(salons::Column::LinkedOtherNumber, none())
            // A new install starts clean: no state, no number to compare a new link with.
            .col_expr(salons::Column::WhatsappState, none())
            .col_expr(
                salons::Column::WhatsappStateUntil,
                Expr::value(Option::<chrono::DateTime<chrono::Utc>>::None),
            )
            .col_expr(salons::Column::WhatsappPreviousPhone, none())
            .col_expr(salons::Column::NumberChangeFrom, none())
            // The admin's phone (from the signed `user_data`) belongs to this installation: a
            // new one is entered by whoever YClients sends, and brings its own.
            .col_expr(salons::Column::AdminPhone, none())
            .col_expr(
                salons::Column::TokenGeneration,
                Expr::col(salons::Column::TokenGeneration).add(1),
            )
            .col_expr(salons::Column::UpdatedAt, Expr::value(super::now()))
            .filter(salons::Column::Id.eq(id.get()))
            .filter(
                salons::Column::Status.is_in(status_values(&SalonStatus::sources_of(
                    SalonStatus::Uninstalled,
                ))),
            )
            .exec(&txn)
            .await?;
        whatsapp_devices::Entity::delete_by_id(id.get())
            .exec(&txn)
            .await?;
        // The gateway purges them too once the session has ended; this also covers a session
        // no instance runs.
        whatsapp_credentials::Entity::delete_many()
            .filter(whatsapp_credentials::Column::SalonId.eq(id.get()))
            .exec(&txn)
            .await?;
        super::outbox::withdraw_pending(&txn, id, "приложение удалено в YClients").await?;
        super::messages::end_installation_messages(&txn, id, "salon_uninstalled", self.clock.now())
            .await?;
        forget_clients(&txn, id).await?;
        audit::record(
            &txn,
            Some(id),
            "uninstalled",
            json!({"lifecycle_event_id": lifecycle_event}),
        )
        .await?;
        txn.commit().await?;
        // The old URL is refused from now on.
        self.secrets.forget(id);
        Ok(())
    }

    /// The SHA-256 of the salon's confirmed webhook secret (entity webhooks authenticate by it).
    /// Served from the cache when it holds the salon's hash.
    pub async fn webhook_secret_hash(&self, id: SalonId) -> Result<Option<String>, StoreError> {
        let epoch = match self.secrets.get(id) {
            Ok(hash) => return Ok(Some(hash)),
            Err(epoch) => epoch,
        };
        let hash: Option<Option<String>> = salons::Entity::find_by_id(id.get())
            .select_only()
            .column(salons::Column::WebhookSecretHash)
            .into_tuple()
            .one(&self.db)
            .await?;
        let hash = hash.flatten();
        if let Some(hash) = &hash {
            self.secrets.put(id, hash, epoch);
        }
        Ok(hash)
    }

    /// What the token verifier needs: the salon's token generation and status.
    pub async fn token_generation(
        &self,
        id: SalonId,
    ) -> Result<Option<(i32, SalonStatus)>, StoreError> {
        let row: Option<(i32, String)> = salons::Entity::find_by_id(id.get())
            .select_only()
            .column(salons::Column::TokenGeneration)
            .column(salons::Column::Status)
            .into_tuple()
            .one(&self.db)
            .await?;
        row.map(|(generation, status)| Ok((generation, SalonStatus::parse(&status)?)))
            .transpose()
    }
}

pub fn fallback_title(id: SalonId) -> String {
    format!("Филиал {id}")
}

/// The YClients user id of a registration's user summary (`user_id`, a number or a string), as
/// `connected_by` keeps it; `None` for a link that names no user.
/// The YClients user id an entry's user summary names, as `connected_by` keeps it.
pub(crate) fn user_id(user: &serde_json::Value) -> Option<String> {
    match user.get("user_id")? {
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::String(s) if !s.trim().is_empty() => {
            Some(super::storable_text(s.trim()).chars().take(64).collect())
        }
        _ => None,
    }
}

/// What YClients told us about the salon's clients, gone with the app: the entity events as they
/// came (whole records: names, phones, comments), the clients' names and phones in the bookings,
/// and the numbers and texts of the booking messages. The rows of the bookings and messages stay
/// without them: a booking's version and state (and its messages' keys, made of that version)
/// carry on after a new installation, so a later change to an old booking is told as a change,
/// not as a new booking whose messages collide with the old ones' keys. The opt-outs stay: a
/// client who wrote «СТОП» is not written to again after a new installation either.
async fn forget_clients<C: sea_orm::ConnectionTrait>(
    db: &C,
    id: SalonId,
) -> Result<(), sea_orm::DbErr> {
    use crate::db::entities::{entity_events, message_outbox, records};
    entity_events::Entity::delete_many()
        .filter(entity_events::Column::SalonId.eq(id.get()))
        .exec(db)
        .await?;
    records::Entity::update_many()
        .col_expr(
            records::Column::ClientPhone,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            records::Column::ClientName,
            Expr::value(Option::<String>::None),
        )
        .filter(records::Column::SalonId.eq(id.get()))
        .exec(db)
        .await?;
    message_outbox::Entity::update_many()
        .col_expr(
            message_outbox::Column::Phone,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            message_outbox::Column::Text,
            Expr::value(Option::<String>::None),
        )
        .filter(message_outbox::Column::SalonId.eq(id.get()))
        .exec(db)
        .await?;
    Ok(())
}
