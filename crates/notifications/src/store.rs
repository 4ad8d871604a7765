//! Notifications' tables, in notifications' own schema, and every query over them. Its
//! `inbox` table belongs to `messaging`.
//!
//! Every function takes any connection, so the event handler can run them on the transaction
//! it was given (on SQLite that transaction holds the context's only connection).

use chrono::{DateTime, Utc};
use kernel::{Page, PageRequest, UserId};
use notifications_api::{Channel, Notification, NotificationKind};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ActiveValue::Set, QueryOrder};

use crate::domain::Recipient;
use crate::sender::OutgoingMessage;

pub mod recipients {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "recipients")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: Uuid,
        pub email: String,
        pub display_name: String,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod notifications {
    use sea_orm::entity::prelude::*;

    /// One message to one recipient. `(event_id, recipient_id)` is unique. Recorded when the
    /// event is handled, `sent_at` empty; `sent_at` is set once the message left.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "notifications")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub event_id: Uuid,
        pub recipient_id: Uuid,
        pub kind: String,
        pub channel: String,
        pub address: String,
        pub subject: String,
        pub body: String,
        pub created_at: DateTimeUtc,
        pub sent_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Creates the recipient or replaces its address and name.
pub async fn upsert_recipient<C: ConnectionTrait>(
    db: &C,
    recipient: &Recipient,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    recipients::Entity::insert(recipients::ActiveModel {
        user_id: Set(recipient.user_id.as_uuid()),
        email: Set(recipient.email.clone()),
        display_name: Set(recipient.display_name.clone()),
        updated_at: Set(now),
    })
    .on_conflict(
        OnConflict::column(recipients::Column::UserId)
            .update_columns([
                recipients::Column::Email,
                recipients::Column::DisplayName,
                recipients::Column::UpdatedAt,
            ])
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(())
}

pub async fn find_recipient<C: ConnectionTrait>(
    db: &C,
    user_id: UserId,
) -> Result<Option<Recipient>, DbErr> {
    Ok(recipients::Entity::find_by_id(user_id.as_uuid())
        .one(db)
        .await?
        .map(|row| Recipient {
            user_id: UserId::from_uuid(row.user_id),
            email: row.email,
            display_name: row.display_name,
        }))
}

/// A rendered message, to be recorded before it is sent.
#[derive(Debug)]
pub struct NewNotification {
    pub id: Uuid,
    pub event_id: Uuid,
    pub recipient_id: UserId,
    pub kind: NotificationKind,
    pub channel: Channel,
    pub address: String,
    pub subject: String,
    pub body: String,
}

/// Stores a message, not sent yet; returns false when (event, recipient) already had one.
///
/// `ON CONFLICT DO NOTHING` rather than catching the unique violation: on Postgres a failed
/// statement aborts the whole transaction, and the handler's transaction must still commit
/// (with the inbox row marked handled) when the message turns out to exist already.
pub async fn insert_notification<C: ConnectionTrait>(
    db: &C,
    message: NewNotification,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let kind: &'static str = message.kind.into();
    let channel: &'static str = message.channel.into();
    let row = notifications::ActiveModel {
        id: Set(message.id),
        event_id: Set(message.event_id),
        recipient_id: Set(message.recipient_id.as_uuid()),
        kind: Set(kind.to_owned()),
        channel: Set(channel.to_owned()),
        address: Set(message.address),
        subject: Set(message.subject),
        body: Set(message.body),
        created_at: Set(now),
        sent_at: Set(None),
    };
    let inserted = notifications::Entity::insert(row)
        .on_conflict(OnConflict::new().do_nothing().to_owned())
        .try_insert()
        .exec_without_returning(db)
        .await?;
    Ok(matches!(inserted, sea_orm::TryInsertResult::Inserted(rows) if rows > 0))
}

/// `event`'s notifications that are recorded but not sent yet, as they are to be sent:
/// exactly as stored, so that every attempt sends the same message.
pub async fn unsent_messages<C: ConnectionTrait>(
    db: &C,
    event_id: Uuid,
) -> Result<Vec<OutgoingMessage>, DbErr> {
    Ok(notifications::Entity::find()
        .filter(notifications::Column::EventId.eq(event_id))
        .filter(notifications::Column::SentAt.is_null())
        .order_by_asc(notifications::Column::CreatedAt)
        .order_by_asc(notifications::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(|row| OutgoingMessage {
            id: row.id,
            to: row.address,
            subject: row.subject,
            body: row.body,
        })
        .collect())
}

/// Notes that the messages `ids` were sent (the first time, for any sent again): one
/// statement for a batch of events' messages.
pub async fn mark_sent<C: ConnectionTrait>(
    db: &C,
    ids: &[Uuid],
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    notifications::Entity::update_many()
        .col_expr(notifications::Column::SentAt, Expr::value(now))
        .filter(notifications::Column::Id.is_in(ids.iter().copied()))
        .filter(notifications::Column::SentAt.is_null())
        .exec(db)
        .await?;
    Ok(())
}

pub fn to_notification(row: notifications::Model) -> Result<Notification, DbErr> {
    let kind = row
        .kind
        .parse()
        .map_err(|_| DbErr::Type(format!("unknown notification kind {:?}", row.kind)))?;
    let channel = row
        .channel
        .parse()
        .map_err(|_| DbErr::Type(format!("unknown channel {:?}", row.channel)))?;
    Ok(Notification {
        id: row.id,
        kind,
        channel,
        to: row.address,
        subject: row.subject,
        body: row.body,
        created_at: row.created_at,
        sent_at: row.sent_at,
    })
}

/// `recipient`'s messages, newest first (ties broken by id, so pages never overlap).
pub async fn list_notifications<C: ConnectionTrait>(
    db: &C,
    recipient: UserId,
    page: PageRequest,
) -> Result<Page<Notification>, DbErr> {
    let select = notifications::Entity::find()
        .filter(notifications::Column::RecipientId.eq(recipient.as_uuid()))
        .order_by_desc(notifications::Column::CreatedAt)
        .order_by_desc(notifications::Column::Id);
    db_kit::fetch_page(db, select, page)
        .await?
        .try_map(to_notification)
}
