//! The shared kernel: the few types every bounded context agrees on.
//!
//! Everything here is part of every context's published language, so it changes rarely and
//! carries no behaviour that belongs to one context. It depends only on plain data crates:
//! no database, no web framework, no runtime. A context's own concepts (a product, an order,
//! a credential) never live here; only the identifiers other contexts need to refer to them.

pub mod clock;
pub mod error;
pub mod event;
pub mod idempotency;
pub mod ids;
pub mod money;
pub mod paging;
pub mod port;
pub mod text;
pub mod wire;

pub use clock::{Clock, ManualClock, SystemClock, stored_precision};
pub use error::{ContextError, ErrorKind, FieldError, FieldErrors};
pub use event::{EnvelopeError, EventEnvelope, IntegrationEvent};
pub use idempotency::{IdempotencyKey, IdempotencyKeyError};
pub use ids::{OrderId, PaymentId, ProductId, UserId};
pub use money::{Currency, Money, MoneyError};
pub use paging::{Page, PageRequest, PagingError};
pub use port::{MethodSpec, PortSpec};
