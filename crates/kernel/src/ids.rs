//! Typed identifiers shared across context boundaries.
//!
//! A context refers to another context's aggregate only by its id; these newtypes keep an
//! `OrderId` from being passed where a `ProductId` is expected. Ids are UUIDv7, so they sort
//! by creation time, which keeps database indexes compact.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

macro_rules! typed_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
        )]
        #[serde(transparent)]
        #[schema(value_type = String, format = Uuid)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh, time-ordered id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl From<Uuid> for $name {
            fn from(uuid: Uuid) -> Self {
                Self(uuid)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Self {
                id.0
            }
        }
    };
}

typed_id!(
    /// A user, as auth knows it. Other contexts keep it to say "this belongs to that user".
    UserId
);
typed_id!(
    /// A product in the catalog.
    ProductId
);
typed_id!(
    /// An order. Catalog keys stock reservations by it, payments keys charges by it.
    OrderId
);
typed_id!(
    /// A payment (a charge and its refunds).
    PaymentId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_strings_and_json() {
        let id = OrderId::new();
        assert_eq!(id.to_string().parse::<OrderId>().ok(), Some(id));
        let json = serde_json::to_string(&id).expect("serialize");
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<OrderId>(&json).ok(), Some(id));
    }

    #[test]
    fn new_ids_are_time_ordered() {
        let first = ProductId::new();
        let second = ProductId::new();
        assert!(first < second);
    }
}
