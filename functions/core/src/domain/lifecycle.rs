//! The lifecycle of a data request as one type: every legal move of a stored request is a
//! [`Transition`], which names the states it may start from (its [`Guard`]) and what it writes
//! (its [`Change`]). Stores apply a transition atomically and only when its guard admits the
//! stored request, so a duplicate or late message finds nothing to do. The retry policy of the
//! queue consumers (local and AWS) lives here too, so both retry alike.
//!
//! ```text
//! accepted ──start──▶ building ──built──▶ built ──delivered──▶ delivered
//!    │                 │  ▲ progress,        │ claim delivery,        │
//!    └──────fail───────┴──┘ renew, restart   │ delivery failed        │
//!           ▼                                ▼                        ▼
//!         failed                          expired ◀───────expire──────┘
//! ```
//!
//! The account may cancel a request in any of the four live states (accepted, building, built,
//! delivered): it ends `cancelled`, from which nothing moves it.
//!
//! A running build also checkpoints (fenced by its lease like a renewal): a builder that takes
//! the build over, or the continuation of one that stopped before its deadline, goes on from the
//! checkpoint, and `built` or `fail` clears it.

use std::time::Duration;

use super::{DataRequest, Delivery, DeliveryStatus, State, Timestamp};

/// How long a builder holds a build it started or renewed; another may take it over after.
pub const BUILD_LEASE: Duration = Duration::from_secs(60);

/// How often a running build renews its lease (well inside [`BUILD_LEASE`]).
pub const BUILD_RENEW_EVERY: Duration = Duration::from_secs(20);

/// How long a request may wait in `accepted`, or in `building` without a builder holding it,
/// before the sweeper queues it again: longer than a build message can wait for a retry or
/// for the builder function's timeout to end a run that died.
pub const STUCK_AFTER: Duration = Duration::from_secs(15 * 60);

/// The reason a cancelled request shows.
pub const CANCELLED: &str = "cancelled";

/// What a delivery claim lasts beyond the delivery's own deadline: room to record the outcome.
pub const CLAIM_MARGIN: Duration = Duration::from_secs(60);

/// A legal move of a stored request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// A builder takes the build: from `accepted`, or from `building` when the lease of the
    /// builder before it ran out (it crashed or stopped). Holds it until `lease_until`.
    StartBuild {
        /// The time of the attempt.
        now: Timestamp,
        /// Until when this builder holds the build.
        lease_until: Timestamp,
    },
    /// The running build wrote `written` bytes so far.
    Progress {
        /// Bytes of the export written.
        written: u64,
    },
    /// The running build made everything up to `written` bytes durable, and `checkpoint` says
    /// how to go on from there. Refused when another builder took the build over.
    Checkpoint {
        /// The end of the lease this builder holds.
        held: Timestamp,
        /// Bytes of the export written and kept.
        written: u64,
        /// How to continue the build (the export writer's record of it).
        checkpoint: String,
    },
    /// The running build is alive: the builder that holds the lease until `held` holds it
    /// until `lease_until`. Refused when another builder took the build over.
    Renew {
        /// The end of the lease this builder holds.
        held: Timestamp,
        /// The new end of the lease.
        lease_until: Timestamp,
    },
    /// The build stopped (with an error, or at a checkpoint for a continuation): the builder
    /// that holds the lease until `held` lets the next receive take the build at once.
    Release {
        /// The end of the lease this builder holds.
        held: Timestamp,
        /// Why the build stopped when it will be tried again after an error: the request shows
        /// it while it waits and while the next attempt runs (a build that completes clears it).
        retrying: Option<String>,
    },
    /// The export is complete.
    Built {
        /// Its size.
        bytes: u64,
        /// When it was complete.
        completed: Timestamp,
        /// When it expires.
        expires: Timestamp,
        /// Each section and its record count, in export order.
        records: Vec<(String, u64)>,
    },
    /// The sweeper queues a stuck request again (one that waited past [`STUCK_AFTER`] with no
    /// builder holding it): marked so it is not queued again for that long.
    Requeue {
        /// The time of the sweep.
        now: Timestamp,
    },
    /// The build gave up (from `accepted` or `building`).
    Fail {
        /// Why, without personal data.
        reason: String,
    },
    /// A worker claims the delivery of a built export until `until`: possible while it is
    /// pending, or sending under a claim that ran out by `now` (its worker crashed).
    ClaimDelivery {
        /// The time of the claim.
        now: Timestamp,
        /// When the claim runs out.
        until: Timestamp,
    },
    /// The delivery went out.
    Delivered {
        /// How many attempts it took.
        attempts: u32,
        /// How it went: `attachment`, `link` or `web`.
        method: String,
    },
    /// A delivery attempt failed; `last` when no attempt is left.
    DeliveryFailed {
        /// Attempts so far.
        attempts: u32,
        /// How it was tried.
        method: String,
        /// What went wrong, without personal data or the address.
        error: String,
        /// Whether it was the last attempt.
        last: bool,
    },
    /// The export's time is up: its file is gone.
    Expire,
    /// The subject's data was erased, or its account deleted: whatever the request holds goes
    /// (its files are deleted by the caller), and a request still to be built or delivered is
    /// not. A failed or cancelled request keeps its state and loses its addresses.
    Erase,
    /// The account cancelled the request (from `accepted`, `building`, `built` or `delivered`):
    /// nothing more is built or delivered, its files are deleted by the caller, and its
    /// addresses go as when it expires. The build's checkpoint stays, so that the caller can
    /// discard the unfinished files it names (no builder can record another).
    Cancel,
}

