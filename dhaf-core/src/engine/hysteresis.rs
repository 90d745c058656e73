//! Rise/fall hysteresis: a node changes its published opinion of an entry point only after
//! `rise` consecutive healthy or `fall` consecutive unhealthy checks.
//!
//! It applies alike to every checker (it lives here, not in the checkers). The first opinion too
//! needs `rise` healthy or `fall` failed results in a row: one result is no evidence.

use crate::model::{Health, Opinion};

/// The hysteresis state of one (service, entry point) on one node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hysteresis {
    opinion: Option<bool>,
    /// The result the current streak is of (the opposite of `opinion`, or either before the first
    /// opinion), and how long it is.
    leaning: Option<bool>,
    streak: u32,
    reason: Option<String>,
}

impl Hysteresis {
    /// Feed one check result; returns the new opinion when the published one changes.
    ///
    /// The first opinion obeys `rise`/`fall` like any later one: a restarted node whose first
    /// check fails once does not vote the entry point down (and purge a pinned switchover) on
    /// that single result.
    pub fn observe(&mut self, health: &Health, rise: u32, fall: u32) -> Option<Opinion> {
        let healthy = health.is_healthy();
        if let Some(reason) = health.reason() {
            self.reason = Some(reason.to_string());
        }
        if self.opinion == Some(healthy) {
            self.leaning = None;
            self.streak = 0;
            return None;
        }
        if self.leaning == Some(healthy) {
            self.streak += 1;
        } else {
            self.leaning = Some(healthy);
            self.streak = 1;
        }
        let needed = if healthy { rise } else { fall };
        if self.streak >= needed.max(1) {
            self.opinion = Some(healthy);
            self.leaning = None;
            self.streak = 0;
            self.current()
        } else {
            None
        }
    }

    /// The opinion held now, if any check has run.
    pub fn current(&self) -> Option<Opinion> {
        self.opinion.map(|healthy| {
            if healthy {
                Opinion::healthy()
            } else {
                Opinion::unhealthy(self.reason.clone().unwrap_or_else(|| "unhealthy".into()))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(seq: &str, rise: u32, fall: u32) -> String {
        let mut h = Hysteresis::default();
        seq.chars()
            .map(|c| {
                let health = if c == '+' { Health::Healthy } else { Health::unhealthy("down") };
                match h.observe(&health, rise, fall) {
                    Some(o) if o.healthy => 'U',
                    Some(_) => 'D',
                    None => '.',
                }
            })
            .collect()
    }

    #[test]
    fn table() {
        // check results (+ healthy, - unhealthy) -> published changes (U up, D down, . none)
        let table = [
            ("+++", 2, 2, ".U."),
            ("-", 2, 2, "."), // one failed first check is no opinion yet
            ("--", 2, 2, ".D"),
            ("-+", 2, 2, ".."), // nor is a first streak broken by the other result
            ("-++", 2, 2, "..U"),
            ("+", 1, 1, "U"),
            ("++-+-+-", 2, 2, ".U....."), // flapping never flips
            ("++--", 2, 2, ".U.D"),
            ("+-", 1, 1, "UD"),
            ("++---+++", 2, 3, ".U..D.U."),
            ("++-+--", 2, 2, ".U...D"), // a healthy check resets the fall streak
        ];
        for (seq, rise, fall, want) in table {
            assert_eq!(run(seq, rise, fall), want, "{seq} rise={rise} fall={fall}");
        }
    }

    #[test]
    fn keeps_the_latest_reason() {
        let mut h = Hysteresis::default();
        h.observe(&Health::Healthy, 1, 2);
        h.observe(&Health::unhealthy("connection refused"), 1, 2);
        let o = h.observe(&Health::unhealthy("timed out after 5 s"), 1, 2).unwrap();
        assert_eq!(o.reason.as_deref(), Some("timed out after 5 s"));
    }
}
