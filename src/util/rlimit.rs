//! The open-files limit (`RLIMIT_NOFILE`): every HTTP connection, task
//! file and database handle is one descriptor, and many systems start a
//! process with a soft limit of 1024 though the hard limit is far higher.
//! Both processes raise the soft limit to the hard one at start (see
//! `api::limits::apply`), so that a crowd of idle connections does not
//! stop the process from opening files.

/// Raises the soft open-files limit to the hard limit; the limit now in
/// force (None if it cannot be read).
pub fn raise_open_files() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "cannot read the open-files limit");
        return None;
    }
    // an unlimited hard limit cannot be the soft one (the kernel caps it
    // at fs.nr_open): a million descriptors is plenty
    let target = if lim.rlim_max == libc::RLIM_INFINITY {
        1 << 20
    } else {
        lim.rlim_max
    };
    if lim.rlim_cur >= target {
        tracing::debug!(
            open_files_limit = lim.rlim_cur,
            "open-files limit already at the hard limit"
        );
        return Some(lim.rlim_cur);
    }
    let before = lim.rlim_cur;
    let raised = libc::rlimit {
        rlim_cur: target,
        rlim_max: lim.rlim_max,
    };
    // SAFETY: setrlimit reads the struct we own.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), open_files_limit = before,
            "cannot raise the open-files limit");
        return Some(before);
    }
    tracing::debug!(
        from = before,
        to = raised.rlim_cur,
        "open-files limit raised to the hard limit"
    );
    Some(raised.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_ends_at_the_hard_limit() {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: as above.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        // start below the hard limit, as a process started by a login shell does
        let lowered = libc::rlimit {
            rlim_cur: lim.rlim_cur.min(1000),
            rlim_max: lim.rlim_max,
        };
        // SAFETY: as above.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lowered) }, 0);
        let now = raise_open_files().unwrap();
        assert!(now >= lim.rlim_cur, "{now}");
        if lim.rlim_max != libc::RLIM_INFINITY {
            assert_eq!(now, lim.rlim_max);
        }
    }
}
