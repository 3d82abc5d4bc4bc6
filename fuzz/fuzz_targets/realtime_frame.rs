//! The realtime protocol (`/v1/realtime`): client requests decoded as the gateway decodes every WebSocket
//! message, and server frames decoded as the client SDK does. Anything that decodes must encode to JSON that
//! decodes to the same value; anything else must be an error.

#![no_main]

use libfuzzer_sys::fuzz_target;
use palaver_api::realtime::{Request, ServerFrame};
use palaver_fuzz::same_as_json;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = serde_json::from_slice::<Request>(data) {
        let text = serde_json::to_string(&request).expect("a decoded request encodes");
        let again = serde_json::from_str::<Request>(&text)
            .unwrap_or_else(|e| panic!("the encoded request {text} does not decode: {e}"));
        // Requests carry no free-form JSON, so the round trip is exact.
        assert_eq!(again, request, "{text}");
    }
    if let Ok(frame) = serde_json::from_slice::<ServerFrame>(data) {
        let text = serde_json::to_string(&frame).expect("a decoded server frame encodes");
        let again = serde_json::from_str::<ServerFrame>(&text)
            .unwrap_or_else(|e| panic!("the encoded frame {text} does not decode: {e}"));
        assert!(same_as_json(&again, &frame), "{text} decodes to {again:?}, not {frame:?}");
    }
});
