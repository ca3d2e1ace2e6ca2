//! Session leases: one owner per WhatsApp session. An instance runs a salon's session only while
//! it holds the salon's row in `session_leases`; it renews the row well inside its expiry and
//! frees it when the session ends. Every acquisition raises `generation`, and the owner's writes
//! to the salon's WhatsApp state carry it (a [`SessionLease`]): once another instance took the
//! lease, a paused old owner's writes are refused in their `WHERE` clause.
//!
//! Times are the instances' clocks (as for the outbox's and the inbox's leases): keep them in
//! step well inside the difference between the expiry and the renewal interval.

use super::{Store, StoreError};
use crate::db::entities::session_leases;
use app::domain::SalonId;
use sea_orm::sea_query::{Expr, OnConflict, Query};
use sea_orm::{
    ColumnTrait, EntityTrait, ExprTrait, QueryFilter, QueryOrder, QuerySelect, Set,
    TransactionTrait,
};

type Time = chrono::DateTime<chrono::Utc>;

/// A held lease: the fencing token an owner's writes carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionLease {
    pub salon: SalonId,
    pub owner: String,
    pub generation: i64,
}

/// The salons whose row matches `lease` (owner and generation): the guard of a fenced write.
pub(super) fn held(lease: &SessionLease) -> sea_orm::sea_query::SelectStatement {
    Query::select()
        .column(session_leases::Column::SalonId)
        .from(session_leases::Entity)
        .and_where(session_leases::Column::SalonId.eq(lease.salon.get()))
        .and_where(session_leases::Column::Owner.eq(lease.owner.clone()))
        .and_where(session_leases::Column::Generation.eq(lease.generation))
        .to_owned()
}

/// Fences a transaction: holds the salon's lease row (an update that changes nothing) while it
/// still matches `lease`, or refuses ([`StoreError::Fenced`]). Unlike a guard evaluated per
/// statement, the row stays locked until the transaction ends, so a takeover (which updates this
/// row) waits for the old owner's write and then reads it: never a stale read beside a late
/// write. Run it first in the transaction (on SQLite it also takes the write lock at once).
pub(super) async fn fence<C: sea_orm::ConnectionTrait>(
    db: &C,
    lease: &SessionLease,
) -> Result<(), StoreError> {
    let held = by_holder(lease)
        .col_expr(
            session_leases::Column::Generation,
            Expr::col(session_leases::Column::Generation),
        )
        .exec(db)
        .await?
        .rows_affected;
    if held == 1 {
        Ok(())
    } else {
        Err(StoreError::Fenced(lease.salon))
    }
}

/// The row matches `lease`: an update of it that only the holder may make.
fn by_holder(lease: &SessionLease) -> sea_orm::UpdateMany<session_leases::Entity> {
    session_leases::Entity::update_many()
        .filter(session_leases::Column::SalonId.eq(lease.salon.get()))
        .filter(session_leases::Column::Owner.eq(lease.owner.clone()))
        .filter(session_leases::Column::Generation.eq(lease.generation))
}

