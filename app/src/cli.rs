//! The command line: `shop serve` (the default), `shop migrate`, `shop admin create`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use auth_api::Password;
use clap::{Parser, Subcommand};

use crate::contexts::{self, Contexts};
use crate::settings::Settings;
use crate::startup::Application;
use crate::telemetry;

#[derive(Debug, Parser)]
#[command(
    name = "shop",
    version,
    about = "A modular monolith shop: one binary, five bounded contexts"
)]
pub struct Cli {
    /// An environment file layered over the defaults (TOML).
    #[arg(long, global = true, env = "SHOP_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Migrate the store of each context this process runs and serve HTTP (the default).
    Serve {
        /// The contexts this process runs: `all` or a comma-separated list such as
        /// `payments` (overrides `placement.contexts`). The others are called where
        /// `placement.<context>_url` says they run.
        #[arg(long, value_name = "CONTEXTS")]
        contexts: Option<String>,
    },
    /// Apply every context's migrations; with database.roles.provision, create the context roles.
    Migrate,
    /// Administration tasks.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Create an administrator account.
    Create {
        #[arg(long)]
        email: String,
        /// 8 to 128 characters. Prefer the SHOP_ADMIN_PASSWORD variable over the flag, so
        /// the password stays out of shell history.
        #[arg(long, env = "SHOP_ADMIN_PASSWORD", hide_env_values = true)]
        password: String,
        #[arg(long, default_value = "Administrator")]
        display_name: String,
    },
}

pub async fn run() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve { contexts: None });
    let overrides: Vec<(&str, String)> = match &command {
        Command::Serve {
            contexts: Some(contexts),
        } => vec![("placement.contexts", contexts.clone())],
        _ => Vec::new(),
    };
    let settings = match Settings::load_with(cli.config.as_deref(), &overrides) {
        Ok(settings) => settings,
        Err(error) => {
            report(&anyhow::Error::new(error));
            return ExitCode::from(2);
        }
    };
    let telemetry = telemetry::init(&settings.log, &settings.telemetry);
    let outcome = match command {
        Command::Serve { .. } => serve(&settings).await,
        Command::Migrate => migrate(&settings).await,
        Command::Admin {
            command:
                AdminCommand::Create {
                    email,
                    password,
                    display_name,
                },
        } => create_admin(&settings, email, password, display_name).await,
    };
    let code = match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "command failed");
            report(&error);
            ExitCode::FAILURE
        }
    };
    telemetry.shutdown();
    code
}

#[allow(
    clippy::print_stderr,
    reason = "the CLI reports failures to its user on stderr"
)]
fn report(error: &anyhow::Error) {
    eprintln!("error: {error:#}");
}

async fn serve(settings: &Settings) -> anyhow::Result<()> {
    let application = Application::build(settings).await?;
    application.run_until_stopped().await.context("serve HTTP")
}

/// Provisions roles (when configured) before migrating, so that contexts connecting as their
/// role own the tables their migrations create.
pub async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let store = settings.store();
    if store.roles.provision {
        if !settings.uses_postgres() {
            anyhow::bail!("database.roles.provision needs a Postgres database.url");
        }
        let placement = settings.placement()?;
        for context in contexts::ALL {
            if placement.is_local(context) {
                store.provision_role(context).await?;
            }
        }
    }
    Contexts::open(settings).await?;
    tracing::info!(store = %store.describe(), "migrations applied");
    Ok(())
}

async fn create_admin(
    settings: &Settings,
    email: String,
    password: String,
    display_name: String,
) -> anyhow::Result<()> {
    let contexts = Contexts::open(settings).await?;
    let Some(auth) = &contexts.auth else {
        anyhow::bail!("auth runs in another process: create the administrator there");
    };
    let admin = auth
        .create_admin(email, Password::new(password), display_name)
        .await
        .map_err(|error| anyhow::anyhow!("cannot create the administrator: {error}"))?;
    tracing::info!(user_id = %admin.id, email = %admin.email, "administrator created");
    Ok(())
}
