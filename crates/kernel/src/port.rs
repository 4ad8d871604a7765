//! What every port says about its methods, as data a remote adapter can read.
//!
//! A port is a context's async trait (`CatalogApi`, `PaymentsApi`, ...). Rust cannot attach
//! data to a trait method, so each `-api` crate publishes a [`PortSpec`] beside its trait:
//! one [`MethodSpec`] per method, saying whether calling it twice with the same arguments
//! has the same effect as calling it once. Only such methods may be retried when a call
//! crosses a network and its answer is lost; a retry of anything else could do the work
//! twice. The architecture lint checks that a port's spec names exactly its trait's methods
//! (rule `port-spec`), so the spec cannot drift from the trait.

/// A port: which context serves it, its trait, the version of its wire contract, and its
/// methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortSpec {
    /// The serving context (`catalog`).
    pub context: &'static str,
    /// The trait's name (`CatalogApi`).
    pub trait_name: &'static str,
    /// The version of the port's wire contract: its DTOs and errors. An incompatible change
    /// publishes a new version (see `docs/CONTRACTS.md`).
    pub version: u32,
    pub methods: &'static [MethodSpec],
}

/// One method of a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodSpec {
    /// The method's name, exactly as in the trait.
    pub name: &'static str,
    /// Calling it again with the same arguments has no further effect and returns an
    /// equivalent answer, so a caller may retry it after a lost answer.
    pub idempotent: bool,
}

impl MethodSpec {
    /// A method that may be retried: a read, or a write keyed so that a repeat is a no-op.
    pub const fn idempotent(name: &'static str) -> Self {
        Self {
            name,
            idempotent: true,
        }
    }

    /// A method that must never be retried blindly: a repeat could do the work twice.
    pub const fn not_idempotent(name: &'static str) -> Self {
        Self {
            name,
            idempotent: false,
        }
    }
}

impl PortSpec {
    /// The spec of the method called `name`, if the port has one.
    pub fn method(&self, name: &str) -> Option<&MethodSpec> {
        self.methods.iter().find(|method| method.name == name)
    }

    /// Whether `name` may be retried; unknown methods may not.
    pub fn is_idempotent(&self, name: &str) -> bool {
        self.method(name).is_some_and(|method| method.idempotent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PORT: PortSpec = PortSpec {
        context: "example",
        trait_name: "ExampleApi",
        version: 1,
        methods: &[
            MethodSpec::idempotent("get"),
            MethodSpec::not_idempotent("append"),
        ],
    };

    #[test]
    fn only_methods_marked_idempotent_may_be_retried() {
        assert!(PORT.is_idempotent("get"));
        assert!(!PORT.is_idempotent("append"));
        assert!(!PORT.is_idempotent("unknown"));
        assert_eq!(PORT.method("append").map(|m| m.name), Some("append"));
    }
}
