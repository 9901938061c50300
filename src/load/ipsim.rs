//! `--ipsim-schedule`: a run across `huddle ipsim`'s link, which another process runs. The
//! link's schedule file says when it started and when its blackholes and address changes are;
//! the runner measures the catch-up after each blackhole and tells the members of each address
//! change once this side's addresses show it.

use anyhow::Result;

use super::args::LoadConfig;
use super::runner::Plan;

/// `plan` with the link's blackholes and address changes, read from the file `huddle ipsim
/// --schedule` wrote (they replace `--netsim`'s blackholes); `plan` as it is without
/// `--ipsim-schedule`.
pub(super) fn with_schedule<'a>(plan: Plan<'a>, cfg: &LoadConfig) -> Result<Plan<'a>> {
    let Some(path) = &cfg.ipsim_schedule else { return Ok(plan) };
    #[cfg(target_os = "linux")]
    {
        use anyhow::Context as _;
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("--ipsim-schedule {}", path.display()))?;
        let s = crate::netsim::ip::Schedule::parse(&text)
            .map_err(|e| anyhow::anyhow!("--ipsim-schedule {}: {e}", path.display()))?;
        let local_addrs = || {
            let addrs = crate::netsim::ip::local_ipv4_addrs().unwrap_or_default();
            addrs.iter().map(ToString::to_string).collect()
        };
        Ok(Plan {
            blackholes: Some((s.start, s.blackholes)),
            link_rebinds: Some((s.start, s.rebind_at_ms, local_addrs)),
            ..plan
        })
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = plan;
        Err(anyhow::anyhow!("--ipsim-schedule {}: ipsim is Linux-only", path.display()))
    }
}
