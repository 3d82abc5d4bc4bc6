//! Resource identifiers: a two-letter prefix naming the kind of resource, then 32 lowercase hex digits.
//!
//! Each kind is its own type, so a function that takes a [`ConversationSid`] cannot be handed a message's SID.
//! Values are built only by [`parse`](ConversationSid::parse) (validating) or `generate` (random).

use std::fmt;

/// Why a string is not a SID of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{value}' is not a valid {kind} SID (expected '{prefix}' followed by 32 hex digits)")]
pub struct SidError {
    /// The rejected input, cut to a readable length.
    pub value: String,
    /// The kind of resource that was expected.
    pub kind: &'static str,
    /// The prefix that kind's SIDs start with.
    pub prefix: &'static str,
}

/// Returns true when `value` has the shape of a SID with `prefix`; hex digits may be of either case.
pub fn has_sid_shape(value: &str, prefix: &str) -> bool {
    value.len() == 34 && value.starts_with(prefix) && value.as_bytes()[2..].iter().all(u8::is_ascii_hexdigit)
}

/// A new secret (auth tokens, API key secrets): 64 lowercase hex digits, all 256 bits from the operating
/// system's random source. Not made from SIDs, whose first 48 bits are a clock reading.
pub fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    // The OS random source failing is not something a caller can recover from.
    getrandom::fill(&mut bytes).expect("the operating system's random source is unavailable");
    hex(&bytes)
}

fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 0x0f)] as char);
    }
    out
}

/// 32 hex digits: the current time in milliseconds (48 bits), then 80 random bits. SIDs made in order sort in
/// order, so a database index on them grows at its end instead of touching a random page per new row (which
/// multiplied the bytes written per message), while 80 random bits keep them unguessable and unique.
fn time_ordered_hex32() -> String {
    let mut bytes = [0u8; 16];
    // The OS random source failing is not something a caller can recover from.
    getrandom::fill(&mut bytes[6..]).expect("the operating system's random source is unavailable");
    let millis =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    bytes[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
    hex(&bytes)
}

macro_rules! define_sid {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// The two letters every SID of this kind starts with.
            pub const PREFIX: &'static str = $prefix;

            /// Validates `value` as a SID of this kind.
            ///
            /// # Errors
            /// [`SidError`] when the prefix is wrong, the length is not 34, or a character is not hex.
            pub fn parse(value: &str) -> Result<Self, SidError> {
                if has_sid_shape(value, $prefix) {
                    Ok(Self(value.to_string()))
                } else {
                    Err(SidError {
                        value: value.chars().take(64).collect(),
                        kind: $kind,
                        prefix: $prefix,
                    })
                }
            }

            /// A new unique SID of this kind; later SIDs sort after earlier ones.
            pub fn generate() -> Self {
                Self(format!("{}{}", $prefix, time_ordered_hex32()))
            }

            /// The SID as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The SID's text, without copying it.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = SidError;
            fn from_str(s: &str) -> Result<Self, SidError> {
                Self::parse(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                Self::parse(&raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

define_sid!(
    /// An account (`AC…`): the owner of everything on a Palaver server.
    AccountSid, "AC", "account"
);
define_sid!(
    /// A conversation service (`IS…`): an isolated namespace of conversations, users and roles.
    ServiceSid, "IS", "conversation service"
);
define_sid!(
    /// A conversation (`CH…`).
    ConversationSid, "CH", "conversation"
);
define_sid!(
    /// A message (`IM…`).
    MessageSid, "IM", "message"
);
define_sid!(
    /// A participant of a conversation (`MB…`).
    ParticipantSid, "MB", "participant"
);
define_sid!(
    /// A conversation user (`US…`).
    UserSid, "US", "user"
);
define_sid!(
    /// A role (`RL…`).
    RoleSid, "RL", "role"
);
define_sid!(
    /// An API key (`SK…`), a second credential for the REST API and the signer of access tokens.
    ApiKeySid, "SK", "API key"
);
define_sid!(
    /// A messaging service (`MG…`), kept on conversations for compatibility.
    MessagingServiceSid, "MG", "messaging service"
);
define_sid!(
    /// A delivery receipt (`DY…`).
    DeliveryReceiptSid, "DY", "delivery receipt"
);
define_sid!(
    /// A conversation-scoped webhook (`WH…`).
    WebhookSid, "WH", "webhook"
);
define_sid!(
    /// A media item (`ME…`).
    MediaSid, "ME", "media"
);
define_sid!(
    /// An address configuration (`IG…`): what happens to messages sent to one of our addresses.
    AddressConfigurationSid, "IG", "address configuration"
);
define_sid!(
    /// A content template (`HX…`).
    ContentSid, "HX", "content template"
);
define_sid!(
    /// A push notification credential (`CR…`): the keys Palaver signs its requests to a push service with.
    CredentialSid, "CR", "credential"
);
define_sid!(
    /// A push notification binding (`BS…`): one device or browser of a user, registered for pushes.
    PushBindingSid, "BS", "binding"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_prefix_and_32_hex_digits() {
        let sid = ConversationSid::parse("CH0123456789abcdef0123456789ABCDEF").unwrap();
        assert_eq!(sid.as_str(), "CH0123456789abcdef0123456789ABCDEF");
    }

    #[test]
    fn parse_rejects_wrong_prefix_length_and_characters() {
        for bad in [
            "IM0123456789abcdef0123456789abcdef",
            "CH0123456789abcdef0123456789abcde",
            "CH0123456789abcdef0123456789abcdeg",
            "",
            "CH",
        ] {
            assert!(ConversationSid::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn secrets_are_random_through_and_through() {
        let (a, b) = (random_secret(), random_secret());
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()), "{a}");
        // No shared clock prefix: two secrets made within a millisecond differ from their first digits on
        // (a chance of 1 in 2^32 that the first eight agree).
        assert_ne!(a[..8], b[..8]);
    }

    #[test]
    fn generated_sids_parse_and_differ() {
        let a = MessageSid::generate();
        let b = MessageSid::generate();
        assert_ne!(a, b);
        assert!(MessageSid::parse(a.as_str()).is_ok());
        assert!(a.as_str().starts_with("IM"));
    }

    #[test]
    fn generated_sids_sort_by_creation_time() {
        let first = MessageSid::generate();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = MessageSid::generate();
        assert!(first < second, "{first} should sort before {second}");
        assert_eq!(first.as_str().len(), 34);
        assert!(first.as_str()[2..].bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    }
}
