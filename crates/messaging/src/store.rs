//! The `outbox` and `inbox` tables. Every context that publishes has an `outbox`, every
//! context that consumes has an `inbox`, each in the context's own schema.

use sea_orm::sea_query::{
    Alias, CommonTableExpression, Expr, Func, InsertStatement, Query, SelectStatement,
    UpdateStatement, WithClause, WithQuery,
};
use sea_orm::{ActiveModelTrait, ActiveValue, Iterable};

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

/// The claims' conditions, written as SQL literals rather than bound parameters, so that
/// Postgres can prove they imply the predicates of the partial indexes of
/// `migration::v4` and read only the rows that matter, however many finished rows the table
/// keeps: the rows a claim may take (`*_CLAIMABLE`, oldest first), and the unfinished rows
/// that hold back the later ones of their aggregate (`*_UNFINISHED`: pending and failed in
/// the outbox; pending, handled with its effects still to run, and failed in an inbox).
///
/// The earlier rows are asked for by these exact statuses, and a status added later must
/// join them (and the index predicates, in a new migration) to hold back. The outbox once
/// asked `NOT IN` the finished statuses, so that no status index could serve that lookup: a
/// plan that scanned the `(status, next_attempt_at)` index per candidate had cost n² per
/// claim (18 s at 10,000 pending rows). The partial index makes the lookup small whatever
/// plan is taken: it holds the unfinished rows only.
pub(crate) const INBOX_CLAIMABLE: &str = "\"inbox\".\"status\" IN ('pending', 'handled')";
pub(crate) const INBOX_UNFINISHED: &str =
    "\"earlier\".\"status\" IN ('pending', 'handled', 'failed')";
pub(crate) const OUTBOX_UNFINISHED: &str = "\"earlier\".\"status\" IN ('pending', 'failed')";
/// Makes a claim's "is an earlier row of this aggregate unfinished?" subquery a lookup per
/// candidate on Postgres, through the `(.., aggregate_id, seq)` index of the unfinished rows.
///
/// Postgres turns `NOT EXISTS` into an anti-join, and with statistics from a young table it
/// ran that join as a scan of every unfinished row of the consumer per candidate (14 ms per
/// claim with a few hundred in flight). `OFFSET 0` keeps the subquery from being pulled up
/// into a join, so it runs as a subplan with the candidate's aggregate as its key: a claim
/// costs one index probe per candidate, whatever the statistics say. (SQLite plans the
/// subquery per row already, and wants no `OFFSET` without a `LIMIT`.)
pub(crate) fn look_up_per_row(subquery: &mut sea_orm::sea_query::SelectStatement) {
    subquery.offset(0);
}

pub(crate) const OUTBOX_CLAIMABLE: &str = "\"outbox\".\"status\" = 'pending'";

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

/// The name the change takes inside [`change_then_append`]'s statement.
const CHANGED: &str = "changed";
/// The name the outbox insert takes inside [`change_then_append`]'s statement.
const APPENDED: &str = "appended";

/// `change` (an `UPDATE` of the publisher's own rows) and the insert of `row` into the
/// outbox as one Postgres statement: the row is inserted only if the change touched a row,
/// and `wake` (channel, sender) adds a `pg_notify` sent only then. The statement returns one
/// row per event written, zero or one (the change is meant to touch one row at most; the
/// insert takes the first):
///
/// ```sql
/// WITH "changed" AS (UPDATE .. WHERE .. RETURNING 1),
///      "appended" AS (INSERT INTO "outbox" (..) SELECT $.. FROM "changed" LIMIT 1 RETURNING "seq")
/// SELECT "appended"."seq"[, CAST(pg_notify($.., $..) AS text)] FROM "appended"
/// ```
///
/// Postgres runs both data-modifying parts in the statement's one snapshot and transaction:
/// an autocommit statement is the change and its event together or neither.
pub(crate) fn change_then_append(
    mut change: UpdateStatement,
    row: &outbox::ActiveModel,
    wake: Option<(&str, &str)>,
) -> WithQuery {
    change.returning(Query::returning().expr(Expr::cust("1")));
    let (columns, values) = outbox_values(row);
    let mut values_if_changed = Query::select();
    values_if_changed.exprs(values).from(CHANGED).limit(1);
    let mut insert = Query::insert();
    insert
        .into_table(outbox::Entity)
        .columns(columns)
        .select_from(values_if_changed)
        .expect("one value per column, both taken from the same row");
    let mut with = WithClause::new();
    with.cte(
        CommonTableExpression::new()
            .query(change)
            .table_name(CHANGED)
            .to_owned(),
    );
    appended(with, insert, wake)
}

/// `rows` (the `INSERT`s of a change that creates rows) and the insert of `row` into the
/// outbox as one Postgres statement, with `wake` as in [`change_then_append`]:
///
/// ```sql
/// WITH "inserted_1" AS (INSERT INTO ..), "inserted_2" AS (INSERT INTO ..),
///      "appended" AS (INSERT INTO "outbox" (..) VALUES ($..) RETURNING "seq")
/// SELECT "appended"."seq"[, CAST(pg_notify($.., $..) AS text)] FROM "appended"
/// ```
///
/// Every part runs to completion, or the statement fails as a whole (a unique violation,
/// say); the rows' foreign keys are checked at its end, so a row may name one inserted
/// before it in `rows`.
pub(crate) fn rows_then_append(
    rows: Vec<InsertStatement>,
    row: &outbox::ActiveModel,
    wake: Option<(&str, &str)>,
) -> WithQuery {
    let mut with = WithClause::new();
    for (n, insert) in rows.into_iter().enumerate() {
        with.cte(
            CommonTableExpression::new()
                .query(insert)
                .table_name(Alias::new(format!("inserted_{}", n + 1)))
                .to_owned(),
        );
    }
    let (columns, values) = outbox_values(row);
    let mut insert = Query::insert();
    insert
        .into_table(outbox::Entity)
        .columns(columns)
        .values(values)
        .expect("one value per column, both taken from the same row");
    appended(with, insert, wake)
}

