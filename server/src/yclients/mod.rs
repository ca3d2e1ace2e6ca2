//! YClients: the typed API client (reqwest) and the sandbox that plays YClients over HTTP for
//! dev, demo and tests. See `shared/yclients-api.md` for the contract both follow.

pub mod client;
pub mod sandbox;

pub use client::{CallbackRequest, Company, InstallationStatus, YClientsClient, YClientsError};