/// Which stored request a transition may touch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guard {
    /// The request must be in one of these states.
    pub states: Vec<State>,
    /// If set, a request in `building` must hold no lease at this time.
    pub lease_free_at: Option<Timestamp>,
    /// If set, the request's lease must end exactly then (the builder still holds it).
    pub lease_is: Option<Timestamp>,
    /// If set, delivery must be claimable at this time: `pending`, or `sending` with a claim
    /// that ran out at or before it.
    pub delivery_claimable_at: Option<Timestamp>,
}

impl Guard {
    fn in_states(states: &[State]) -> Self {
        Self { states: states.to_vec(), lease_free_at: None, lease_is: None, delivery_claimable_at: None }
    }

    /// Whether a stored request passes the guard.
    #[must_use]
    pub fn admits(&self, request: &DataRequest) -> bool {
        use DeliveryStatus as D;
        self.states.contains(&request.state)
            && self.lease_free_at.is_none_or(|now| {
                request.state != State::Building || request.lease_until.is_none_or(|until| until <= now)
            })
            && self.lease_is.is_none_or(|held| request.lease_until == Some(held))
            && self.delivery_claimable_at.is_none_or(|now| match request.delivery.status {
                D::Pending => true,
                D::Sending => request.delivery.claimed_until.is_none_or(|until| until <= now),
                D::None | D::Sent | D::Failed => false,
            })
    }
}

/// What a transition writes; `None` leaves a member as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Change {
    /// New state.
    pub state: Option<State>,
    /// New reason: `Some(None)` clears it.
    pub reason: Option<Option<String>>,
    /// Bytes written so far.
    pub available: Option<u64>,
    /// When the export was complete.
    pub completed: Option<Timestamp>,
    /// When the export expires.
    pub expires: Option<Timestamp>,
    /// The build lease: `Some(None)` clears it.
    pub lease_until: Option<Option<Timestamp>>,
    /// Delivery bookkeeping, replaced whole.
    pub delivery: Option<Delivery>,
    /// The build's checkpoint: `Some(None)` clears it.
    pub checkpoint: Option<Option<String>>,
    /// The record count of each section.
    pub records: Option<Vec<(String, u64)>>,
    /// Whether the subject's address and the report address go: the subject keeps its erased
    /// stand-in, the report none (its hash stays in the audit log).
    pub redact: bool,
}

