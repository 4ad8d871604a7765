//! Wake-ups for the background loops (the event bus, orders' recovery sweep, payments'
//! reconciliation), so that an idle shop issues no query at all.
//!
//! A loop never polls. It runs a pass when something tells it there may be work, and
//! otherwise sleeps until the earliest time it learnt from its last pass (a retry's due time,
//! a lease's end), or for ever. [`Wake`] brings the three ways of being told together:
//!
//! - in this process, whoever creates work calls [`Wake::notify`] (a `tokio` `Notify`, so a
//!   wake-up that arrives while the loop is busy is kept for its next wait);
//! - across processes on Postgres, [`Wake::listen`] holds one connection that `LISTEN`s on
//!   a channel per context ([`channel`]), and the publishing transaction calls [`notify`] in
//!   the same transaction, so the wake-up is sent iff it commits. Its payload names the sender
//!   ([`Wake::listen`] ignores the senders of its own process, already woken in process);
//! - [`Wake::wait`] returns at the loop's deadline.
//!
//! Notifications are not queued while the listening connection is down, so every
//! (re)connection wakes the loop with [`Woken::Reconnected`]: it runs one pass to catch up.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sea_orm::sqlx::postgres::{PgListener, PgPoolOptions};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Why [`Wake::wait`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Woken {
    /// Something in this process said there is work ([`Wake::notify`]).
    Local,
    /// Another process committed on a channel this wake listens to.
    Remote,
    /// The listening connection was (re)established: notifications may have been missed.
    Reconnected,
    /// The deadline passed.
    Deadline,
    /// The shutdown token was cancelled.
    Shutdown,
}

/// The wake-up of one background loop. Clones share it.
#[derive(Debug, Clone, Default)]
pub struct Wake {
    local: Arc<Notify>,
    remote: Arc<Notify>,
    reconnected: Arc<Notify>,
    listening: Arc<AtomicBool>,
}

impl Wake {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the listening connection is up (always false on SQLite).
    pub fn listening(&self) -> bool {
        self.listening.load(Ordering::SeqCst)
    }

    /// Wakes the loop now; kept until its next wait when it is busy.
    pub fn notify(&self) {
        self.local.notify_one();
    }

    /// Waits for a wake-up, the `deadline` (none: for ever) or `shutdown`.
    pub async fn wait(&self, deadline: Option<Instant>, shutdown: &CancellationToken) -> Woken {
        let at_deadline = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            () = shutdown.cancelled() => Woken::Shutdown,
            () = self.reconnected.notified() => Woken::Reconnected,
            () = self.local.notified() => Woken::Local,
            () = self.remote.notified() => Woken::Remote,
            () = at_deadline => Woken::Deadline,
        }
    }

    /// On Postgres, listens on `channels` through a connection of its own (made with `db`'s
    /// options, outside its pool) until `shutdown`, waking the loop for every notification
    /// whose payload is not in `own` (the senders of this process, which woke it already),
    /// and after every (re)connection. On SQLite (one process per store) it does nothing.
    pub fn listen(
        &self,
        db: &DatabaseConnection,
        channels: Vec<String>,
        own: HashSet<String>,
        shutdown: CancellationToken,
    ) -> Option<JoinHandle<()>> {
        if db.get_database_backend() != DbBackend::Postgres || channels.is_empty() {
            return None;
        }
        let options = db.get_postgres_connection_pool().connect_options();
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .connect_lazy_with((*options).clone());
        let wake = self.clone();
        Some(tokio::spawn(async move {
            let mut delay = RECONNECT_FIRST;
            'connect: loop {
                let connected = async {
                    let mut listener = PgListener::connect_with(&pool).await?;
                    listener
                        .listen_all(channels.iter().map(String::as_str))
                        .await?;
                    Ok::<_, sea_orm::sqlx::Error>(listener)
                };
                let mut listener = tokio::select! {
                    () = shutdown.cancelled() => break 'connect,
                    connected = connected => match connected {
                        Ok(listener) => listener,
                        Err(error) => {
                            tracing::warn!(error = %error, ?channels, "cannot listen for wake-ups; trying again");
                            tokio::select! {
                                () = shutdown.cancelled() => break 'connect,
                                () = tokio::time::sleep(delay) => {}
                            }
                            delay = (delay * 2).min(RECONNECT_MAX);
                            continue 'connect;
                        }
                    },
                };
                delay = RECONNECT_FIRST;
                wake.listening.store(true, Ordering::SeqCst);
                wake.reconnected.notify_one();
                loop {
                    let received = tokio::select! {
                        () = shutdown.cancelled() => break 'connect,
                        received = listener.try_recv() => received,
                    };
                    if !matches!(received, Ok(Some(_))) {
                        wake.listening.store(false, Ordering::SeqCst);
                    }
                    match received {
                        Ok(Some(notification)) => {
                            if !own.contains(notification.payload()) {
                                wake.remote.notify_one();
                            }
                        }
                        Ok(None) => {
                            tracing::warn!(
                                ?channels,
                                "the wake-up connection was lost; reconnecting"
                            );
                            continue 'connect;
                        }
                        Err(error) => {
                            tracing::warn!(error = %error, ?channels, "the wake-up connection failed; reconnecting");
                            continue 'connect;
                        }
                    }
                }
            }
        }))
    }
}

