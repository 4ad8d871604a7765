//! The auth context: who the users are and how they prove it.
//!
//! Published language: `auth-api` ([`auth_api::AuthApi`]). Inside:
//! - `domain`: parsing of emails, display names and passwords (no I/O);
//! - `password`: argon2id hashing off the async runtime, within bounded concurrency and queue;
//! - `token`: issuing and verifying JWT access tokens;
//! - `store`: the `users` table, in auth's own schema, and all of auth's SQL (its `outbox`
//!   belongs to `messaging`);
//! - `service`: [`AuthService`]: the implementation of `AuthApi` and the operations of auth's
//!   routes;
//! - `http`: the `/api/auth` routes, with login and registration rate-limited per client
//!   address and per account ([`Attempts`]).
//!
//! Architecture invariant: nothing outside this crate sees a credential or a password hash,
//! and no other context names the `users` table.

mod domain;
mod http;
mod password;
mod service;
mod store;
mod token;

use std::sync::Arc;

use auth_api::{AuthApi, AuthError, Password, RegisterUser, Role, User};
use kernel::Clock;
use messaging::Outbox;
use sea_orm::{DatabaseConnection, DbErr};

pub use http::{AttemptLimits, Attempts, AuthDoc, PUBLIC_SCOPES, configure};
pub use password::{HashError, HashingLimits};
pub use service::AuthService;
pub use token::{SigningKey, TokenConfig};

/// The context's name, which is also its schema, its SQLite file and its role suffix.
pub const CONTEXT: &str = "auth";

/// What no code can say about auth: its purpose, its language and its invariants. The
/// console's context page and `docs/contexts/auth.md` are made from it and from the code.
pub const CANVAS: &str = include_str!("../canvas.toml");

/// Applies auth's migrations to auth's own store.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    db_kit::migrate::<auth_migrations::Migrator>(db, CONTEXT).await
}

/// The assembled context, as the composition root sees it.
#[derive(Debug, Clone)]
pub struct AuthModule {
    service: Arc<AuthService>,
    outbox: Outbox,
}

impl AuthModule {
    /// Fails when the decoy password hash cannot be made: serving without it would let
    /// login timing tell which emails have accounts.
    pub async fn new(
        db: DatabaseConnection,
        tokens: TokenConfig,
        hashing: HashingLimits,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, HashError> {
        let outbox = Outbox::new(CONTEXT);
        let service = AuthService::new(db, tokens, hashing, clock, outbox.clone()).await?;
        Ok(Self {
            service: Arc::new(service),
            outbox,
        })
    }

    /// Where auth's events (`UserRegistered`) wait for the relay; the composition root
    /// registers it on the event bus.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// The port other contexts and the web layer use.
    pub fn api(&self) -> Arc<dyn AuthApi> {
        self.service.clone()
    }

    /// The service behind auth's own routes (and the tests that drive them).
    pub fn service(&self) -> Arc<AuthService> {
        self.service.clone()
    }

    /// Creates an administrator. Deliberately not part of `AuthApi`: granting roles is an
    /// operator's act (`shop admin create`), not something another context may ask for.
    pub async fn create_admin(
        &self,
        email: String,
        password: Password,
        display_name: String,
    ) -> Result<User, AuthError> {
        self.service
            .create_user(
                RegisterUser {
                    email,
                    password,
                    display_name,
                },
                Role::Admin,
            )
            .await
    }
}
