//! Ports across processes: every `-api` trait as an HTTP/JSON client and server.
//!
//! A context's callers hold an `Arc<dyn CatalogApi>` and never learn where the catalog runs.
//! This crate makes that true. For every port trait it generates (see `build.rs`, which reads
//! the traits, and [`port!`], which expands them) a module named after the context with:
//!
//! - `Client`: implements the trait over HTTP. Each call is a `POST` to
//!   `/internal/<context>/v<version>/<method>` on the callee's internal listener ([`wire`]),
//!   under a deadline that travels with it, retried only if the port's [`PortSpec`] marks the
//!   method idempotent (with backoff, within a retry budget), behind one circuit breaker per
//!   callee ([`Transport`]). Whatever goes wrong on the way reaches the caller as the port's
//!   own `Unavailable` error, which callers handle already.
//! - `server(api)`: the [`PortServer`] that answers those calls by calling a local
//!   implementation, stopping the work when the caller's deadline passes.
//! - `Local`: the in-process adapter. Same trait, same span and metrics ([`Meter`]) as the
//!   client, placement `local`: the boundary is visible even when it is a function call.
//! - `args`: each method's arguments as they travel, one struct per method.
//!
//! The `-api` crates know none of this: they stay plain data and traits.
//!
//! [`PortSpec`]: kernel::PortSpec

pub mod docs;
pub mod meter;
pub mod propagation;
mod server;
mod transport;
pub mod wire;

pub use meter::{Meter, Placement};
pub use server::{
    InternalAuth, PortServer, Served, ServiceToken, configure as internal_routes, current_deadline,
};
pub use transport::{BreakerPolicy, CallPolicy, Endpoint, Transport};

/// What the generated code names; not part of the crate's interface.
#[doc(hidden)]
pub mod __private {
    pub use async_trait::async_trait;
    pub use serde::{Deserialize, Serialize};
}

/// Expands one port: `mod <context> for ::<api crate>::<Trait> { spec, error, methods }`.
///
/// `build.rs` writes one invocation per `-api` crate, copying each method out of the trait;
/// nobody writes an invocation by hand. Every method becomes an `args` struct, a client
/// method, a server route and an in-process forwarding method, all from the same line.
macro_rules! port {
    (
        mod $module:ident for :: $krate:ident :: $api:ident {
            spec: $spec:path,
            error: $error:ty,
            $( fn $method:ident ( $( $arg:ident : $ty:ty ),* ) -> $ok:ty ; )*
        }
    ) => {
        #[doc = concat!("The `", stringify!($api), "` port of the `", stringify!($module), "` context, generated from `", stringify!($krate), "`.")]
        pub mod $module {
            use std::sync::Arc;

            use $crate::__private::{async_trait, Deserialize, Serialize};
            use $crate::{Meter, Placement, PortServer, Transport};

            #[doc = concat!("The trait (`", stringify!($krate), "::", stringify!($api), "`).")]
            pub use ::$krate::$api as Api;

            /// The port's spec: its context, version and which methods may be retried.
            pub const PORT: &::kernel::PortSpec = &$spec;

            /// Each method's arguments, as they travel: one struct per method, named after it.
            pub mod args {
                #[allow(unused_imports)]
                use super::{Deserialize, Serialize};
                $(
                    #[doc = concat!("The arguments of `", stringify!($method), "`.")]
                    #[allow(non_camel_case_types)]
                    #[derive(Serialize, Deserialize)]
                    pub struct $method {
                        $( pub $arg: $ty, )*
                    }

                    // Arguments may hold secrets (a token to verify): their values never
                    // reach a log.
                    impl std::fmt::Debug for $method {
                        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                            f.debug_struct(stringify!($method)).finish_non_exhaustive()
                        }
                    }
                )*
            }

            #[doc = concat!("`", stringify!($api), "` over HTTP: every call goes to the `", stringify!($module), "` process.")]
            #[derive(Debug, Clone)]
            pub struct Client {
                transport: Transport,
            }

            impl Client {
                /// A client for `caller` (the calling context, for metrics and logs).
                pub fn new(
                    caller: &'static str,
                    endpoint: $crate::Endpoint,
                    policy: $crate::CallPolicy,
                ) -> Self {
                    Self {
                        transport: Transport::new(PORT, caller, endpoint, policy),
                    }
                }

                /// The transport, for readiness probes and the breaker's state.
                pub fn transport(&self) -> &Transport {
                    &self.transport
                }
            }

            #[async_trait]
            impl Api for Client {
                $(
                    async fn $method(&self, $( $arg: $ty ),*) -> Result<$ok, $error> {
                        self.transport
                            .call(stringify!($method), &args::$method { $( $arg ),* })
                            .await
                    }
                )*
            }

            #[doc = concat!("`", stringify!($api), "` in this process: forwards every call to the context's implementation inside a boundary span and metrics.")]
            #[derive(Clone)]
            pub struct Local {
                inner: Arc<dyn Api>,
                meter: Meter,
            }

            impl Local {
                /// Wraps `inner` for `caller`.
                pub fn new(caller: &'static str, inner: Arc<dyn Api>) -> Self {
                    Self {
                        inner,
                        meter: Meter::new(caller, PORT.context, Placement::Local),
                    }
                }
            }

            impl std::fmt::Debug for Local {
                fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.debug_struct("Local").field("meter", &self.meter).finish_non_exhaustive()
                }
            }

            #[async_trait]
            impl Api for Local {
                $(
                    async fn $method(&self, $( $arg: $ty ),*) -> Result<$ok, $error> {
                        self.meter
                            .observe(stringify!($method), self.inner.$method($( $arg ),*))
                            .await
                    }
                )*
            }

            #[doc = concat!("Serves `", stringify!($api), "` on the internal listener, by calling `api`.")]
            pub fn server(api: Arc<dyn Api>) -> PortServer {
                PortServer::new(PORT)
                    $(
                        .method(stringify!($method), {
                            let api = api.clone();
                            move |args: args::$method| {
                                let api = api.clone();
                                async move { api.$method($( args.$arg ),*).await }
                            }
                        })
                    )*
            }
        }
    };
}

include!(concat!(env!("OUT_DIR"), "/ports.rs"));
