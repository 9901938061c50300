//! Where a server's session and message ids start: the single-server layout, or the node
//! layout that keeps the ids of different nodes apart (docs/PROTOCOL.md, "Ids").

use super::config::ConfigError;

/// Bits of an id below the node id in the node layout: 2^43 ids per node, and with 10 bits of
/// node id every id stays below 2^53 (exact as a JSON number).
pub const NODE_SHIFT: u32 = 43;

/// The highest node id (10 bits).
pub const MAX_NODE_ID: u16 = (1 << 10) - 1;

/// The first session and message id of a server started at `start_ms` (Unix ms).
///
/// - Without a node id: `start_ms * 1000`, unique across restarts of one server at up to 1,000
///   ids per ms of the time between its starts.
/// - With node id `n`: `n << 43 | start_ms` (`start_ms` fits 43 bits until the year 2248): the
///   ids of nodes with different ids never meet while each makes fewer than `2^43 - start_ms`
///   (over 7 * 10^12) ids per run; across restarts of one node they are unique at up to one id
///   per ms between its starts.
pub fn id_base(node_id: Option<u16>, start_ms: u64) -> Result<u64, ConfigError> {
    match node_id {
        None => Ok(start_ms * 1000),
        Some(n) if n > MAX_NODE_ID => Err(ConfigError::NodeId(n)),
        Some(n) => Ok((u64::from(n) << NODE_SHIFT) | (start_ms & ((1 << NODE_SHIFT) - 1))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_MS: u64 = 1_765_000_000_000;

    #[test]
    fn node_ids_keep_ids_apart_and_below_2_pow_53() {
        let ranges: Vec<(u64, u64)> = [0, 1, 2, MAX_NODE_ID]
            .into_iter()
            .map(|n| {
                let base = id_base(Some(n), NOW_MS).unwrap();
                (base, base + (1 << 42))
            })
            .collect();
        for w in ranges.windows(2) {
            assert!(w[0].1 < w[1].0, "{ranges:?}");
        }
        assert!(ranges.last().unwrap().1 < 1 << 53);
        assert_eq!(id_base(Some(3), NOW_MS).unwrap() >> NODE_SHIFT, 3);
    }

    #[test]
    fn without_a_node_id_the_single_server_layout_stays() {
        assert_eq!(id_base(None, NOW_MS).unwrap(), NOW_MS * 1000);
        assert!(matches!(id_base(Some(1024), NOW_MS), Err(ConfigError::NodeId(1024))));
    }
}
