//! Integration events: facts a context publishes for other contexts to react to.
//!
//! An event type lives in its publisher's `-api` crate and implements [`IntegrationEvent`].
//! On the wire (outbox rows, a broker) every event travels in the same [`EventEnvelope`], so
//! the delivery machinery never needs to know a context's types.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// An event's payload schema (`ToSchema`) is committed under `contracts/events/`, so that an
/// incompatible change is caught before it ships (see `docs/CONTRACTS.md`).
pub trait IntegrationEvent:
    Serialize + DeserializeOwned + ToSchema + Send + Sync + 'static
{
    /// The stable, versioned name consumers subscribe to, e.g. `auth.user_registered.v1`.
    /// Changing an event incompatibly means publishing a new name.
    const NAME: &'static str;

    /// The aggregate the event is about. Events of one aggregate are delivered in order.
    fn aggregate_id(&self) -> String;
}

/// An event as it is stored and transported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventEnvelope {
    pub id: Uuid,
    pub name: String,
    pub aggregate_id: String,
    pub occurred_at: DateTime<Utc>,
    pub payload: serde_json::Value,
}

#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("expected event {expected}, found {found}")]
    WrongName {
        expected: &'static str,
        found: String,
    },
    #[error("event payload does not match its schema")]
    Payload(#[source] serde_json::Error),
}

impl EventEnvelope {
    pub fn wrap<E: IntegrationEvent>(
        event: &E,
        occurred_at: DateTime<Utc>,
    ) -> Result<Self, EnvelopeError> {
        Ok(Self {
            id: Uuid::now_v7(),
            name: E::NAME.to_owned(),
            aggregate_id: event.aggregate_id(),
            occurred_at,
            payload: serde_json::to_value(event).map_err(EnvelopeError::Payload)?,
        })
    }

    pub fn is<E: IntegrationEvent>(&self) -> bool {
        self.name == E::NAME
    }

    pub fn decode<E: IntegrationEvent>(&self) -> Result<E, EnvelopeError> {
        if !self.is::<E>() {
            return Err(EnvelopeError::WrongName {
                expected: E::NAME,
                found: self.name.clone(),
            });
        }
        serde_json::from_value(self.payload.clone()).map_err(EnvelopeError::Payload)
    }
}
