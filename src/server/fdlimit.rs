//! The process's limit on open files, which bounds its connections (QUIC's UDP socket is one
//! file, but every admin TCP connection is one).

/// The soft limit this raises to when the hard limit is unlimited (Linux's default
/// `fs.nr_open`, above which the kernel refuses).
#[cfg(target_os = "linux")]
const UNLIMITED_TARGET: u64 = 1 << 20;

/// Raises the soft limit on open files (`RLIMIT_NOFILE`) to the hard limit, where the
/// platform allows it (Linux), and logs the old and the new soft limit at INFO (a failure at
/// WARN). Returns the old and the new soft limit when it changed them. Many distributions
/// start services with a soft limit of 1,024 and a much higher hard limit; `huddle serve`
/// calls this at start.
pub fn raise_open_files_limit() -> Option<(u64, u64)> {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

        let limit = getrlimit(Resource::Nofile);
        // An unlimited soft limit needs no raise.
        let old = limit.current?;
        let target = limit.maximum.unwrap_or(UNLIMITED_TARGET);
        if target <= old {
            tracing::info!(soft = old, "open file limit already at its hard limit");
            return None;
        }
        match setrlimit(Resource::Nofile, Rlimit { current: Some(target), maximum: limit.maximum })
        {
            Ok(()) => {
                tracing::info!(old, new = target, "raised the open file limit");
                Some((old, target))
            }
            Err(e) => {
                tracing::warn!(soft = old, error = %e, "could not raise the open file limit");
                None
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

    use super::*;

    #[test]
    fn raises_the_soft_limit_to_the_hard_limit() {
        let limit = getrlimit(Resource::Nofile);
        let Some(hard) = limit.maximum.filter(|&h| h > 256) else { return };
        setrlimit(Resource::Nofile, Rlimit { current: Some(256), maximum: limit.maximum }).unwrap();
        assert_eq!(raise_open_files_limit(), Some((256, hard)));
        assert_eq!(getrlimit(Resource::Nofile).current, Some(hard));
        assert_eq!(raise_open_files_limit(), None);
    }
}