impl Change {
    /// Applies the change to a request in memory, as a store applies it.
    pub fn apply(&self, request: &mut DataRequest) {
        if let Some(state) = self.state {
            request.state = state;
        }
        if let Some(reason) = &self.reason {
            request.reason.clone_from(reason);
        }
        if let Some(available) = self.available {
            request.available = available;
        }
        if let Some(completed) = self.completed {
            request.completed = Some(completed);
        }
        if let Some(expires) = self.expires {
            request.expires = Some(expires);
        }
        if let Some(lease) = self.lease_until {
            request.lease_until = lease;
        }
        if let Some(delivery) = &self.delivery {
            request.delivery = delivery.clone();
        }
        if let Some(checkpoint) = &self.checkpoint {
            request.checkpoint.clone_from(checkpoint);
        }
        if let Some(records) = &self.records {
            request.records.clone_from(records);
        }
        if self.redact {
            request.subject = request.subject.redacted();
            request.report = None;
        }
    }
}

/// Whether a request still to be built shows no sign of life since `before`: its last one is
/// when it was accepted, or its build lease's end (also set when it was queued again).
#[must_use]
pub fn is_stuck(request: &DataRequest, before: Timestamp) -> bool {
    matches!(request.state, State::Accepted | State::Building)
        && request.lease_until.unwrap_or(request.created) <= before
}

impl Transition {
    /// The states (and claims) the stored request must be in for this transition.
    #[must_use]
    pub fn guard(&self) -> Guard {
        use State::{Accepted, Building, Built, Delivered};
        match self {
            Self::StartBuild { now, .. } | Self::Requeue { now } => {
                Guard { lease_free_at: Some(*now), ..Guard::in_states(&[Accepted, Building]) }
            }
            Self::Renew { held, .. } | Self::Release { held, .. } | Self::Checkpoint { held, .. } => {
                Guard { lease_is: Some(*held), ..Guard::in_states(&[Building]) }
            }
            Self::Progress { .. } | Self::Built { .. } => Guard::in_states(&[Building]),
            Self::Fail { .. } => Guard::in_states(&[Accepted, Building]),
            Self::ClaimDelivery { now, .. } => {
                Guard { delivery_claimable_at: Some(*now), ..Guard::in_states(&[Built]) }
            }
            Self::Delivered { .. } | Self::DeliveryFailed { .. } => Guard::in_states(&[Built]),
            Self::Expire => Guard::in_states(&[Built, Delivered]),
            Self::Erase => Guard::in_states(&[Accepted, Building, Built, Delivered, State::Failed, State::Cancelled]),
            Self::Cancel => Guard::in_states(&[Accepted, Building, Built, Delivered]),
        }
    }

