//! Destroy: delayed and immediate destroy of an empty room.

use super::*;

#[test]
fn delayed_destroy_keeps_the_room_until_the_delay_and_a_join_cancels_it() {
    let mut h = Harness::plain();
    h.login(1, "alice");
    h.login(2, "bob");
    h.create(1, "r", 2);
    h.send(1, "r", "one");
    h.ok(1, leave("r"));
    assert_eq!(h.core.room_count(), 1);
    // Alice's message bucket rests 5 ms (one message at 200/s); then the destroy is next.
    h.tick(5);
    assert_eq!(h.core.resting_bucket_count(), 0);
    assert_eq!(h.core.poll_timeout(), Some(h.now().mono_ms + 1_995));
    // Waiting for its destroy, the room still exists.
    assert_eq!(h.fail(2, create("r", 0)), ErrorCode::RoomAlreadyExists);
    h.tick(1_000);
    let st = h.join(2, "r");
    assert!(!st.created);
    assert_eq!(st.member_count, 1);
    assert_eq!(st.last_seq, 1, "history survives a cancelled destroy");
    // The old deadline passes: the join cancelled the destroy.
    h.tick(1_500);
    assert_eq!(h.core.room_count(), 1);
    let st = h.join(1, "r");
    assert_eq!(st.member_count, 2);
}

#[test]
fn delayed_destroy_happens_at_the_deadline() {
    let mut h = Harness::plain();
    h.login(1, "alice");
    h.login(2, "bob");
    h.create(1, "r", 2);
    h.send(1, "r", "one");
    h.ok(1, leave("r"));
    h.tick(1_999);
    assert_eq!(h.core.room_count(), 1);
    h.tick(1);
    assert_eq!(h.core.room_count(), 0);
    let later = h.now().mono_ms + 60_000;
    assert!(h.core.poll_timeout().is_none_or(|t| t > later), "only the token timers remain");
    assert_eq!(h.fail(2, join("r")), ErrorCode::RoomDoesNotExist);
    // The id is free again, and the new room starts from scratch.
    let st = h.create(2, "r", 0);
    assert!(st.created);
    assert_eq!(st.last_seq, 0);
}

#[test]
fn a_room_empties_twice_and_only_the_second_deadline_counts() {
    let mut h = Harness::plain();
    h.login(1, "alice");
    h.create(1, "r", 2);
    h.ok(1, leave("r"));
    h.tick(1_000);
    h.join(1, "r");
    h.ok(1, leave("r"));
    // First deadline: ignored.
    h.tick(1_000);
    assert_eq!(h.core.room_count(), 1);
    h.tick(999);
    assert_eq!(h.core.room_count(), 1);
    h.tick(1);
    assert_eq!(h.core.room_count(), 0);
}

#[test]
fn immediate_destroy_with_delay_zero() {
    let mut h = Harness::plain();
    h.login(1, "alice");
    h.login(2, "bob");
    h.create(1, "r", 0);
    h.join(2, "r");
    h.ok(1, leave("r"));
    assert_eq!(h.core.room_count(), 1, "a member is still in it");
    h.ok(2, leave("r"));
    assert_eq!(h.core.room_count(), 0);
    assert_eq!(h.fail(1, join("r")), ErrorCode::RoomDoesNotExist);
    assert!(h.create(1, "r", 0).created);
    // A lost connection empties rooms too, once its offline grace is over.
    let now = h.now();
    h.core.handle_disconnect(now, 1);
    h.pump();
    h.tick(29_999);
    assert_eq!(h.core.room_count(), 1, "held for the offline grace");
    h.tick(1);
    assert_eq!(h.core.room_count(), 0);
    assert_eq!(h.core.session_count(), 1);
}
