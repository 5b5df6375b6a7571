//! xtask end to end, in one test binary: real scenarios through the real
//! binaries (built in release by xtask itself), scenario files refused
//! before anything starts, and the CI gate's exit codes.

mod compare;
mod files;
mod gate;
mod netns;
mod run;
mod tools;
mod uring;
mod util;
