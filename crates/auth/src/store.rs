//! The `users` table, in auth's own schema, and every query over it. The rest of auth never
//! writes SQL: it calls these functions (on the connection or a transaction).

use auth_api::{Role, User};
use chrono::{DateTime, Utc};
use kernel::UserId;
use sea_orm::entity::prelude::*;
use sea_orm::{ActiveModelTrait, ActiveValue::Set};

pub mod users {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "users")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        #[sea_orm(unique)]
        pub email: String,
        pub display_name: String,
        pub password_hash: String,
        pub role: String,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

impl users::Model {
    pub fn role(&self) -> Role {
        // The column has a CHECK constraint; anything else is a corrupted row, and treating
        // it as the least privileged role is the safe reading.
        self.role.parse().unwrap_or(Role::Customer)
    }

    pub fn to_user(&self) -> User {
        User {
            id: UserId::from_uuid(self.id),
            email: self.email.clone(),
            display_name: self.display_name.clone(),
            role: self.role(),
            created_at: self.created_at,
        }
    }
}

pub async fn find_by_email<C: ConnectionTrait>(
    db: &C,
    email: &str,
) -> Result<Option<users::Model>, DbErr> {
    users::Entity::find()
        .filter(users::Column::Email.eq(email))
        .one(db)
        .await
}

pub async fn find_by_id<C: ConnectionTrait>(
    db: &C,
    id: UserId,
) -> Result<Option<users::Model>, DbErr> {
    users::Entity::find_by_id(id.as_uuid()).one(db).await
}

/// A user to be stored; the password is already hashed.
#[derive(Debug)]
pub struct NewUser {
    pub email: String,
    pub display_name: String,
    pub password_hash: String,
    pub role: Role,
}

/// Inserts a user. A taken email is a unique violation, which the caller turns into its
/// own error through `db_kit::is_unique_violation`.
pub async fn insert_user<C: ConnectionTrait>(
    db: &C,
    user: NewUser,
    now: DateTime<Utc>,
) -> Result<users::Model, DbErr> {
    let role: &'static str = user.role.into();
    users::ActiveModel {
        id: Set(UserId::new().as_uuid()),
        email: Set(user.email),
        display_name: Set(user.display_name),
        password_hash: Set(user.password_hash),
        role: Set(role.to_owned()),
        created_at: Set(now),
    }
    .insert(db)
    .await
}
