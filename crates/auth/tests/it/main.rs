//! auth's behaviour through its service (the port `AuthApi` and the operations of its
//! routes), on SQLite and on Postgres.

use std::sync::Arc;
use std::time::Duration;

use auth::{AuthModule, HashingLimits, SigningKey, TokenConfig};
use auth_api::{AuthApi, AuthError, Login, Password, RegisterUser, Role};
use kernel::SystemClock;
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use testkit::{Backend, TestStore};

async fn module(store: &TestStore) -> AuthModule {
    let db = store.connect(auth::CONTEXT).await;
    auth::migrate(&db).await.expect("migrate");
    let tokens = TokenConfig {
        key: SigningKey::new(vec![42; 32]).expect("key"),
        issuer: "shop".into(),
        audience: "shop-api".into(),
        ttl: Duration::from_secs(600),
    };
    let hashing = HashingLimits {
        concurrency: 2,
        queue: 16,
    };
    AuthModule::new(db, tokens, hashing, Arc::new(SystemClock))
        .await
        .expect("start auth")
}

fn registration(email: &str, password: &str, display_name: &str) -> RegisterUser {
    RegisterUser {
        email: email.into(),
        password: Password::new(password),
        display_name: display_name.into(),
    }
}

fn login(email: &str, password: &str) -> Login {
    Login {
        email: email.into(),
        password: Password::new(password),
    }
}

async fn registered_users_can_log_in_and_be_found(store: TestStore) {
    let auth = module(&store).await.service();
    let user = auth
        .register(registration("Ada@Example.com", "correct horse", " Ada "))
        .await
        .expect("register");
    assert_eq!(user.email, "ada@example.com");
    assert_eq!(user.display_name, "Ada");
    assert_eq!(user.role, Role::Customer);

    let token = auth
        .login(login("ADA@example.com", "correct horse"))
        .await
        .expect("login");
    assert_eq!(token.token_type, auth_api::TokenType::Bearer);
    assert_eq!(token.expires_in, 600);
    let principal = auth.verify_token(token.access_token).await.expect("verify");
    assert_eq!(principal.user_id, user.id);
    assert_eq!(auth.get_user(user.id).await, Ok(user));
}

async fn emails_are_unique_regardless_of_case(store: TestStore) {
    let auth = module(&store).await.service();
    auth.register(registration("bob@example.com", "password1", "Bob"))
        .await
        .expect("first");
    let second = auth
        .register(registration("BOB@example.com", "password2", "Bobby"))
        .await;
    assert_eq!(second, Err(AuthError::EmailTaken));
}

async fn invalid_registrations_report_every_field_and_store_nothing(store: TestStore) {
    let auth = module(&store).await.service();
    let Err(AuthError::ValidationFailed { fields }) =
        auth.register(registration("nope", "short", "")).await
    else {
        panic!("expected a validation error");
    };
    let codes: Vec<(&str, &str)> = fields
        .iter()
        .map(|f| (f.field.as_str(), f.code.as_str()))
        .collect();
    assert_eq!(
        codes,
        [
            ("email", "invalid_email"),
            ("password", "too_short"),
            ("display_name", "required")
        ]
    );
    let too_long = "x".repeat(129);
    assert!(matches!(
        auth.register(registration("ok@example.com", &too_long, "Ok"))
            .await,
        Err(AuthError::ValidationFailed { .. })
    ));
    // Nothing was written: the address is still free.
    auth.register(registration("ok@example.com", "long enough", "Ok"))
        .await
        .expect("still free");
}

async fn wrong_password_and_unknown_email_fail_identically(store: TestStore) {
    let auth = module(&store).await.service();
    auth.register(registration("eve@example.com", "the real one", "Eve"))
        .await
        .expect("register");
    let wrong = auth.login(login("eve@example.com", "a wrong one")).await;
    let unknown = auth
        .login(login("nobody@example.com", "the real one"))
        .await;
    let malformed = auth.login(login("not an email", "the real one")).await;
    assert_eq!(wrong, Err(AuthError::InvalidCredentials));
    assert_eq!(unknown, Err(AuthError::InvalidCredentials));
    assert_eq!(malformed, Err(AuthError::InvalidCredentials));
}

async fn admins_are_created_by_the_operator(store: TestStore) {
    let module = module(&store).await;
    let admin = module
        .create_admin(
            "root@example.com".into(),
            Password::new("admin password"),
            "Root".into(),
        )
        .await
        .expect("create admin");
    assert_eq!(admin.role, Role::Admin);
    let token = module
        .service()
        .login(login("root@example.com", "admin password"))
        .await
        .expect("login");
    let principal = module
        .api()
        .verify_token(token.access_token)
        .await
        .expect("verify");
    assert!(principal.is_admin());
}

async fn migrations_are_recorded_in_auths_own_history(store: TestStore) {
    let db = store.connect(auth::CONTEXT).await;
    auth::migrate(&db).await.expect("first run");
    auth::migrate(&db).await.expect("second run is a no-op");
    let sql = match store.backend {
        Backend::Sqlite => "SELECT COUNT(*) AS n FROM seaql_migrations",
        Backend::Postgres => "SELECT COUNT(*) AS n FROM auth.seaql_migrations",
    };
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .expect("query")
        .expect("a row");
    let applied: i64 = row.try_get("", "n").expect("count");
    assert_eq!(applied, 3, "users, the outbox, then its claim indexes");
    if store.backend == Backend::Postgres {
        let row = db
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT COUNT(*) AS n FROM information_schema.tables \
                 WHERE table_schema = 'auth' AND table_name IN ('users', 'outbox', 'seaql_migrations')",
            ))
            .await
            .expect("query")
            .expect("a row");
        assert_eq!(row.try_get::<i64>("", "n").expect("count"), 3);
    }
}

/// The event is written with the user, in the same transaction: a refused registration
/// leaves no event behind.
async fn registration_records_user_registered_with_the_user(store: TestStore) {
    let auth = module(&store).await.service();
    let db = store.connect(auth::CONTEXT).await;
    let events = || async {
        let row = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                "SELECT COUNT(*) AS n FROM outbox WHERE name = 'auth.user_registered.v1'",
            ))
            .await
            .expect("query")
            .expect("a row");
        row.try_get::<i64>("", "n").expect("count")
    };
    auth.register(registration("evt@example.com", "password one", "Evt"))
        .await
        .expect("register");
    assert_eq!(events().await, 1);
    let duplicate = auth
        .register(registration("EVT@example.com", "password two", "Evt"))
        .await;
    assert_eq!(duplicate, Err(AuthError::EmailTaken));
    let invalid = auth.register(registration("nope", "x", "")).await;
    assert!(invalid.is_err());
    assert_eq!(events().await, 1, "refused registrations publish nothing");
}

testkit::backend_tests!(
    registration_records_user_registered_with_the_user,
    registered_users_can_log_in_and_be_found,
    emails_are_unique_regardless_of_case,
    invalid_registrations_report_every_field_and_store_nothing,
    wrong_password_and_unknown_email_fail_identically,
    admins_are_created_by_the_operator,
    migrations_are_recorded_in_auths_own_history,
);
