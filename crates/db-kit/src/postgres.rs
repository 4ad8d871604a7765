//! Postgres specifics: quoting, role provisioning, redacted URLs.

use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr};

/// Quotes an SQL identifier. Context names are already restricted to `[a-z0-9_]`; quoting
/// anyway keeps reserved words (`order`) working.
pub(crate) fn quote_ident(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// The role owns the context's schema (so it can run that context's migrations) and is
/// granted nothing else. `PUBLIC` loses its default access to the schema, so other
/// contexts' roles get "permission denied for schema".
pub(crate) async fn provision_role(
    admin: &DatabaseConnection,
    schema: &str,
    role: &str,
    password: Option<&str>,
) -> Result<(), DbErr> {
    let schema = quote_ident(schema);
    let role_ident = quote_ident(role);
    // Two processes may provision at once: a concurrent CREATE ROLE fails with a
    // duplicate, which is the outcome we wanted anyway.
    admin
        .execute_unprepared(&format!(
            "DO $$ BEGIN CREATE ROLE {role_ident} LOGIN; \
             EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
        ))
        .await?;
    let login = match password {
        Some(password) => format!(
            "ALTER ROLE {role_ident} WITH LOGIN PASSWORD {}",
            quote_literal(password)
        ),
        None => format!("ALTER ROLE {role_ident} WITH LOGIN"),
    };
    admin.execute_unprepared(&login).await?;
    for statement in [
        format!(
            "DO $$ BEGIN CREATE SCHEMA IF NOT EXISTS {schema}; \
             EXCEPTION WHEN duplicate_schema OR unique_violation THEN NULL; END $$"
        ),
        format!("ALTER SCHEMA {schema} OWNER TO {role_ident}"),
        format!("REVOKE ALL ON SCHEMA {schema} FROM PUBLIC"),
        format!("GRANT ALL ON ALL TABLES IN SCHEMA {schema} TO {role_ident}"),
        format!("GRANT ALL ON ALL SEQUENCES IN SCHEMA {schema} TO {role_ident}"),
        // Tables the administrator creates later (migrations run without role login).
        format!("ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT ALL ON TABLES TO {role_ident}"),
        format!(
            "ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT ALL ON SEQUENCES TO {role_ident}"
        ),
    ] {
        admin.execute_unprepared(&statement).await?;
    }
    Ok(())
}

/// `postgres://user@host:port/db`, without the password.
pub(crate) fn redacted(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) => {
            if url.password().is_some() {
                let _ = url.set_password(Some("***"));
            }
            format!("postgres database {url}")
        }
        Err(_) => "postgres database (unparseable url)".to_owned(),
    }
}
