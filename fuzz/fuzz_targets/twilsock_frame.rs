//! The twilsock v3 codec that the JS SDK's WebSocket speaks. Arbitrary bytes decode or give a `FrameError`
//! (never a panic); a decoded frame re-encodes to one that decodes to the same header and payload; and a frame
//! built from arbitrary parts survives encode then decode. The typed header views the server reads and the
//! JSON payload are read too, to check that they fail cleanly.

#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use palaver_api::twilsock::{self, Frame, Header, InitHeader, MessageHeader, UpdateHeader};
use palaver_fuzz::{json_value, same_as_json};

fn check_round_trip(frame: &Frame) {
    let bytes = twilsock::encode(&frame.header, &frame.payload);
    let again = twilsock::decode(&bytes)
        .unwrap_or_else(|e| panic!("a re-encoded frame does not decode ({e}): {:?}", String::from_utf8_lossy(&bytes)));
    assert!(same_as_json(&again.header, &frame.header), "{:?} became {:?}", frame.header, again.header);
    assert_eq!(again.payload, frame.payload);
}

fn read_views(frame: &Frame) {
    let _ = frame.header_as::<InitHeader>();
    let _ = frame.header_as::<UpdateHeader>();
    let _ = frame.header_as::<MessageHeader>();
    let _ = frame.json_payload();
}

fn built_frame(u: &mut Unstructured<'_>) -> Result<(Header, Vec<u8>)> {
    let mut header = Header::new(u.arbitrary::<String>()?);
    if u.arbitrary()? {
        header = header.with_id(u.arbitrary::<String>()?);
    }
    if u.arbitrary()? {
        header = header.with_payload_type(u.arbitrary::<String>()?);
    }
    for _ in 0..u.int_in_range(0..=4)? {
        let name: String = u.arbitrary()?;
        header = header.with_field(&name, json_value(u, 3)?);
    }
    Ok((header, u.arbitrary()?))
}

fuzz_target!(|data: &[u8]| {
    // The raw bytes as a frame off the wire.
    if let Ok(frame) = twilsock::decode(data) {
        check_round_trip(&frame);
        read_views(&frame);
    }
    // The same bytes as the parts of a frame the server writes.
    if let Ok((header, payload)) = built_frame(&mut Unstructured::new(data)) {
        let bytes = twilsock::encode(&header, &payload);
        let frame =
            twilsock::decode(&bytes).unwrap_or_else(|e| panic!("an encoded frame does not decode ({e}): {header:?}"));
        assert!(same_as_json(&frame.header, &header), "{header:?} became {:?}", frame.header);
        assert_eq!(frame.payload, payload);
        read_views(&frame);
    }
});