const RECONNECT_FIRST: Duration = Duration::from_millis(500);
const RECONNECT_MAX: Duration = Duration::from_secs(30);

/// The channel on which `context`'s commits announce work to other processes.
pub fn channel(context: &str) -> String {
    format!("shop_wake_{context}")
}

/// Sends a wake-up on `channel` through `txn` (Postgres delivers it iff the transaction
/// commits); `sender` lets the sender's own process ignore it. Nothing on SQLite.
pub async fn notify<C: ConnectionTrait>(txn: &C, channel: &str, sender: &str) -> Result<(), DbErr> {
    if txn.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    txn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT pg_notify($1, $2)",
        [channel.into(), sender.into()],
    ))
    .await?;
    Ok(())
}

/// Converts a due time from the clock's time into the runtime's, for [`Wake::wait`]: a time
/// already past is now.
pub fn deadline_at(
    due: chrono::DateTime<chrono::Utc>,
    now: chrono::DateTime<chrono::Utc>,
) -> Instant {
    Instant::now() + (due - now).to_std().unwrap_or_default()
}

/// How a [`sweep`] loop is woken besides its own due times.
#[derive(Debug, Clone, Copy)]
pub struct SweepTimes {
    /// A wake-up from another process (a commit on the channel the loop listens to) means
    /// something may become due within this long (a lease, a provider's deadline): the loop
    /// runs a pass then, not at once and without a query now, in case that process dies
    /// before it finishes the work itself.
    pub remote_horizon: Duration,
    /// After a pass that failed, the next one runs this long after.
    pub after_error: Duration,
    /// A safety-net pass this often even when nothing wakes the loop; zero: none.
    pub safety_net: Duration,
}

/// Runs a sweep (orders' recovery, payments' reconciliation) until `shutdown`: a pass at
/// start, then one whenever `wake` is notified in process, after its listening connection
/// (re)connected, and when the due time the last pass returned comes. `pass` does the due
/// work and answers when the next piece of work it knows of becomes due (none: nothing
/// unfinished), so a loop with nothing unfinished waits without a query. A due time already
/// past (work that became due while the pass ran, or that it could not take) brings the next
/// pass `after_error` later, never at once, so work that stays due cannot spin the loop.
pub async fn sweep<E, F, Fut>(
    wake: &Wake,
    shutdown: &CancellationToken,
    clock: &dyn kernel::Clock,
    times: SweepTimes,
    mut pass: F,
) where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<chrono::DateTime<chrono::Utc>>, E>>,
{
    // Past the due time itself: the work becomes due strictly after it (a lease that ends at
    // t is free after t).
    const PAST: chrono::Duration = chrono::Duration::milliseconds(1);
    let mut run = true;
    let mut deadline: Option<Instant> = None;
    loop {
        if run {
            deadline = match pass().await {
                Ok(due) => due.map(|due| {
                    let now = clock.now();
                    if due < now {
                        Instant::now() + times.after_error
                    } else {
                        deadline_at(due + PAST, now)
                    }
                }),
                Err(error) => {
                    tracing::error!(error = %error, "sweep failed; trying again later");
                    Some(Instant::now() + times.after_error)
                }
            };
        }
        let mut until = deadline;
        if !times.safety_net.is_zero() {
            let net = Instant::now() + times.safety_net;
            until = Some(until.map_or(net, |at| at.min(net)));
        }
        match wake.wait(until, shutdown).await {
            Woken::Shutdown => break,
            Woken::Remote => {
                let by = Instant::now() + times.remote_horizon;
                deadline = Some(deadline.map_or(by, |at| at.min(by)));
                run = false;
            }
            Woken::Local | Woken::Reconnected | Woken::Deadline => run = true,
        }
    }
}
