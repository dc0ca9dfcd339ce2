//! The circuit of one webhook: after `open_after` consecutive failed deliveries it opens and
//! nothing is sent to that webhook for `cool_down_ms`; then one probe goes out (half-open): a
//! success closes the circuit, a failure opens it for another cool-down.
//!
//! A state machine fed with outcomes and `now` (milliseconds, from the caller's clock); it does
//! no I/O and logs nothing: the caller logs and exports the transitions it returns.

use crate::store::Millis;

/// The state, as exported by `imei_lockd_alert_circuit_state` (0 closed, 1 half-open, 2 open).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Deliveries go out; `failures` consecutive ones failed so far.
    Closed { failures: u32 },
    /// One probe is allowed (`probing`: it is out).
    HalfOpen { probing: bool },
    /// Nothing goes out before `until`.
    Open { until: Millis },
}

impl State {
    pub fn gauge(self) -> f64 {
        match self {
            Self::Closed { .. } => 0.0,
            Self::HalfOpen { .. } => 1.0,
            Self::Open { .. } => 2.0,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Closed { .. } => "closed",
            Self::HalfOpen { .. } => "half_open",
            Self::Open { .. } => "open",
        }
    }
}

/// One webhook's circuit.
#[derive(Clone, Debug)]
pub struct Circuit {
    state: State,
    open_after: u32,
    cool_down_ms: Millis,
}

impl Circuit {
    pub fn new(open_after: u32, cool_down_ms: Millis) -> Self {
        Self {
            state: State::Closed { failures: 0 },
            open_after: open_after.max(1),
            cool_down_ms,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// Whether nothing may go out now (open and cooling down, or the half-open probe is out):
    /// a cheap check before any work for a delivery; [`Circuit::try_send`] decides.
    pub fn is_blocked(&self, now: Millis) -> bool {
        match self.state {
            State::Open { until } => now < until,
            State::HalfOpen { probing } => probing,
            State::Closed { .. } => false,
        }
    }

    /// May one delivery go out now? In the half-open state, `true` once (the probe), and the
    /// probe is then out until [`Circuit::on_success`] or [`Circuit::on_failure`].
    /// Returns the new state when this call changed it (open → half-open).
    pub fn try_send(&mut self, now: Millis) -> (bool, Option<State>) {
        match self.state {
            State::Closed { .. } => (true, None),
            State::Open { until } if now >= until => {
                self.state = State::HalfOpen { probing: true };
                (true, Some(self.state))
            }
            State::Open { .. } => (false, None),
            State::HalfOpen { probing: false } => {
                self.state = State::HalfOpen { probing: true };
                (true, None)
            }
            State::HalfOpen { probing: true } => (false, None),
        }
    }

    /// A delivery succeeded; returns the new state if it changed.
    pub fn on_success(&mut self) -> Option<State> {
        let was = self.state;
        self.state = State::Closed { failures: 0 };
        (!matches!(was, State::Closed { .. })).then_some(self.state)
    }

    /// A delivery failed; returns the new state if it changed (to open).
    pub fn on_failure(&mut self, now: Millis) -> Option<State> {
        let open = State::Open {
            until: now.saturating_add(self.cool_down_ms),
        };
        match self.state {
            State::Closed { failures } if failures + 1 >= self.open_after => {
                self.state = open;
                Some(open)
            }
            State::Closed { failures } => {
                self.state = State::Closed {
                    failures: failures + 1,
                };
                None
            }
            State::HalfOpen { .. } => {
                self.state = open;
                Some(open)
            }
            // A delivery sent before the circuit opened came back failed: stays open.
            State::Open { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_n_consecutive_failures_and_probes_after_the_cool_down() {
        let mut c = Circuit::new(3, 10_000);
        assert_eq!(c.on_failure(0), None);
        assert_eq!(c.on_success(), None, "a success resets the count");
        assert_eq!(c.on_failure(1), None);
        assert_eq!(c.on_failure(2), None);
        assert_eq!(c.on_failure(3), Some(State::Open { until: 10_003 }));
        assert!(c.is_blocked(10_002));
        assert_eq!(c.try_send(10_002), (false, None));
        assert!(!c.is_blocked(10_003));
        assert_eq!(
            c.try_send(10_003),
            (true, Some(State::HalfOpen { probing: true }))
        );
        assert_eq!(c.try_send(10_004), (false, None), "one probe at a time");
        assert!(c.is_blocked(10_004));
        // The probe fails: open again for a full cool-down.
        assert_eq!(c.on_failure(10_500), Some(State::Open { until: 20_500 }));
        assert_eq!(c.try_send(20_499), (false, None));
        assert!(c.try_send(20_500).0);
        assert_eq!(c.on_success(), Some(State::Closed { failures: 0 }));
        assert_eq!(c.try_send(20_501), (true, None));
        assert_eq!(c.state().gauge(), 0.0);
    }

    #[test]
    fn late_failures_while_open_do_not_extend_it() {
        let mut c = Circuit::new(1, 1_000);
        assert!(c.on_failure(0).is_some());
        assert_eq!(c.on_failure(500), None);
        assert_eq!(c.state(), State::Open { until: 1_000 });
        assert_eq!(c.state().gauge(), 2.0);
    }
}
