//! Integration events between bounded contexts: at-least-once delivery, exactly-once effect.
//!
//! The moving parts, in the order an event travels:
//!
//! 1. [`Outbox::append`]: the publishing context writes the event into **its own** `outbox`
//!    table, in the same database transaction as the state change. Roll back, and the event
//!    never existed; commit, and it will be delivered, even if the process dies right after.
//! 2. The relay (inside [`Bus`]) claims due outbox rows (`FOR UPDATE SKIP LOCKED` on
//!    Postgres, so several `shop` processes can relay at once), hands each to every
//!    [`Consumer`] subscribed to its name, and marks it dispatched.
//! 3. [`Consumer::accept`] stores the event in the **consumer's own** `inbox`, keyed by
//!    (event id, consumer): a second delivery of the same event is a no-op.
//! 4. The consumer's processor claims due inbox rows the same way, a batch at a time, and
//!    runs its [`EventHandler`] for each inside a savepoint of the batch's transaction on the
//!    consumer's database, which also marks the row handled, so the handler's writes happen
//!    exactly once. A handler that fails is rolled back to its savepoint and its attempt
//!    counted; a batch whose commit fails is taken again one row per transaction, so only the
//!    event that made it fail counts an attempt.
//!
//! Nothing polls: [`Bus::spawn`] runs a pass when a commit wakes it (in process, or through
//! Postgres `LISTEN`/`NOTIFY` from other processes, `db_kit::wake`) and otherwise sleeps until
//! the next retry its last pass learnt of.
//! 5. Once it committed, the handler's [`EventHandler::after_commit`] does what is not in the
//!    database (sending the message the handler recorded), at least once; when it fails,
//!    it alone is retried, parked, and replayed.
//!
//! Events of one aggregate are relayed and handled in order: a row is only claimed when no
//! earlier row of the same aggregate is unfinished (pending, handled with its effects still
//! to run, or parked). A failing delivery, handler or effect is retried with exponential
//! backoff, then parked as `failed` with its error, listed by [`Bus::failed`], and holds
//! back the later events of its aggregate (in its publisher's outbox, or for its consumer)
//! until an operator replays it ([`Bus::retry`], [`Bus::retry_all`]) or gives it up
//! ([`Bus::discard`]: stored as `discarded`, never delivered). Finished and discarded rows
//! are purged after a retention period.
//!
//! In process the relay calls `Consumer::accept` directly. When a publisher and a consumer run
//! in different processes, the same two tables stay, and NATS JetStream sits between the relay
//! and `accept` ([`Broker`]): the relay publishes each event with its id as the message id, the
//! consumer's durable subscription stores it in the inbox and acknowledges it.

/// Events relayed out of a publisher's outbox, by publisher and outcome
/// (`dispatched`, `retry`, `parked`, and `waiting` while the broker cannot take them).
pub const RELAYED: &str = "shop_events_relayed_total";
/// Events handled from a consumer's inbox, by consumer and outcome (`done`, `retry`, `parked`).
pub const HANDLED: &str = "shop_events_handled_total";
/// Events written to an outbox, by publisher and event name (`orders.order_confirmed.v1`).
/// Counted as the row is written in the publisher's transaction, so an event whose
/// transaction then rolls back is counted too: rare (a failed commit), and the console's
/// rates (`/console`) read it as "events announced".
pub const WRITTEN: &str = "shop_events_written_total";
/// Events a consumer finished, by consumer, event name and outcome (`done`, `retry`,
/// `parked`): [`HANDLED`] by event, for the console's flows from publisher to consumer.
pub const CONSUMED: &str = "shop_events_consumed_total";
/// Events parked now, by owner (publisher or consumer): set by [`Bus::record_parked`].
pub const PARKED: &str = "shop_events_parked";

mod backoff;
mod broker;
mod bus;
mod consumer;
pub mod migration;
mod outbox;
mod store;

pub use broker::{Broker, BrokerConfig, BrokerError, PUBLISHED, Published, RECEIVED, redact_url};
pub use bus::{
    Bus, BusBuilder, BusConfig, EventFilter, FailedEvent, ParkedStatus, Progress, Sleeping, Stage,
};
pub use consumer::{Consumer, EventHandler, HandlerError};
pub use outbox::Outbox;
