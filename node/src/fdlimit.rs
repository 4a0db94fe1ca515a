//! The connection cap comes from the real file-descriptor limit: each client connection is one
//! descriptor, and a node that accepts past `RLIMIT_NOFILE` fails in `accept` instead of
//! answering 503.

/// Reads the soft `RLIMIT_NOFILE` of this process (from `/proc/self/limits`, which needs no
/// `unsafe`; 1024, the usual default, if it cannot be read).
pub fn nofile_soft_limit() -> u64 {
    read_proc_limit().unwrap_or(1024)
}

fn read_proc_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line.split_whitespace().nth(3)?;
    if soft == "unlimited" {
        Some(u64::from(u32::MAX))
    } else {
        soft.parse().ok()
    }
}

/// Effective connection cap: `configured` if non-zero (and within the limit), else the limit
/// minus `reserve`.
pub fn connection_cap(configured: u32, reserve: u32) -> Result<u32, String> {
    let limit = nofile_soft_limit();
    let available = limit.saturating_sub(u64::from(reserve));
    if available == 0 {
        return Err(format!(
            "RLIMIT_NOFILE is {limit}, which leaves nothing after the reserve of {reserve} descriptors"
        ));
    }
    if configured == 0 {
        return Ok(u32::try_from(available).unwrap_or(u32::MAX));
    }
    if u64::from(configured) > available {
        return Err(format!(
            "{configured} exceeds what RLIMIT_NOFILE ({limit}) allows after the reserve of {reserve} \
             descriptors ({available}); lower it or raise the limit"
        ));
    }
    Ok(configured)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_positive_limit() {
        assert!(nofile_soft_limit() > 0);
    }

    #[test]
    fn derived_cap_leaves_the_reserve() {
        let limit = nofile_soft_limit();
        let cap = connection_cap(0, 100).expect("cap");
        assert_eq!(u64::from(cap), limit.min(u64::from(u32::MAX)) - 100);
    }
}
