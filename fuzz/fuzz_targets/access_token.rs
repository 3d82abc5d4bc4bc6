//! Access tokens as every connection presents them (`connect`, twilsock `init`/`update`, media links): any text
//! decodes to a header and claims or to a `TokenFormatError`, never a panic. Claims encoded under a secret
//! decode to the same claims and verify with that secret only; a token with one character changed never
//! verifies.
//!
//! Input: one byte choosing the check, then either the token text or the bytes the claims are built from.

#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use palaver_api::token::{self, ALGORITHM, AccessTokenClaims, ChatGrant, Grants, PalaverGrant};

fn claims(u: &mut Unstructured<'_>) -> Result<AccessTokenClaims> {
    Ok(AccessTokenClaims {
        jti: u.arbitrary()?,
        iss: u.arbitrary()?,
        sub: u.arbitrary()?,
        exp: u.arbitrary()?,
        nbf: u.arbitrary()?,
        grants: Grants {
            identity: u.arbitrary()?,
            chat: if u.arbitrary()? {
                Some(ChatGrant {
                    service_sid: u.arbitrary()?,
                    endpoint_id: u.arbitrary()?,
                    push_credential_sid: u.arbitrary()?,
                })
            } else {
                None
            },
            palaver: if u.arbitrary()? { Some(PalaverGrant { observer: u.arbitrary()? }) } else { None },
        },
    })
}

fn round_trip(u: &mut Unstructured<'_>) -> Result<()> {
    let claims = claims(u)?;
    let secret: String = u.arbitrary()?;
    let text = token::encode(&claims, &secret);
    let signed = token::decode(&text).unwrap_or_else(|e| panic!("an encoded token does not decode ({e}): {text}"));
    assert_eq!(signed.claims, claims);
    assert!(signed.is_signed_with(&secret), "{text} does not verify with its own secret");
    assert!(!signed.is_signed_with(&format!("{secret}x")), "{text} verifies with another secret");
    // One character changed: the token no longer decodes, or no longer verifies.
    let at = u.choose_index(text.len())?;
    let replacement = *u.choose(b"ABab019-_.= ")?;
    if text.as_bytes()[at] != replacement {
        let mut bytes = text.clone().into_bytes();
        bytes[at] = replacement;
        let mangled = String::from_utf8(bytes).expect("ASCII in, ASCII out");
        if let Ok(signed) = token::decode(&mangled) {
            // Only trailing padding or whitespace may be added without changing what was signed.
            let harmless = mangled.trim().trim_end_matches('=') == text;
            assert!(harmless || !signed.is_signed_with(&secret), "{mangled} still verifies");
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let Some((&choice, rest)) = data.split_first() else { return };
    if choice % 2 == 0 {
        let _ = round_trip(&mut Unstructured::new(rest));
        return;
    }
    let Ok(text) = std::str::from_utf8(rest) else { return };
    if let Ok(signed) = token::decode(text) {
        assert_eq!(signed.header.alg, ALGORITHM);
        // Whatever was signed with whatever key, checking it never panics; re-encoding the claims makes a
        // token that decodes to them.
        let _ = signed.is_signed_with("secret");
        let again = token::encode(&signed.claims, "secret");
        assert_eq!(token::decode(&again).map(|t| t.claims).as_ref(), Ok(&signed.claims), "{text}");
    }
});
