//! Majority verdicts: how many alive nodes must agree before an entry point counts as healthy or
//! unhealthy.
//!
//! A verdict needs strictly more than half of the alive nodes *and* at least `min_votes` votes.
//! Anything short of that (a split, nodes that have not reported yet) is [`Verdict::Unknown`]:
//! dhaf neither switches away from nor switches to an entry point it cannot judge.

use serde::{Deserialize, Serialize};

/// The cluster's collective judgement of one entry point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// A majority of alive nodes hold it healthy.
    Healthy,
    /// A majority of alive nodes hold it unhealthy.
    Unhealthy,
    /// No majority either way.
    Unknown,
}

/// The verdict from `healthy` and `unhealthy` votes of `alive` nodes, needing `min_votes`.
///
/// Votes of nodes that are not alive must not be counted by the caller.
pub fn verdict(healthy: usize, unhealthy: usize, alive: usize, min_votes: usize) -> Verdict {
    let min_votes = min_votes.max(1);
    if healthy * 2 > alive && healthy >= min_votes {
        Verdict::Healthy
    } else if unhealthy * 2 > alive && unhealthy >= min_votes {
        Verdict::Unhealthy
    } else {
        Verdict::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::Verdict::*;
    use super::*;

    #[test]
    fn table() {
        // (healthy, unhealthy, alive, min_votes) -> verdict
        let table = [
            ((0, 0, 0, 1), Unknown),   // empty cluster
            ((1, 0, 1, 1), Healthy),   // a lone node decides (the seed's 2-node cluster losing one)
            ((0, 1, 1, 1), Unhealthy), //
            ((1, 0, 1, 2), Unknown),   // ... unless min-votes asks for more
            ((1, 1, 2, 1), Unknown),   // even split
            ((2, 0, 2, 1), Healthy),   //
            ((1, 0, 2, 1), Unknown),   // one vote missing of two: not a majority
            ((2, 1, 3, 1), Healthy),   //
            ((1, 2, 3, 1), Unhealthy), //
            ((1, 1, 3, 1), Unknown),   // one node has not reported
            ((2, 2, 4, 1), Unknown),   // even split of an even cluster
            ((3, 1, 4, 1), Healthy),   //
            ((2, 0, 4, 1), Unknown),   // half is not a majority
            ((3, 0, 5, 3), Healthy),   //
            ((3, 0, 5, 4), Unknown),   // majority but below min-votes
            ((0, 3, 5, 1), Unhealthy), //
            ((0, 0, 3, 1), Unknown),   // nobody reported
            ((0, 0, 1, 0), Unknown),   // min-votes 0 is taken as 1
        ];
        for ((h, u, a, m), want) in table {
            assert_eq!(verdict(h, u, a, m), want, "healthy={h} unhealthy={u} alive={a} min={m}");
        }
    }
}
