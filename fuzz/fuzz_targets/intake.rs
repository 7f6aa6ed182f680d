//! Fuzzes the enqueue/spool document parser with arbitrary bytes: all records or a located error.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    match extrator::core::intake::parse_document(data) {
        Ok(records) => assert!(!records.is_empty()),
        Err(error) => {
            let _ = error.to_string();
        }
    }
});