impl Store {
    /// Takes the salon's session lease for `owner` until `expires_at` when it is free (never
    /// taken, released, expired) or already `owner`'s; the generation grows. `None`: another
    /// instance holds it.
    pub async fn acquire_session_lease(
        &self,
        salon: SalonId,
        owner: &str,
        expires_at: Time,
    ) -> Result<Option<SessionLease>, StoreError> {
        let now = super::now();
        let inserted = session_leases::Entity::insert(session_leases::ActiveModel {
            salon_id: Set(salon.get()),
            owner: Set(Some(owner.to_owned())),
            generation: Set(1),
            expires_at: Set(Some(expires_at)),
            view: Set(None),
        })
        .on_conflict(
            OnConflict::column(session_leases::Column::SalonId)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(&self.db)
        .await?;
        if inserted == 1 {
            return Ok(Some(SessionLease {
                salon,
                owner: owner.to_owned(),
                generation: 1,
            }));
        }
        // The row stays locked by this transaction between the take and the read of its
        // generation (no `RETURNING`: sea-orm's SQLite build here does not use it).
        let txn = self.db.begin().await?;
        let taken = session_leases::Entity::update_many()
            .col_expr(session_leases::Column::Owner, Expr::value(owner.to_owned()))
            .col_expr(
                session_leases::Column::Generation,
                Expr::col(session_leases::Column::Generation).add(1),
            )
            .col_expr(session_leases::Column::ExpiresAt, Expr::value(expires_at))
            .col_expr(
                session_leases::Column::View,
                Expr::value(Option::<String>::None),
            )
            .filter(session_leases::Column::SalonId.eq(salon.get()))
            .filter(
                sea_orm::Condition::any()
                    .add(session_leases::Column::Owner.is_null())
                    .add(session_leases::Column::Owner.eq(owner))
                    .add(session_leases::Column::ExpiresAt.is_null())
                    .add(session_leases::Column::ExpiresAt.lt(now)),
            )
            .exec(&txn)
            .await?;
        if taken.rows_affected != 1 {
            txn.rollback().await?;
            return Ok(None);
        }
        let generation: Option<i64> = session_leases::Entity::find_by_id(salon.get())
            .select_only()
            .column(session_leases::Column::Generation)
            .into_tuple()
            .one(&txn)
            .await?;
        txn.commit().await?;
        Ok(generation.map(|generation| SessionLease {
            salon,
            owner: owner.to_owned(),
            generation,
        }))
    }

    /// Extends the lease to `expires_at`, only by its holder with the same generation. `false`:
    /// the lease is lost (another instance took it after it expired, or it was released).
    pub async fn renew_session_lease(
        &self,
        lease: &SessionLease,
        expires_at: Time,
    ) -> Result<bool, StoreError> {
        Ok(by_holder(lease)
            .col_expr(session_leases::Column::ExpiresAt, Expr::value(expires_at))
            .exec(&self.db)
            .await?
            .rows_affected
            == 1)
    }

    /// The session ended on purpose (freeze, uninstall, a salon that may not run WhatsApp, the
    /// lease lost): the lease is freed and nobody takes the session over by itself.
    pub async fn release_session_lease(&self, lease: &SessionLease) -> Result<bool, StoreError> {
        Ok(by_holder(lease)
            .col_expr(
                session_leases::Column::Owner,
                Expr::value(Option::<String>::None),
            )
            .col_expr(
                session_leases::Column::ExpiresAt,
                Expr::value(Option::<Time>::None),
            )
            .col_expr(
                session_leases::Column::View,
                Expr::value(Option::<String>::None),
            )
            .exec(&self.db)
            .await?
            .rows_affected
            == 1)
    }

    /// The owner stops (graceful shutdown) but the session should go on: the lease expires now,
    /// so another instance takes the session over at once, as it would after the owner died.
    pub async fn hand_over_session_lease(&self, lease: &SessionLease) -> Result<bool, StoreError> {
        Ok(by_holder(lease)
            .col_expr(
                session_leases::Column::ExpiresAt,
                Expr::value(super::now() - chrono::Duration::milliseconds(1)),
            )
            .col_expr(
                session_leases::Column::View,
                Expr::value(Option::<String>::None),
            )
            .exec(&self.db)
            .await?
            .rows_affected
            == 1)
    }

    /// Sessions whose owner died or handed them over (held, expired): another instance takes
    /// them over.
    pub async fn orphaned_session_leases(&self) -> Result<Vec<SalonId>, StoreError> {
        let ids: Vec<i64> = session_leases::Entity::find()
            .select_only()
            .column(session_leases::Column::SalonId)
            .filter(session_leases::Column::Owner.is_not_null())
            .filter(session_leases::Column::ExpiresAt.lt(super::now()))
            .limit(1000)
            .into_tuple()
            .all(&self.db)
            .await?;
        Ok(ids
            .into_iter()
            .filter_map(|id| SalonId::try_from(id).ok())
            .collect())
    }

    /// When the next lease another instance holds runs out, if that owner does not renew it:
    /// the earliest expiry still ahead among the leases not held by `me`. A live owner renews
    /// well before it; a dead one's session is orphaned then, and the lease keeper wakes for it.
    pub async fn next_foreign_lease_expiry(&self, me: &str) -> Result<Option<Time>, StoreError> {
        let next: Option<Option<Time>> = session_leases::Entity::find()
            .select_only()
            .column(session_leases::Column::ExpiresAt)
            .filter(session_leases::Column::Owner.is_not_null())
            .filter(session_leases::Column::Owner.ne(me))
            .filter(session_leases::Column::ExpiresAt.gt(super::now()))
            .order_by_asc(session_leases::Column::ExpiresAt)
            .limit(1)
            .into_tuple()
            .one(&self.db)
            .await?;
        Ok(next.flatten())
    }

    /// The salon's lease as stored: owner (if held) and generation.
    pub async fn session_lease(
        &self,
        salon: SalonId,
    ) -> Result<Option<(Option<String>, i64, Option<Time>)>, StoreError> {
        Ok(session_leases::Entity::find_by_id(salon.get())
            .one(&self.db)
            .await?
            .map(|row| (row.owner, row.generation, row.expires_at)))
    }

    /// Writes what the session shows now, by the lease's holder only (`false`: the lease is not
    /// held with this generation any more — the write was fenced).
    pub async fn write_session_view(
        &self,
        lease: &SessionLease,
        view: &str,
    ) -> Result<bool, StoreError> {
        Ok(by_holder(lease)
            .col_expr(session_leases::Column::View, Expr::value(view.to_owned()))
            .exec(&self.db)
            .await?
            .rows_affected
            == 1)
    }

    /// Writes several sessions' views at once (one statement each, one transaction); returns the
    /// salons whose write was fenced.
    pub async fn write_session_views(
        &self,
        views: &[(SessionLease, String)],
    ) -> Result<Vec<SalonId>, StoreError> {
        if let [(lease, view)] = views {
            return Ok(if self.write_session_view(lease, view).await? {
                Vec::new()
            } else {
                vec![lease.salon]
            });
        }
        let txn = self.db.begin().await?;
        let mut fenced = Vec::new();
        for (lease, view) in views {
            let written = by_holder(lease)
                .col_expr(session_leases::Column::View, Expr::value(view.clone()))
                .exec(&txn)
                .await?
                .rows_affected;
            if written != 1 {
                fenced.push(lease.salon);
            }
        }
        txn.commit().await?;
        Ok(fenced)
    }

    /// The salon, with its session as another instance runs it ([`Store::session_elsewhere`])
    /// read in the same statement: what a status read for a session not running here needs,
    /// in one round trip instead of two (a change's status read on every instance holding
    /// the salon's live streams). `None` when the salon is unknown.
    pub async fn salon_with_session_elsewhere(
        &self,
        salon: SalonId,
        me: &str,
    ) -> Result<Option<(super::Salon, Option<(String, Option<String>)>)>, StoreError> {
        use crate::db::entities::salons;
        use sea_orm::sea_query::{Alias, Asterisk, JoinType};
        use sea_orm::{Condition, ConnectionTrait, FromQueryResult};
        let lease = |column: session_leases::Column| Expr::col((session_leases::Entity, column));
        let mut query = Query::select();
        query
            .column((salons::Entity, Asterisk))
            .expr_as(
                lease(session_leases::Column::Owner),
                Alias::new("lease_owner"),
            )
            .expr_as(
                lease(session_leases::Column::View),
                Alias::new("lease_view"),
            )
            .from(salons::Entity)
            .join(
                JoinType::LeftJoin,
                session_leases::Entity,
                Condition::all()
                    .add(
                        lease(session_leases::Column::SalonId)
                            .equals((salons::Entity, salons::Column::Id)),
                    )
                    .add(held_by_another(me)),
            )
            .and_where(Expr::col((salons::Entity, salons::Column::Id)).eq(salon.get()));
        let statement = self.db.get_database_backend().build(&query);
        let Some(row) = self.db.query_one_raw(statement).await? else {
            return Ok(None);
        };
        let model = salons::Model::from_query_result(&row, "")?;
        let owner: Option<String> = row.try_get("", "lease_owner")?;
        let view: Option<String> = row.try_get("", "lease_view")?;
        Ok(Some((
            super::Salon::try_from(model)?,
            owner.map(|owner| (owner, view)),
        )))
    }

    /// The session of `salon` as another instance runs it: its owner and the view it wrote,
    /// while the lease is held by someone other than `me` and has not expired.
    pub async fn session_elsewhere(
        &self,
        salon: SalonId,
        me: &str,
    ) -> Result<Option<(String, Option<String>)>, StoreError> {
        let row = session_leases::Entity::find_by_id(salon.get())
            .filter(held_by_another(me))
            .one(&self.db)
            .await?;
        Ok(row.and_then(|row| row.owner.map(|owner| (owner, row.view))))
    }

    /// How many sessions `owner` holds now (`None`: every instance together).
    pub async fn sessions_held(&self, owner: Option<&str>) -> Result<u64, StoreError> {
        use sea_orm::PaginatorTrait;
        let held = session_leases::Entity::find()
            .filter(session_leases::Column::Owner.is_not_null())
            .filter(session_leases::Column::ExpiresAt.gt(super::now()));
        let held = match owner {
            Some(owner) => held.filter(session_leases::Column::Owner.eq(owner)),
            None => held,
        };
        Ok(held.count(&self.db).await?)
    }

    /// Of `salons`, those whose lease nobody holds now (never taken, released, or expired).
    pub async fn unheld_sessions(&self, salons: &[SalonId]) -> Result<Vec<SalonId>, StoreError> {
        if salons.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<i64> = salons.iter().map(|s| s.get()).collect();
        let held: Vec<i64> = session_leases::Entity::find()
            .select_only()
            .column(session_leases::Column::SalonId)
            .filter(session_leases::Column::SalonId.is_in(ids))
            .filter(session_leases::Column::Owner.is_not_null())
            .filter(session_leases::Column::ExpiresAt.gt(super::now()))
            .into_tuple()
            .all(&self.db)
            .await?;
        Ok(salons
            .iter()
            .copied()
            .filter(|s| !held.contains(&s.get()))
            .collect())
    }
}

/// A lease someone other than `me` holds now (an owner, not expired): the session runs on
/// another instance.
fn held_by_another(me: &str) -> sea_orm::Condition {
    sea_orm::Condition::all()
        .add(session_leases::Column::Owner.is_not_null())
        .add(session_leases::Column::Owner.ne(me))
        .add(session_leases::Column::ExpiresAt.gt(super::now()))
}
