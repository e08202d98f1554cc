//! Feeds arbitrary bytes to the LTX decoder (header, every page, finish) and to
//! the tail index parser. Any panic, hang or unbounded allocation is a bug; errors
//! are expected.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ltx::parse_page_index(data);

    let mut reader = data;
    let Ok(mut dec) = ltx::Decoder::new(&mut reader) else {
        return;
    };
    let mut buf = vec![0u8; dec.header().page_size.bytes()];
    loop {
        match dec.next_page(&mut buf) {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(_) => return,
        }
    }
    let _ = dec.finish();
});
