//! The grants a token carries, as a small bitset ([`Permissions`]).
//!
//! Granted by token claims, access tokens and the configuration alike, so it
//! lives apart from the JWT code and depends on none of it.

use std::fmt;

/// The capabilities a token grants, as a small bitset.
///
/// Exists so permission checks on the hot path are a single AND.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Permissions(u8);

impl Permissions {
    /// May publish to granted channels.
    pub const PUBLISH: Self = Self(1);
    /// May subscribe to granted channels.
    pub const SUBSCRIBE: Self = Self(2);
    /// May see and announce presence on granted channels.
    pub const PRESENCE: Self = Self(4);
    /// May send direct (signalling) messages to peers.
    pub const SEND: Self = Self(8);
    /// No permissions.
    pub const NONE: Self = Self(0);
    /// Every permission.
    pub const ALL: Self = Self(15);

    const NAMED: [(Self, &'static str); 4] = [
        (Self::PUBLISH, "publish"),
        (Self::SUBSCRIBE, "subscribe"),
        (Self::PRESENCE, "presence"),
        (Self::SEND, "send"),
    ];

    /// True if every permission in `other` is present in `self`.
    ///
    /// Exists for authorization checks.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// True if no permission is set.
    ///
    /// Exists to spot tokens that grant nothing.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The union of two permission sets.
    ///
    /// Exists to build sets without exposing the bits.
    #[must_use]
    pub fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// The permission with this lowercase name (`"publish"` …), if any.
    ///
    /// Exists for parsing claims and configuration.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::NAMED
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(p, _)| *p)
    }

    /// The names of the permissions in this set, in a fixed order.
    ///
    /// Exists for logs and for echoing grants back to clients.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Self::NAMED
            .into_iter()
            .filter(move |(p, _)| self.contains(*p))
            .map(|(_, n)| n)
    }
}

impl std::ops::BitOr for Permissions {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        self.union(rhs)
    }
}

impl fmt::Debug for Permissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Permissions(")?;
        for (i, name) in self.names().enumerate() {
            if i > 0 {
                f.write_str(" | ")?;
            }
            f.write_str(name)?;
        }
        f.write_str(")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_bitset() {
        assert!(Permissions::ALL.contains(Permissions::SEND | Permissions::PUBLISH));
        assert!(!Permissions::PUBLISH.contains(Permissions::SUBSCRIBE));
        assert!(Permissions::NONE.is_empty());
        assert!(Permissions::PUBLISH.contains(Permissions::NONE));
        assert_eq!(
            format!("{:?}", Permissions::PUBLISH | Permissions::PRESENCE),
            "Permissions(publish | presence)"
        );
        assert_eq!(format!("{:?}", Permissions::NONE), "Permissions()");
        assert_eq!(Permissions::ALL.names().count(), 4);
        assert_eq!(Permissions::from_name("send"), Some(Permissions::SEND));
        assert_eq!(Permissions::from_name("SEND"), None);
    }
}
