//! Every port's documentation, read out of its trait by `build.rs`: the trait's and each
//! method's doc comment and signature. The console's context pages and the canvases under
//! `docs/contexts/` show them, so what they say about a port is what its trait says.

/// A port's documentation.
#[derive(Debug, Clone, Copy)]
pub struct PortDocs {
    /// The serving context (`catalog`).
    pub context: &'static str,
    /// The trait's name (`CatalogApi`).
    pub trait_name: &'static str,
    /// The trait's doc comment.
    pub doc: &'static str,
    /// Its methods, in the trait's order.
    pub methods: &'static [MethodDocs],
}

/// One method of a port.
#[derive(Debug, Clone, Copy)]
pub struct MethodDocs {
    pub name: &'static str,
    /// `reserve_stock(order_id: OrderId, lines: Vec<StockLine>) -> Reservation`: the
    /// arguments and the success type, as written in the trait.
    pub signature: &'static str,
    pub doc: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/docs.rs"));

/// The documentation of `context`'s port.
pub fn port(context: &str) -> Option<&'static PortDocs> {
    PORTS.iter().find(|port| port.context == context)
}