/// The columns `row` sets, and their values.
fn outbox_values(row: &outbox::ActiveModel) -> (Vec<outbox::Column>, Vec<Expr>) {
    outbox::Column::iter()
        .filter_map(|column| match row.get(column) {
            ActiveValue::Set(value) | ActiveValue::Unchanged(value) => {
                Some((column, Expr::val(value)))
            }
            ActiveValue::NotSet => None,
        })
        .unzip()
}

/// Ends `with` with the outbox `insert`, named [`APPENDED`], and selects what it wrote,
/// sending the wake-up per row written.
fn appended(
    mut with: WithClause,
    mut insert: InsertStatement,
    wake: Option<(&str, &str)>,
) -> WithQuery {
    insert.returning_col(outbox::Column::Seq);
    with.cte(
        CommonTableExpression::new()
            .query(insert)
            .table_name(APPENDED)
            .to_owned(),
    );
    let mut written: SelectStatement = Query::select();
    written
        .column((APPENDED, outbox::Column::Seq))
        .from(APPENDED);
    if let Some((channel, sender)) = wake {
        written.expr(Func::cast_as(
            Func::cust("pg_notify").arg(channel).arg(sender),
            "text",
        ));
    }
    with.query(written)
}

#[cfg(test)]
mod literals {
    use super::*;

    /// The claims' SQL literals name the same statuses as the constants the rest of the
    /// crate writes.
    #[test]
    fn the_claim_literals_name_the_stored_statuses() {
        assert_eq!(
            INBOX_CLAIMABLE,
            format!("\"inbox\".\"status\" IN ('{PENDING}', '{HANDLED}')")
        );
        assert_eq!(
            INBOX_UNFINISHED,
            format!("\"earlier\".\"status\" IN ('{PENDING}', '{HANDLED}', '{FAILED}')")
        );
        assert_eq!(
            OUTBOX_CLAIMABLE,
            format!("\"outbox\".\"status\" = '{PENDING}'")
        );
        assert_eq!(
            OUTBOX_UNFINISHED,
            format!("\"earlier\".\"status\" IN ('{PENDING}', '{FAILED}')")
        );
    }
}

#[cfg(test)]
mod one_statement {
    use sea_orm::sea_query::{Expr, ExprTrait, Query};
    use sea_orm::{ActiveValue::Set, DbBackend};

    use super::*;

    /// The one statement a change and its event make on Postgres: the change returns a row
    /// only if it applied, the insert takes its values from that row (so no change, no
    /// event), and the wake-up is sent per event written. Parameters are numbered across the
    /// whole statement.
    #[test]
    fn the_event_is_inserted_only_from_the_changed_row() {
        let mut change = Query::update();
        change
            .table("orders")
            .value("status", "confirmed")
            .and_where(Expr::col("id").eq(7));
        let row = outbox::ActiveModel {
            name: Set("OrderConfirmed".to_owned()),
            status: Set(PENDING.to_owned()),
            ..Default::default()
        };
        let statement = DbBackend::Postgres.build(&change_then_append(
            change,
            &row,
            Some(("shop_wake_orders", "sender")),
        ));
        assert_eq!(
            statement.sql,
            "WITH \"changed\" AS (UPDATE \"orders\" SET \"status\" = $1 WHERE \"id\" = $2 RETURNING 1) , \
             \"appended\" AS (INSERT INTO \"outbox\" (\"name\", \"status\") SELECT $3, $4 FROM \"changed\" LIMIT $5 RETURNING \"seq\") \
             SELECT \"appended\".\"seq\", CAST(pg_notify($6, $7) AS text) FROM \"appended\""
        );
    }

    /// The rows of a change that creates them and its event, as one statement: every part
    /// runs, in order, and no wake-up is sent for an event nobody takes.
    #[test]
    fn rows_and_their_event_are_one_statement() {
        let mut order = Query::insert();
        order
            .into_table("orders")
            .columns(["id"])
            .values([7.into()])
            .expect("values");
        let mut lines = Query::insert();
        lines
            .into_table("order_lines")
            .columns(["order_id", "line_no"])
            .values([7.into(), 0.into()])
            .expect("values");
        let row = outbox::ActiveModel {
            name: Set("OrderPlaced".to_owned()),
            status: Set(DISPATCHED.to_owned()),
            ..Default::default()
        };
        let statement =
            DbBackend::Postgres.build(&rows_then_append(vec![order, lines], &row, None));
        assert_eq!(
            statement.sql,
            "WITH \"inserted_1\" AS (INSERT INTO \"orders\" (\"id\") VALUES ($1)) , \
             \"inserted_2\" AS (INSERT INTO \"order_lines\" (\"order_id\", \"line_no\") VALUES ($2, $3)) , \
             \"appended\" AS (INSERT INTO \"outbox\" (\"name\", \"status\") VALUES ($4, $5) RETURNING \"seq\") \
             SELECT \"appended\".\"seq\" FROM \"appended\""
        );
    }
}
