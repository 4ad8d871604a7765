//! `AuthService`: auth's application service. It implements the port (`AuthApi`, what the
//! rest of the shop asks auth) and the operations of auth's own routes (register, log in,
//! who am I). It orchestrates: `domain` decides what is valid, `store` holds the SQL.

use std::sync::Arc;

use async_trait::async_trait;
use auth_api::{
    AccessToken, AuthApi, AuthError, Login, Principal, RegisterUser, Role, TokenType, User,
    UserRegistered,
};
use kernel::{Clock, FieldErrors, UserId};
use messaging::Outbox;
use sea_orm::{DatabaseConnection, TransactionTrait};

use crate::domain::{DisplayName, Email, NewPassword};
use crate::password::{HashError, HashingLimits, PasswordHashing};
use crate::store::{self, NewUser};
use crate::token::{TokenConfig, Tokens};

#[derive(Debug)]
pub struct AuthService {
    db: DatabaseConnection,
    hashing: PasswordHashing,
    tokens: Tokens,
    clock: Arc<dyn Clock>,
    outbox: Outbox,
}

/// What a failed hash means for the caller: a full hashing queue is a temporary
/// `unavailable` (503 with `Retry-After`), anything else a logged internal error.
fn hashing_failed(error: HashError) -> AuthError {
    match error {
        HashError::Busy => {
            tracing::warn!("password hashing queue full; refusing the request");
            AuthError::Unavailable {
                reason: "too many password checks in progress; try again shortly".into(),
            }
        }
        error => {
            tracing::error!(error = %error, "password hashing failed");
            AuthError::Internal
        }
    }
}

impl AuthService {
    /// Fails when the decoy password hash cannot be made (see `PasswordHashing::new`).
    pub async fn new(
        db: DatabaseConnection,
        tokens: TokenConfig,
        hashing: HashingLimits,
        clock: Arc<dyn Clock>,
        outbox: Outbox,
    ) -> Result<Self, HashError> {
        Ok(Self {
            db,
            hashing: PasswordHashing::new(hashing).await?,
            tokens: Tokens::new(tokens),
            clock,
            outbox,
        })
    }

    /// Registration with an explicit role; only `register` (customers) and the operator's
    /// `create_admin` call it.
    #[tracing::instrument(skip_all, fields(role = ?role))]
    pub(crate) async fn create_user(
        &self,
        request: RegisterUser,
        role: Role,
    ) -> Result<User, AuthError> {
        let mut errors = FieldErrors::new();
        let email = errors.check(Email::parse(&request.email));
        let password = errors.check(NewPassword::parse(request.password.expose()));
        let display_name = errors.check(DisplayName::parse(&request.display_name));
        let (Some(email), Some(password), Some(display_name)) = (email, password, display_name)
        else {
            return Err(AuthError::ValidationFailed {
                fields: errors.into_vec(),
            });
        };

        let password_hash = self
            .hashing
            .hash(password.expose().to_owned())
            .await
            .map_err(hashing_failed)?;
        let now = self.clock.now();
        let user = NewUser {
            email: email.into_inner(),
            display_name: display_name.into_inner(),
            password_hash,
            role,
        };
        // The user and the event announcing it commit together, or neither does.
        let txn = self.db.begin().await.map_err(db_kit::internal)?;
        let user = store::insert_user(&txn, user, now).await.map_err(|error| {
            if db_kit::is_unique_violation(&error) {
                AuthError::EmailTaken
            } else {
                db_kit::internal(error)
            }
        })?;
        let event = UserRegistered {
            user_id: UserId::from_uuid(user.id),
            email: user.email.clone(),
            display_name: user.display_name.clone(),
            registered_at: now,
        };
        self.outbox
            .commit_with(txn, &event, now)
            .await
            .map_err(db_kit::internal)?;
        tracing::info!(user_id = %user.id, "user registered");
        Ok(user.to_user())
    }

    /// Creates a customer account. Publishes [`UserRegistered`].
    pub async fn register(&self, request: RegisterUser) -> Result<User, AuthError> {
        self.create_user(request, Role::Customer).await
    }

    /// Exchanges an email and password for an access token. A wrong password and an unknown
    /// email fail identically, so the answer does not reveal which accounts exist.
    #[tracing::instrument(skip_all)]
    pub async fn login(&self, request: Login) -> Result<AccessToken, AuthError> {
        let password = request.password.expose().to_owned();
        let user = match Email::parse(&request.email) {
            Ok(email) => store::find_by_email(&self.db, email.as_str())
                .await
                .map_err(db_kit::internal)?,
            Err(_) => None,
        };
        let verified = match &user {
            Some(user) => {
                self.hashing
                    .verify(password, user.password_hash.clone())
                    .await
            }
            None => self.hashing.verify_decoy(password).await,
        }
        .map_err(hashing_failed)?;
        let Some(user) = user.filter(|_| verified) else {
            return Err(AuthError::InvalidCredentials);
        };
        let access_token =
            self.tokens
                .issue(UserId::from_uuid(user.id), user.role(), self.clock.now())?;
        Ok(AccessToken {
            access_token,
            token_type: TokenType::Bearer,
            expires_in: self.tokens.ttl().as_secs(),
        })
    }

    /// A user's account as its owner sees it.
    #[tracing::instrument(skip(self))]
    pub async fn get_user(&self, id: UserId) -> Result<User, AuthError> {
        store::find_by_id(&self.db, id)
            .await
            .map_err(db_kit::internal)?
            .map(|user| user.to_user())
            .ok_or(AuthError::UserNotFound)
    }
}

#[async_trait]
impl AuthApi for AuthService {
    #[tracing::instrument(skip_all)]
    async fn verify_token(&self, token: String) -> Result<Principal, AuthError> {
        self.tokens.verify(&token)
    }
}
