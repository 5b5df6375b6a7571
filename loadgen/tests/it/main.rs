//! loadgen's end-to-end tests, one test binary: the real `loadgen` against
//! real servers on port 0 (echo-backend, the proxy, python's http.server,
//! small misbehaving servers), checking its JSON report, its messages and
//! its exit status.

mod cli;
mod e2e;
mod intervals;
mod scale;
mod util;
