//! How many client connections a proxy can hold under an open-files
//! limit: the one formula the proxy's default, its start-up check and the
//! workbench's "max" connection count all use.
//!
//! A proxied connection costs two descriptors (client and backend). Each
//! worker also holds its listener, epoll instance, control eventfd, a
//! reserve descriptor for turning clients away when out of fds, and two
//! per splicing pipe; the process holds stdio, the signalfd and the
//! metrics listener. So:
//!
//! ```text
//! needed = 2 × connections + workers × (PER_WORKER + 2 × pipes) + HEADROOM
//! ```

/// Descriptors a proxied connection holds: client and backend.
pub const PER_CONNECTION: u64 = 2;
/// Descriptors each worker holds besides its connections and pipes (with
/// room to spare).
pub const PER_WORKER: u64 = 8;
/// Descriptors the process holds besides its workers: stdio, signalfd,
/// metrics, and slack.
pub const HEADROOM: u64 = 32;

/// The descriptors a proxy with `connections` (over all workers),
/// `workers` and `pipes` per worker needs.
pub fn needed(connections: u64, workers: u64, pipes: u64) -> u64 {
    PER_CONNECTION * connections + workers * (PER_WORKER + 2 * pipes) + HEADROOM
}

/// The most connections (over all workers) that fit in `nofile`
/// descriptors; at least 1.
pub fn connections(nofile: u64, workers: u64, pipes: u64) -> u64 {
    let fixed = workers * (PER_WORKER + 2 * pipes) + HEADROOM;
    (nofile.saturating_sub(fixed) / PER_CONNECTION).max(1)
}

/// Pipes per worker when the user gave no count: `wanted`, unless the
/// open-files limit is small, where pipes give way to connections: all
/// workers' pipes together take at most a quarter of the descriptors left
/// after the fixed costs (so none when that is tiny).
pub fn pipes(nofile: u64, workers: u64, wanted: u64) -> u64 {
    let spare = nofile.saturating_sub(workers * PER_WORKER + HEADROOM);
    wanted.min(spare / 4 / (2 * workers.max(1)))
}

/// Worker `i`'s share of `total` connections split over `workers`: the
/// shares differ by at most one and add up to exactly `total`.
pub fn share(total: usize, workers: usize, i: usize) -> usize {
    debug_assert!(i < workers);
    total / workers + usize::from(i < total % workers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_fits_the_limit_it_was_made_for() {
        for (nofile, workers, pipes) in [(20_000, 1, 16), (20_000, 4, 16), (1024, 2, 0)] {
            let n = connections(nofile, workers, pipes);
            assert!(needed(n, workers, pipes) <= nofile);
            assert!(needed(n + 1, workers, pipes) > nofile);
        }
        assert_eq!(connections(20_000, 1, 16), 9_964);
        assert_eq!(connections(10, 1, 16), 1, "never zero");
    }

    #[test]
    fn pipes_give_way_to_connections_at_a_small_limit() {
        assert_eq!(pipes(20_000, 1, 16), 16, "the default where there is room");
        assert_eq!(pipes(20_000, 4, 16), 16);
        // 64 - 40 fixed = 24 left: a quarter is 6 descriptors, 3 pipes.
        assert_eq!(pipes(64, 1, 16), 3);
        assert_eq!(connections(64, 1, pipes(64, 1, 16)), 9);
        assert_eq!(pipes(44, 1, 16), 0, "none when the budget is tiny");
        assert_eq!(pipes(10, 1, 16), 0);
    }

    #[test]
    fn shares_add_up_to_the_total() {
        for (total, workers) in [(10, 3), (3, 2), (9_964, 7), (5, 5)] {
            let sum: usize = (0..workers).map(|i| share(total, workers, i)).sum();
            assert_eq!(sum, total);
            let (lo, hi) = (share(total, workers, workers - 1), share(total, workers, 0));
            assert!(hi - lo <= 1);
        }
    }
}
