//! libFuzzer entry for `proxy::fuzz::cidr`: any bytes, a panic only on a defect.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| proxy::fuzz::cidr(data));
