//! echo-backend: placeholder until its issue lands.
fn main() {}
