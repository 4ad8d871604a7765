//! The `outbox` and `inbox` tables. Every context that publishes has an `outbox`, every
//! context that consumes has an `inbox`, each in the context's own schema.

/// Waiting to be relayed (outbox) or handled (inbox), possibly after a failed attempt.
pub(crate) const PENDING: &str = "pending";
/// Relayed to every subscribed consumer (outbox).
pub(crate) const DISPATCHED: &str = "dispatched";
/// Its handler's transaction committed; the effects after the commit are still to run
/// (inbox).
pub(crate) const HANDLED: &str = "handled";
/// Handled, effects included (inbox).
pub(crate) const DONE: &str = "done";
/// Parked after its last allowed attempt, until an operator retries or discards it.
pub(crate) const FAILED: &str = "failed";
/// Given up by an operator: never delivered or handled, kept (and listed) until purged.
pub(crate) const DISCARDED: &str = "discarded";

/// The statuses of an outbox row that no longer hold back the later rows of its aggregate.
/// Every other status (pending, failed) does: events of one aggregate leave in order, so a
/// parked one stops the rest until it is retried.
///
/// The relay asks "is an earlier row of this aggregate unfinished?" as `status NOT IN` these
/// rather than `status IN` the others, because Postgres cannot answer a `NOT IN` from the
/// `(status, next_attempt_at)` index. With `IN`, statistics taken while hardly any row was
/// pending (any quiet hour) let the planner scan that index for every candidate row, so a
/// backlog of n pending rows cost n² comparisons per claim (18 s at 10,000 in a 210,000-row
/// outbox) until the table was analyzed again; with `NOT IN` it looks each row's aggregate up
/// in `(aggregate_id, seq)` (50 ms there). A status added later holds back by default.
pub(crate) const OUTBOX_FINISHED: [&str; 2] = [DISPATCHED, DISCARDED];

/// The statuses of a consumer's inbox row that hold back the later rows of its aggregate, its
/// effects after the commit included.
pub(crate) const INBOX_BLOCKING: [&str; 3] = [PENDING, HANDLED, FAILED];

pub(crate) mod outbox {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "outbox")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub seq: i64,
        #[sea_orm(unique)]
        pub id: Uuid,
        pub name: String,
        pub aggregate_id: String,
        pub payload: String,
        pub occurred_at: DateTimeUtc,
        pub status: String,
        pub attempts: i32,
        pub next_attempt_at: DateTimeUtc,
        pub last_error: Option<String>,
        /// When the row left the outbox: dispatched, or discarded by an operator.
        pub dispatched_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod inbox {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "inbox")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub seq: i64,
        /// This delivery's own id, for the admin endpoints.
        #[sea_orm(unique)]
        pub id: Uuid,
        pub event_id: Uuid,
        pub consumer: String,
        pub name: String,
        pub aggregate_id: String,
        pub payload: String,
        pub occurred_at: DateTimeUtc,
        pub status: String,
        pub attempts: i32,
        pub next_attempt_at: DateTimeUtc,
        pub last_error: Option<String>,
        pub received_at: DateTimeUtc,
        /// When the handler's transaction committed (`migration::v2`). Set, the row's
        /// handler never runs again: a retry runs only its effects after the commit.
        pub handled_at: Option<DateTimeUtc>,
        /// When the row was finished with: done, or discarded by an operator.
        pub processed_at: Option<DateTimeUtc>,
        /// The event's sequence in its publisher's outbox (`migration::v3`): an
        /// aggregate's events are handled in this order. `None` for rows stored before it.
        pub source_seq: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

use kernel::EventEnvelope;
use sea_orm::DbErr;

pub(crate) fn envelope(
    id: uuid::Uuid,
    name: &str,
    aggregate_id: &str,
    payload: &str,
    occurred_at: chrono::DateTime<chrono::Utc>,
) -> Result<EventEnvelope, DbErr> {
    Ok(EventEnvelope {
        id,
        name: name.to_owned(),
        aggregate_id: aggregate_id.to_owned(),
        occurred_at,
        payload: serde_json::from_str(payload).map_err(|error| DbErr::Json(error.to_string()))?,
    })
}
