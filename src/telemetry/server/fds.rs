//! File descriptors: every client connection holds one, and so do sled's files, the auth file,
//! the local socket, outgoing calls to models and tools, and MCP servers' pipes. The server's
//! bound on connections leaves a reserve for all of those, so a flood of connections can never
//! take the descriptors the rest of the process needs.

use nix::sys::resource::{RLIM_INFINITY, Resource, getrlimit, setrlimit};

/// The most descriptors asked for when the hard limit is unlimited.
const CEILING: u64 = 1 << 20;
/// Descriptors kept for everything but client connections: enough for the effect bound's
/// outgoing connections (256 by default), MCP servers, sled and the rest.
const RESERVE: u64 = 1024;
/// The fewest connections the bound allows, whatever the limit.
const FLOOR: u64 = 64;

/// Raises the process's soft `RLIMIT_NOFILE` to its hard limit (at most 2^20); the soft limit
/// in force afterwards, `None` if it cannot be read.
pub fn raise_nofile() -> Option<u64> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    let target = if hard == RLIM_INFINITY {
        CEILING
    } else {
        hard.min(CEILING)
    };
    if soft != RLIM_INFINITY
        && soft < target
        && setrlimit(Resource::RLIMIT_NOFILE, target, hard).is_ok()
    {
        return Some(target);
    }
    Some(if soft == RLIM_INFINITY { CEILING } else { soft })
}

/// How many descriptors the process has open now (Linux: `/proc/self/fd`, elsewhere
/// `/dev/fd`).
pub fn open_fds() -> Option<u64> {
    ["/proc/self/fd", "/dev/fd"]
        .iter()
        .find_map(|d| std::fs::read_dir(d).ok())
        .map(|entries| entries.count() as u64)
}

/// How many client connections fit under `soft` descriptors with `open` in use already: the
/// rest less a reserve (a quarter of the limit when that is smaller than `RESERVE`).
pub fn connection_bound(soft: u64, open: u64) -> usize {
    let reserve = RESERVE.min(soft / 4);
    let bound = soft.saturating_sub(open).saturating_sub(reserve).max(FLOOR);
    usize::try_from(bound).unwrap_or(usize::MAX)
}

/// Raises the limit and answers the connection bound it allows now.
pub fn bound_for_this_process() -> usize {
    let soft = raise_nofile().unwrap_or(1024);
    connection_bound(soft, open_fds().unwrap_or(64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_leaves_a_reserve_below_the_limit() {
        assert_eq!(connection_bound(20_000, 40), 20_000 - 40 - 1024);
        assert_eq!(connection_bound(1024, 24), 1024 - 24 - 256);
        assert_eq!(connection_bound(100, 90), 64, "never below the floor");
    }

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let soft = raise_nofile().expect("readable");
        let (now, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
        assert_eq!(now.min(CEILING), soft);
        assert!(hard == RLIM_INFINITY || now == hard.min(CEILING));
        assert!(open_fds().expect("countable") > 2);
    }
}
