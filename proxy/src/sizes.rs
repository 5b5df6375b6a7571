//! What the settings will allocate, checked at start against what the
//! machine allows (`MemTotal` in /proc/meminfo and the free part of
//! `RLIMIT_AS`), so that an oversized setting is refused with one line
//! instead of aborting in the allocator (or starting and sitting on
//! memory it can never use).
//!
//! A worker allocates, once: its buffer pools (`buffers x buffer-size`,
//! `large-buffers x large-buffer-size`, untouched pages costing address
//! space only) and its connection table (a [`Conn`] and some bookkeeping
//! per slot, all written at start, so resident at once).

use crate::conn::Conn;

/// Bytes of bookkeeping per table slot besides its [`Conn`]: the free
/// list, the waiter and run-again queues, the closing list and the two
/// descriptors (about 48 bytes; rounded up).
const SLOT_EXTRA: u64 = 64;
/// Bytes of bookkeeping per pool buffer: its free-list entry and lent mark.
const BUFFER_EXTRA: u64 = 8;
/// Address space kept for everything else: code, heap, thread stacks.
const AS_HEADROOM: u64 = 256 << 20;

/// How much memory the process may use, as far as it can tell.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    /// `MemTotal`, in bytes, if /proc/meminfo could be read.
    pub total: Option<u64>,
    /// The address space `RLIMIT_AS` leaves (minus what is mapped now and
    /// some headroom), if limited.
    pub address_space: Option<u64>,
}

impl Memory {
    /// Reads this machine's and this process's figures.
    pub fn of_this_process() -> Memory {
        let kib = |file: &str, key: &str| {
            let text = std::fs::read_to_string(file).ok()?;
            let line = text.lines().find(|l| l.starts_with(key))?;
            let n: u64 = line[key.len()..]
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .ok()?;
            Some(n * 1024)
        };
        let mapped = kib("/proc/self/status", "VmSize:").unwrap_or(0);
        let address_space = netio::sys::rlimit::address_space()
            .ok()
            .flatten()
            .map(|lim| lim.saturating_sub(mapped + AS_HEADROOM));
        Memory {
            total: kib("/proc/meminfo", "MemTotal:"),
            address_space,
        }
    }

    /// The smaller limit and its name, if any is known.
    pub fn limit(&self) -> Option<(u64, &'static str)> {
        match (self.total, self.address_space) {
            (Some(t), Some(a)) if a < t => Some((a, "the address space RLIMIT_AS leaves")),
            (Some(t), _) => Some((t, "MemTotal")),
            (None, Some(a)) => Some((a, "the address space RLIMIT_AS leaves")),
            (None, None) => None,
        }
    }
}

/// What one worker allocates at start.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub workers: usize,
    /// The largest worker's connections.
    pub connections: usize,
    pub buffers: usize,
    pub buffer_size: usize,
    pub large_buffers: usize,
    pub large_buffer_size: usize,
}

impl Plan {
    /// Bytes all workers allocate at start (saturating: a setting too large
    /// to count is too large to allocate).
    pub fn bytes(&self) -> u64 {
        let mul = |a: usize, b: u64| (a as u64).saturating_mul(b);
        let table = mul(
            self.connections,
            std::mem::size_of::<Conn>() as u64 + SLOT_EXTRA,
        );
        let pool = mul(self.buffers, self.buffer_size as u64 + BUFFER_EXTRA);
        let large = mul(
            self.large_buffers,
            self.large_buffer_size as u64 + BUFFER_EXTRA,
        );
        mul(
            self.workers,
            table.saturating_add(pool).saturating_add(large),
        )
    }

    /// The plan as a reader checks it: `2000 buffers x 8192 bytes + …`.
    pub fn describe(&self) -> String {
        format!(
            "{} buffers x {} bytes + {} large buffers x {} bytes + a table of {} connections, \
             per worker, x {} worker{}",
            self.buffers,
            self.buffer_size,
            self.large_buffers,
            self.large_buffer_size,
            self.connections,
            self.workers,
            if self.workers == 1 { "" } else { "s" }
        )
    }
}

/// A byte count in whole MiB, rounded up: `62501 MiB`.
pub fn mib(bytes: u64) -> String {
    format!("{} MiB", bytes.div_ceil(1 << 20))
}

/// Checks `plan` against `mem`: the reason it does not fit, if it does not.
pub fn check(plan: &Plan, mem: &Memory) -> Result<(), String> {
    let Some((limit, name)) = mem.limit() else {
        return Ok(());
    };
    let need = plan.bytes();
    if need <= limit {
        return Ok(());
    }
    Err(format!(
        "needs {} of memory ({}), more than {name} ({})",
        mib(need),
        plan.describe(),
        mib(limit)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(connections: usize, buffer_size: usize) -> Plan {
        Plan {
            workers: 1,
            connections,
            buffers: 2 * connections,
            buffer_size,
            large_buffers: 16,
            large_buffer_size: 65536,
        }
    }

    #[test]
    fn a_plan_over_the_smaller_limit_is_refused_and_named() {
        let mem = Memory {
            total: Some(16 << 30),
            address_space: Some(1 << 30),
        };
        let e = check(&plan(4_000_000, 8192), &mem).expect_err("61 GiB");
        assert!(
            e.contains("RLIMIT_AS") && e.contains("8000000 buffers x 8192"),
            "{e}"
        );
        assert!(check(&plan(10_000, 8192), &mem).is_ok());
        let huge = Plan {
            large_buffers: 1 << 20,
            large_buffer_size: 16 << 20,
            ..plan(10, 64)
        };
        let e = check(
            &huge,
            &Memory {
                total: Some(16 << 30),
                address_space: None,
            },
        )
        .expect_err("16 TiB");
        assert!(e.contains("16777225 MiB") && e.contains("MemTotal"), "{e}");
        assert!(check(&huge, &Memory::default()).is_ok(), "no limit known");
    }

    #[test]
    fn ten_million_slots_cost_gigabytes_before_any_buffer() {
        // The table is written at start: 10M slots were the 1.8 GB
        // resident of `--max-connections 10000000 --buffer-size 64`.
        let table_only = Plan {
            buffers: 0,
            large_buffers: 0,
            ..plan(10_000_000, 64)
        };
        assert!(table_only.bytes() > 1_500_000_000, "{}", table_only.bytes());
    }
}
