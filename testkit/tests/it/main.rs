//! testkit's own tests: real child processes (`sh`, `sleep`), their
//! stderr, their exits and their children.

mod child;
mod proc;
