//! The proxy's end-to-end tests against the io_uring engine: the very
//! modules of `tests/it`, compiled a second time into a binary whose name
//! (`it_uring`) makes `util::ENGINE` "uring". A matrix, not a copy: a test
//! added to `tests/it` runs against both engines.

#[path = "../it/main.rs"]
mod it;

// The modules refer to each other from the crate's root (`crate::util`).
use it::*;