    /// What the transition writes, given the stored request (a delivery's bookkeeping carries
    /// over what it does not replace).
    #[must_use]
    pub fn change(&self, stored: &DataRequest) -> Change {
        match self {
            // A build taken over continues from its checkpoint, whose bytes stay available.
            Self::StartBuild { lease_until, .. } => Change {
                state: Some(State::Building),
                available: if stored.checkpoint.is_some() { None } else { Some(0) },
                lease_until: Some(Some(*lease_until)),
                ..Change::default()
            },
            Self::Progress { written } => Change { available: Some(*written), ..Change::default() },
            Self::Checkpoint { written, checkpoint, .. } => {
                Change { available: Some(*written), checkpoint: Some(Some(checkpoint.clone())), ..Change::default() }
            }
            Self::Renew { lease_until, .. } => Change { lease_until: Some(Some(*lease_until)), ..Change::default() },
            Self::Release { retrying, .. } => Change {
                lease_until: Some(None),
                reason: retrying.as_ref().map(|reason| Some(reason.clone())),
                ..Change::default()
            },
            // A lease that ends now holds nothing, and dates the request's last sign of life.
            Self::Requeue { now } => Change { lease_until: Some(Some(*now)), ..Change::default() },
            Self::Built { bytes, completed, expires, records } => Change {
                state: Some(State::Built),
                available: Some(*bytes),
                completed: Some(*completed),
                expires: Some(*expires),
                lease_until: Some(None),
                checkpoint: Some(None),
                records: Some(records.clone()),
                // What a failed attempt before it said is no longer so.
                reason: Some(None),
                ..Change::default()
            },
            Self::Fail { reason } => Change {
                state: Some(State::Failed),
                reason: Some(Some(reason.clone())),
                lease_until: Some(None),
                checkpoint: Some(None),
                ..Change::default()
            },
            Self::ClaimDelivery { until, .. } => Change {
                delivery: Some(Delivery {
                    status: DeliveryStatus::Sending,
                    claimed_until: Some(*until),
                    ..stored.delivery.clone()
                }),
                ..Change::default()
            },
            Self::Delivered { attempts, method } => Change {
                state: Some(State::Delivered),
                delivery: Some(Delivery {
                    status: DeliveryStatus::Sent,
                    attempts: *attempts,
                    method: Some(method.clone()),
                    ..Delivery::default()
                }),
                ..Change::default()
            },
            Self::DeliveryFailed { attempts, method, error, last } => Change {
                delivery: Some(Delivery {
                    status: if *last { DeliveryStatus::Failed } else { DeliveryStatus::Pending },
                    attempts: *attempts,
                    method: Some(method.clone()),
                    error: Some(error.clone()),
                    claimed_until: None,
                }),
                ..Change::default()
            },
            Self::Expire => Change {
                state: Some(State::Expired),
                reason: Some(Some("the export expired".into())),
                available: Some(0),
                records: Some(Vec::new()),
                redact: true,
                ..Change::default()
            },
            Self::Erase if matches!(stored.state, State::Failed | State::Cancelled) => {
                Change { redact: true, records: Some(Vec::new()), ..Change::default() }
            }
            Self::Erase => Change {
                state: Some(State::Expired),
                reason: Some(Some("the subject's data was erased".into())),
                available: Some(0),
                lease_until: Some(None),
                checkpoint: Some(None),
                records: Some(Vec::new()),
                redact: true,
                ..Change::default()
            },
            Self::Cancel => Change {
                state: Some(State::Cancelled),
                reason: Some(Some(CANCELLED.into())),
                available: Some(0),
                lease_until: Some(None),
                records: Some(Vec::new()),
                redact: true,
                ..Change::default()
            },
        }
    }

    /// Applies the transition to `request` if its guard admits it; returns whether it did.
    /// Stores that read, check and write back under a lock or a version condition use this.
    pub fn apply(&self, request: &mut DataRequest) -> bool {
        if !self.guard().admits(request) {
            return false;
        }
        self.change(request).apply(request);
        true
    }
}

/// When the queue consumers (the local worker and the builder function) try a message again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// First delay of a failed delivery; it doubles with each attempt.
    pub delivery_backoff: Duration,
}

impl RetryPolicy {
    /// The longest delay of any retry.
    pub const MAX_DELAY: Duration = Duration::from_secs(12 * 3600);

    /// After a build step failed on its `receives`-th receive: 2, 4, 8, … up to 64 seconds.
    #[must_use]
    pub fn after_error(receives: u32) -> Duration {
        Duration::from_secs(1 << receives.clamp(1, 6))
    }

