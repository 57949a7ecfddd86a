//! Tests of the window controller (`PollParams`).

use super::*;

fn params(max: i64, grow: i64, shrink: i64) -> PollParams {
    let p = PollParams::default();
    p.set(max, grow, shrink).unwrap();
    p
}

#[test]
fn negative_values_are_rejected() {
    assert!(PollParams::default().set(-1, 0, 0).is_err());
    assert!(PollParams::default().set(0, -1, 0).is_err());
    assert!(PollParams::default().set(0, 0, -1).is_err());
}

#[test]
fn grows_from_zero_to_4us_then_by_grow_capped_at_max() {
    let p = params(32_000, 2, 2);
    p.adapt(10_000, false);
    assert_eq!(p.window_ns(), 4_000);
    p.adapt(10_000, false);
    assert_eq!(p.window_ns(), 8_000);
    p.adapt(10_000, false);
    assert_eq!(p.window_ns(), 16_000);
    p.adapt(30_000, false);
    assert_eq!(p.window_ns(), 32_000);
    p.adapt(31_000, true); // paid off: keep
    assert_eq!(p.window_ns(), 32_000);
}

#[test]
fn grow_zero_means_two_and_shrink_zero_means_reset() {
    let p = params(100_000, 0, 0);
    p.adapt(50_000, false);
    p.adapt(50_000, false);
    assert_eq!(p.window_ns(), 8_000);
    p.adapt(1_000_000, false);
    assert_eq!(p.window_ns(), 0);
}

#[test]
fn shrinks_when_events_come_later_than_max() {
    let p = params(32_000, 2, 4);
    for _ in 0..4 {
        p.adapt(20_000, false);
    }
    assert_eq!(p.window_ns(), 32_000);
    p.adapt(1_000_000, false);
    assert_eq!(p.window_ns(), 8_000);
}

#[test]
fn disabled_when_max_is_zero() {
    let p = params(0, 2, 2);
    assert!(!p.enabled());
    p.adapt(10, false);
    assert_eq!(p.window_ns(), 0);
}

/// Blocked waits with events later than max (but not idle) until the
/// controller probes; returns how many it took.
fn late_until_probe(p: &PollParams, late: i64) -> i64 {
    for n in 1..=PROBE_MAX + 1 {
        p.adapt(late, false);
        assert_eq!(p.window_ns(), 0);
        if p.spin_ns() != 0 {
            return n;
        }
    }
    panic!("no probe");
}

#[test]
fn probes_after_late_events_and_a_hit_opens_the_window() {
    let p = params(32_000, 2, 2);
    assert_eq!(p.spin_ns(), 0);
    // QEMU's rule alone would stay at 0 forever with 60 us events.
    assert_eq!(late_until_probe(&p, 60_000), PROBE_FIRST);
    assert_eq!(p.spin_ns(), 32_000); // a probe spins max_ns, no more
    assert_eq!(p.window_ns(), 0);
    p.adapt(1_000, true); // the peer answered while we spun
    assert_eq!(p.window_ns(), 32_000);
    p.adapt(900, true);
    assert_eq!(p.window_ns(), 32_000);
}

#[test]
fn fruitless_probes_back_off() {
    let p = params(32_000, 2, 2);
    let mut expect = PROBE_FIRST;
    for _ in 0..12 {
        assert_eq!(late_until_probe(&p, 60_000), expect);
        for _ in 0..PROBE_LEN {
            assert_eq!(p.spin_ns(), 32_000);
            p.adapt(60_000, false);
        }
        assert_eq!(p.spin_ns(), 0);
        expect = (expect * 2).min(PROBE_MAX);
    }
    assert_eq!(expect, PROBE_MAX);
}

#[test]
fn shrinking_to_zero_restarts_probes_soon() {
    let p = params(32_000, 2, 0);
    // Back off once.
    late_until_probe(&p, 60_000);
    for _ in 0..PROBE_LEN {
        p.adapt(60_000, false);
    }
    // Traffic within max opens the window (QEMU's grow) ...
    p.adapt(10_000, false);
    assert_eq!(p.window_ns(), 4_000);
    // ... a late event shrinks it to 0 (shrink 0) and probes restart
    // from PROBE_FIRST, not the backed-off interval.
    p.adapt(60_000, false);
    assert_eq!(p.window_ns(), 0);
    assert_eq!(late_until_probe(&p, 60_000), PROBE_FIRST);
}

#[test]
fn idle_drops_the_window_and_never_probes() {
    let p = params(32_000, 2, 2);
    for _ in 0..4 {
        p.adapt(20_000, false);
    }
    assert_eq!(p.window_ns(), 32_000);
    p.adapt(32_000 * IDLE_FACTOR + 1, false);
    assert_eq!(p.window_ns(), 0);
    for _ in 0..(PROBE_MAX * 2) {
        p.adapt(10_000_000, false);
        assert_eq!(p.spin_ns(), 0);
    }
    // Idle in the middle of a probe ends it.
    late_until_probe(&p, 60_000);
    p.adapt(10_000_000, false);
    assert_eq!(p.spin_ns(), 0);
}

#[test]
fn work_found_without_spinning_in_a_probe_follows_qemu() {
    let p = params(32_000, 2, 2);
    late_until_probe(&p, 60_000);
    p.adapt(100, false); // work was already there: grow to 4 us
    assert_eq!(p.window_ns(), 4_000);
    assert_eq!(p.spin_ns(), 4_000);
}

#[test]
fn set_resets_the_probe_state() {
    let p = params(32_000, 2, 2);
    late_until_probe(&p, 60_000);
    p.set(32_000, 2, 2).unwrap();
    assert_eq!(p.spin_ns(), 0);
    assert_eq!(late_until_probe(&p, 60_000), PROBE_FIRST);
}

/// A kick recorded after `start` (by the waker, just before its eventfd
/// write) is the event time; without one, the time the wait ended.
#[test]
fn blocked_event_time_is_the_first_kick_not_the_wake_up() {
    let p = params(32_000, 2, 2);
    let start = now_ns();
    p.expect_kick();
    std::thread::sleep(std::time::Duration::from_millis(2));
    let kick_ns = now_ns() - start;
    p.note_kick();
    std::thread::sleep(std::time::Duration::from_millis(20));
    p.note_kick(); // a second waker: the first kick stays
    let event_ns = p.blocked_event_ns(start);
    assert!(event_ns >= kick_ns, "{event_ns} < {kick_ns}");
    assert!(
        event_ns < kick_ns + 15_000_000,
        "{event_ns}: the later kick or the wake-up"
    );

    // Forgotten before the next wait: the wait's end counts.
    p.expect_kick();
    let event_ns = p.blocked_event_ns(start);
    assert!(event_ns >= kick_ns + 20_000_000, "{event_ns}");
}

#[test]
fn kicks_are_not_timed_with_polling_disabled() {
    let p = params(0, 2, 2);
    let start = now_ns();
    p.expect_kick();
    p.note_kick();
    std::thread::sleep(std::time::Duration::from_millis(2));
    assert!(p.blocked_event_ns(start) >= 2_000_000);
}
