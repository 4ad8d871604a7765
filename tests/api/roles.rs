//! One Postgres role per context, granted only its own schema: boundaries enforced by the
//! database, not by convention.

use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement};
use testkit::{Backend, TestStore};

use crate::helpers::{spawn_app_with, test_settings};

async fn connect_as(store: &TestStore, role: &str) -> DatabaseConnection {
    Database::connect(store.postgres_url_as(role))
        .await
        .unwrap_or_else(|error| panic!("connect as {role}: {error}"))
}

async fn count(db: &DatabaseConnection, sql: &str) -> Result<i64, String> {
    let row = db
        .query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await
        .map_err(|error| error.to_string())?
        .ok_or("no row")?;
    row.try_get::<i64>("", "n")
        .map_err(|error| error.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_context_role_cannot_read_another_contexts_tables() {
    let store = TestStore::new(Backend::Postgres).await;
    let mut settings = test_settings(&store);
    settings.database.roles.provision = true;
    shop::cli::migrate(&settings).await.expect("shop migrate");

    let catalog = connect_as(&store, "shop_catalog").await;
    assert_eq!(
        count(&catalog, "SELECT COUNT(*) AS n FROM catalog.products").await,
        Ok(0)
    );
    let denied = count(&catalog, "SELECT COUNT(*) AS n FROM auth.users").await;
    let error = denied.expect_err("shop_catalog must not read auth.users");
    assert!(
        error.contains("permission denied for schema auth"),
        "{error}"
    );

    let auth = connect_as(&store, "shop_auth").await;
    assert_eq!(
        count(&auth, "SELECT COUNT(*) AS n FROM auth.users").await,
        Ok(0)
    );
    let error = count(&auth, "SELECT COUNT(*) AS n FROM catalog.stock")
        .await
        .expect_err("shop_auth must not read catalog.stock");
    assert!(
        error.contains("permission denied for schema catalog"),
        "{error}"
    );

    // Each context's migration history lives in its own schema.
    for (schema, migrations) in [
        ("auth", 3),
        ("catalog", 2),
        ("payments", 3),
        ("orders", 4),
        ("notifications", 4),
    ] {
        let sql = format!("SELECT COUNT(*) AS n FROM {schema}.seaql_migrations");
        let role = connect_as(&store, &format!("shop_{schema}")).await;
        assert_eq!(count(&role, &sql).await, Ok(migrations), "{schema}");
    }
    // And every pair of contexts is walled off, not only catalog and auth.
    let orders = connect_as(&store, "shop_orders").await;
    for foreign in [
        "catalog.stock",
        "payments.payments",
        "auth.users",
        "notifications.recipients",
    ] {
        let error = count(&orders, &format!("SELECT COUNT(*) AS n FROM {foreign}"))
            .await
            .expect_err("shop_orders reads only orders");
        assert!(error.contains("permission denied"), "{foreign}: {error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contexts_can_run_as_their_own_roles() {
    let store = TestStore::new(Backend::Postgres).await;
    // A prefix of its own, so this test's roles never meet another test's.
    let prefix = format!("t{}_", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let configure = |settings: &mut shop::Settings| {
        settings.database.roles.provision = true;
        settings.database.roles.prefix = prefix.clone();
        settings.database.roles.connect_as_role = true;
    };
    let mut settings = test_settings(&store);
    configure(&mut settings);
    shop::cli::migrate(&settings).await.expect("shop migrate");

    let app = spawn_app_with(store, configure).await;
    app.register("role@example.com", "role password", "Role")
        .await
        .ok(StatusCode::CREATED);
    let token = app.token("role@example.com", "role password").await;
    app.get("/api/auth/me", Some(&token))
        .await
        .ok(StatusCode::OK);
    let admin = app.admin_token().await;
    app.create_product(&admin, "ROLE-1", 100, "things", 1).await;

    // The tables were created by, and belong to, the context roles.
    let owner = app
        .contexts
        .stores
        .iter()
        .find(|(context, _)| *context == "catalog")
        .map(|(_, db)| db.clone())
        .expect("catalog store");
    let row = owner
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT tableowner::text AS owner FROM pg_tables WHERE schemaname = 'catalog' AND tablename = 'products'",
        ))
        .await
        .expect("query")
        .expect("row");
    assert_eq!(
        row.try_get::<String>("", "owner").expect("owner"),
        format!("{prefix}catalog")
    );
}
