//! The schema, as frozen migrations. Never imports the server's entities: a released migration
//! keeps meaning what it meant when it ran.

pub use sea_orm_migration::prelude::*;

mod m20261126_090000_create_salons;
mod m20261126_090100_create_integration_events_and_outbox;
mod m20261126_090200_create_webhook_inbox;
mod m20261201_090000_trust_boundaries;
mod m20261202_090000_sessions_that_heal;
mod m20261202_120000_ops_console;
mod m20261203_090000_callback_attempts;
mod m20261203_100000_booking_messages;
mod m20261203_110000_lifecycle_leases;
mod m20261204_090000_session_leases;
mod m20261205_090000_sealed_credentials;
mod m20261205_100000_session_routing;
mod m20261206_090000_outbox_partial_indexes;
mod m20261207_090000_connected_by;
mod m20261208_090000_released_user;
mod m20261209_090000_entered_unnamed;
mod m20261210_090000_audit_user_id_only;
mod m20261211_090000_booking_identity;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261126_090000_create_salons::Migration),
            Box::new(m20261126_090100_create_integration_events_and_outbox::Migration),
            Box::new(m20261126_090200_create_webhook_inbox::Migration),
            Box::new(m20261201_090000_trust_boundaries::Migration),
            Box::new(m20261202_090000_sessions_that_heal::Migration),
            Box::new(m20261202_120000_ops_console::Migration),
            Box::new(m20261203_090000_callback_attempts::Migration),
            Box::new(m20261203_100000_booking_messages::Migration),
            Box::new(m20261203_110000_lifecycle_leases::Migration),
            Box::new(m20261204_090000_session_leases::Migration),
            Box::new(m20261205_090000_sealed_credentials::Migration),
            Box::new(m20261205_100000_session_routing::Migration),
            Box::new(m20261206_090000_outbox_partial_indexes::Migration),
            Box::new(m20261207_090000_connected_by::Migration),
            Box::new(m20261208_090000_released_user::Migration),
            Box::new(m20261209_090000_entered_unnamed::Migration),
            Box::new(m20261210_090000_audit_user_id_only::Migration),
            Box::new(m20261211_090000_booking_identity::Migration),
        ]
    }
}