    /// After the `attempts`-th delivery attempt failed: the backoff, doubled per attempt up to
    /// 64 times, and never more than [`Self::MAX_DELAY`].
    #[must_use]
    pub fn after_delivery_failure(&self, attempts: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempts.saturating_sub(1)).min(64);
        (self.delivery_backoff * factor).min(Self::MAX_DELAY)
    }

    /// When someone else holds the build or the delivery until `until`: a moment after that.
    #[must_use]
    pub fn while_held(now: Timestamp, until: Timestamp) -> Duration {
        let seconds = u64::try_from(until.unix().saturating_sub(now.unix())).unwrap_or(0);
        Duration::from_secs(seconds.saturating_add(1)).min(Self::MAX_DELAY)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::domain::{AccountId, RequestId, Subject};

    fn request(state: State) -> DataRequest {
        let id = RequestId::try_from(1_000_000_001_u64).unwrap_or_else(|e| panic!("{e}"));
        let account = AccountId::try_from(1_u64).unwrap_or_else(|e| panic!("{e}"));
        let subject = Subject::from_parts("email", "a@b.example").unwrap_or_else(|e| panic!("{e}"));
        let mut r = DataRequest::accepted(id, account, subject, None, Timestamp::from_unix(1_000));
        r.state = state;
        r
    }

    fn at(t: i64) -> Timestamp {
        Timestamp::from_unix(t)
    }

    #[test]
    fn a_build_is_taken_over_only_once_its_lease_ran_out() {
        let mut r = request(State::Accepted);
        assert!(Transition::StartBuild { now: at(10), lease_until: at(70) }.apply(&mut r));
        assert_eq!((r.state, r.lease_until), (State::Building, Some(at(70))));
        assert!(!Transition::StartBuild { now: at(69), lease_until: at(129) }.apply(&mut r), "held");
        assert!(Transition::Renew { held: at(70), lease_until: at(130) }.apply(&mut r));
        assert!(!Transition::StartBuild { now: at(100), lease_until: at(160) }.apply(&mut r), "renewed");
        assert!(Transition::StartBuild { now: at(130), lease_until: at(190) }.apply(&mut r), "ran out");
        assert!(!Transition::Renew { held: at(130), lease_until: at(200) }.apply(&mut r), "taken over");
        assert!(!Transition::Release { held: at(130), retrying: None }.apply(&mut r), "taken over");
        assert!(Transition::Release { held: at(190), retrying: None }.apply(&mut r));
        assert!(Transition::StartBuild { now: at(131), lease_until: at(191) }.apply(&mut r), "released");
        let built = Transition::Built { bytes: 9, completed: at(140), expires: at(1_000), records: Vec::new() };
        assert!(built.apply(&mut r));
        assert_eq!((r.state, r.available, r.lease_until), (State::Built, 9, None));
        assert!(!built.apply(&mut r), "built once");
    }

    #[test]
    fn a_build_retried_after_an_error_shows_why_until_it_is_built() {
        let mut r = request(State::Accepted);
        assert!(Transition::StartBuild { now: at(10), lease_until: at(70) }.apply(&mut r));
        let why = "source \"shop\": could not connect; trying again";
        assert!(Transition::Release { held: at(70), retrying: Some(why.into()) }.apply(&mut r));
        assert_eq!((r.state, r.reason.as_deref(), r.lease_until), (State::Building, Some(why), None));
        assert!(Transition::StartBuild { now: at(12), lease_until: at(72) }.apply(&mut r));
        assert_eq!(r.reason.as_deref(), Some(why), "shown while the next attempt runs");
        assert!(Transition::Release { held: at(72), retrying: None }.apply(&mut r));
        assert_eq!(r.reason.as_deref(), Some(why), "a stop for a continuation keeps it");
        assert!(Transition::StartBuild { now: at(13), lease_until: at(73) }.apply(&mut r));
        let built = Transition::Built { bytes: 9, completed: at(14), expires: at(1_000), records: Vec::new() };
        assert!(built.apply(&mut r));
        assert_eq!(r.reason, None, "cleared once built");
    }

    #[test]
    fn a_delivery_claim_that_ran_out_can_be_claimed_again_and_a_live_one_cannot() {
        let mut r = request(State::Built);
        r.delivery.status = DeliveryStatus::Pending;
        assert!(Transition::ClaimDelivery { now: at(10), until: at(100) }.apply(&mut r));
        assert!(!Transition::ClaimDelivery { now: at(99), until: at(200) }.apply(&mut r));
        assert!(Transition::ClaimDelivery { now: at(100), until: at(200) }.apply(&mut r));
        let failed = Transition::DeliveryFailed { attempts: 1, method: "web".into(), error: "x".into(), last: false };
        assert!(failed.apply(&mut r));
        assert_eq!(r.delivery.status, DeliveryStatus::Pending);
        assert!(Transition::Delivered { attempts: 2, method: "web".into() }.apply(&mut r));
        assert_eq!((r.state, r.delivery.status), (State::Delivered, DeliveryStatus::Sent));
        assert!(!Transition::ClaimDelivery { now: at(500), until: at(600) }.apply(&mut r), "sent once");
    }

    #[test]
    fn a_build_taken_over_keeps_its_checkpoint_and_the_bytes_it_made_durable() {
        let mut r = request(State::Accepted);
        assert!(Transition::StartBuild { now: at(10), lease_until: at(70) }.apply(&mut r));
        let checkpoint = Transition::Checkpoint { held: at(70), written: 64, checkpoint: "c".into() };
        let stranger = Transition::Checkpoint { held: at(71), written: 64, checkpoint: "c".into() };
        assert!(!stranger.apply(&mut r), "not the holder");
        assert!(checkpoint.apply(&mut r));
        assert_eq!((r.available, r.checkpoint.as_deref()), (64, Some("c")));
        assert!(Transition::StartBuild { now: at(70), lease_until: at(130) }.apply(&mut r));
        assert_eq!((r.available, r.checkpoint.as_deref()), (64, Some("c")), "the next builder goes on from it");
        assert!(!checkpoint.apply(&mut r), "the old holder is fenced off");
        let built = Transition::Built { bytes: 100, completed: at(80), expires: at(180), records: Vec::new() };
        assert!(built.apply(&mut r));
        assert_eq!((r.available, r.checkpoint), (100, None));
    }

    #[test]
    fn a_live_request_can_be_cancelled_once_and_a_finished_one_cannot() {
        for state in [State::Accepted, State::Building, State::Built, State::Delivered] {
            let mut r = request(state);
            r.checkpoint = Some("c".into());
            r.lease_until = Some(at(70));
            r.records = vec![("destinations".into(), 2)];
            assert!(Transition::Cancel.apply(&mut r), "{state:?}");
            assert_eq!((r.state, r.reason.as_deref(), r.available), (State::Cancelled, Some(CANCELLED), 0));
            assert_eq!(r.checkpoint.as_deref(), Some("c"), "kept, to discard the files it names");
            assert!(r.lease_until.is_none() && r.records.is_empty());
            assert!(r.subject.value().ends_with(".invalid"), "the address goes: {}", r.subject.value());
            assert!(!Transition::Cancel.apply(&mut r), "cancelled once");
            let checkpoint = Transition::Checkpoint { held: at(70), written: 9, checkpoint: "d".into() };
            assert!(!checkpoint.apply(&mut r), "no builder records another checkpoint");
        }
        for state in [State::Failed, State::Expired] {
            assert!(!Transition::Cancel.apply(&mut request(state)), "{state:?} has nothing left to cancel");
        }
    }

    fn transition() -> impl Strategy<Value = Transition> {
        let t = || (0i64..400).prop_map(at);
        prop_oneof![
            (t(), 1i64..120)
                .prop_map(|(now, lease)| Transition::StartBuild { now, lease_until: now.plus_seconds(lease) }),
            (0u64..1_000).prop_map(|written| Transition::Progress { written }),
            (t(), t()).prop_map(|(held, lease_until)| Transition::Renew { held, lease_until }),
            (t(), any::<bool>()).prop_map(|(held, error)| Transition::Release {
                held,
                retrying: error.then(|| "source \"shop\": could not connect; trying again".into())
            }),
            (t(), 0u64..1_000).prop_map(|(held, written)| Transition::Checkpoint {
                held,
                written,
                checkpoint: format!("at {written}")
            }),
            (0u64..1_000, t()).prop_map(|(bytes, completed)| Transition::Built {
                bytes,
                completed,
                expires: completed.plus_seconds(100),
                records: vec![("destinations".into(), bytes % 3)],
            }),
            Just(Transition::Fail { reason: "r".into() }),
            t().prop_map(|now| Transition::Requeue { now }),
            (t(), 1i64..120).prop_map(|(now, d)| Transition::ClaimDelivery { now, until: now.plus_seconds(d) }),
            (1u32..5).prop_map(|attempts| Transition::Delivered { attempts, method: "web".into() }),
            (1u32..5, any::<bool>()).prop_map(|(attempts, last)| Transition::DeliveryFailed {
                attempts,
                method: "web".into(),
                error: "e".into(),
                last
            }),
            Just(Transition::Expire),
            Just(Transition::Erase),
            Just(Transition::Cancel),
        ]
    }

    fn rank(state: State) -> u8 {
        match state {
            State::Accepted => 0,
            State::Building => 1,
            State::Built => 2,
            State::Delivered => 3,
            State::Failed | State::Expired | State::Cancelled => 4,
        }
    }

    proptest! {
        /// Whatever order transitions arrive in, and however often each is replayed: the state
        /// never moves backwards, a replay of the transition just applied changes nothing but
        /// a lease or a claim being taken again, and failed, expired and cancelled requests stay
        /// at rest. A cancelled request holds no lease, no count of records and no address, so
        /// no builder can go on with it and nothing of it is delivered.
        #[test]
        fn transitions_only_move_forward_and_replays_are_harmless(steps in proptest::collection::vec((transition(), any::<bool>()), 1..40)) {
            let mut r = request(State::Accepted);
            r.delivery.status = DeliveryStatus::Pending;
            for (step, replay) in steps {
                let before = r.clone();
                let applied = step.apply(&mut r);
                prop_assert!(rank(r.state) >= rank(before.state), "{:?} moved {:?} back to {:?}", step, before.state, r.state);
                if !applied {
                    prop_assert_eq!(&r, &before, "a refused transition changes nothing");
                }
                if matches!(before.state, State::Failed | State::Expired | State::Cancelled) {
                    prop_assert_eq!(r.state, before.state);
                }
                if matches!(r.state, State::Built | State::Delivered) {
                    prop_assert_eq!(&r.reason, &None, "a built request shows no reason of an attempt before");
                }
                if r.state == State::Cancelled {
                    prop_assert_eq!(r.lease_until, None);
                    prop_assert!(r.records.is_empty() && r.report.is_none() && r.available == 0);
                    let claim = Transition::ClaimDelivery { now: at(0), until: at(1) };
                    prop_assert!(!claim.guard().admits(&r), "a cancelled request is never delivered");
                    let start = Transition::StartBuild { now: at(1_000), lease_until: at(1_060) };
                    prop_assert!(!start.guard().admits(&r), "a cancelled request is never built");
                }
                if replay {
                    let once = r.clone();
                    let again = step.apply(&mut r);
                    if matches!(step, Transition::Progress { .. } | Transition::Checkpoint { .. } | Transition::Renew { .. } | Transition::DeliveryFailed { .. } | Transition::Requeue { .. } | Transition::Erase) {
                        prop_assert_eq!(&r, &once, "replaying {:?} changed the request", step);
                    } else {
                        prop_assert!(!again, "{:?} applied twice", step);
                    }
                }
            }
        }
    }
}
