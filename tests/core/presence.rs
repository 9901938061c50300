//! Presence: batched joins and leaves, batch limits, flushes before messages, large rooms.

use super::*;

#[test]
fn joins_within_the_window_make_one_event_and_joiners_hear_only_later_joiners() {
    let mut h = Harness::plain();
    h.login(1, "alice");
    h.login(2, "bob");
    h.login(3, "carol");
    h.login(4, "dave");
    let st = h.create(1, "r", 0);
    assert!(st.created);
    assert_eq!(st.member_count, 1);
    assert!(
        matches!(h.take(1).as_slice(), [Got::OpenStream(_, StreamHeader::Room { room_id })] if room_id == "r")
    );

    h.join(2, "r");
    h.advance(10);
    h.join(3, "r");
    h.advance(20);
    let st = h.join(4, "r");
    assert_eq!(st.member_count, 4);
    assert!(!st.created && !st.already_member);
    for c in 2..=4 {
        assert!(matches!(h.take(c).as_slice(), [Got::OpenStream(..)]));
    }
    // 49 ms after the first join: nothing yet.
    h.tick(19);
    for c in 1..=4 {
        assert_eq!(h.take(c), vec![], "conn {c} before the window ends");
    }
    h.tick(1);
    assert_eq!(h.events(1), vec![joined("r", &["bob", "carol", "dave"])]);
    assert_eq!(h.events(2), vec![joined("r", &["carol", "dave"])]);
    assert_eq!(h.events(3), vec![joined("r", &["dave"])]);
    assert_eq!(h.events(4), vec![]);
    // The window is over: nothing more.
    h.tick(1_000);
    for c in 1..=4 {
        assert_eq!(h.take(c), vec![]);
    }
    // A leave is batched the same way.
    h.ok(3, leave("r"));
    assert!(matches!(h.take(3).as_slice(), [Got::CloseStream(_)]));
    h.tick(49);
    assert_eq!(h.events(1), vec![]);
    h.tick(1);
    let ev = left("r", &["carol"], LeaveReason::Left);
    assert_eq!(h.events(1), vec![ev.clone()]);
    assert_eq!(h.events(2), vec![ev.clone()]);
    assert_eq!(h.events(4), vec![ev]);
    assert_eq!(h.events(3), vec![]);
}

#[test]
fn joins_over_the_batch_max_split_into_events_of_at_most_100() {
    let mut h = Harness::new(Limits { members_per_room: 1_000, ..Limits::default() });
    h.login(1, "alice");
    h.create(1, "r", 0);
    h.login_many(10, 250);
    for c in 10..260 {
        h.join(c, "r");
    }
    h.take(1);
    h.tick(50);
    let events = h.events(1);
    let sizes: Vec<usize> = events
        .iter()
        .map(|e| match e {
            Event::MembersJoined { members, .. } => members.len(),
            e => panic!("{e:?}"),
        })
        .collect();
    assert_eq!(sizes, vec![100, 100, 50]);
    let users: Vec<String> = events
        .iter()
        .flat_map(|e| match e {
            Event::MembersJoined { members, .. } => members.clone(),
            _ => unreachable!(),
        })
        .map(|m| m.user_id)
        .collect();
    let expected: Vec<String> = (10..260).map(|c| format!("u{c}")).collect();
    assert_eq!(users, expected, "every joiner once, in join order");
    // The first joiner of the batch hears about the 249 after it, split the same way.
    let sizes: Vec<usize> = h
        .events(10)
        .iter()
        .map(|e| match e {
            Event::MembersJoined { members, .. } => members.len(),
            e => panic!("{e:?}"),
        })
        .collect();
    assert_eq!(sizes, vec![100, 100, 49]);
    assert_eq!(h.events(259), vec![]);
}

#[test]
fn a_message_during_a_pending_batch_flushes_presence_first() {
    let mut h = Harness::plain();
    h.login(1, "alice");
    h.login(2, "bob");
    h.login(3, "carol");
    h.create(1, "r", 0);
    h.join(2, "r");
    h.advance(5);
    h.join(3, "r");
    h.advance(5);
    h.take(1);
    h.take(2);
    h.take(3);
    let (_, seq, _) = h.send(3, "r", "hello");
    assert_eq!(seq, 1);
    let a = h.events(1);
    assert_eq!(a.len(), 2, "{a:?}");
    assert_eq!(a[0], joined("r", &["bob", "carol"]));
    assert!(matches!(&a[1], Event::RoomMessage(m) if m.seq == 1 && m.sender == "carol"));
    let b = h.events(2);
    assert_eq!(b.len(), 2, "{b:?}");
    assert_eq!(b[0], joined("r", &["carol"]));
    assert!(matches!(&b[1], Event::RoomMessage(m) if m.seq == 1));
    // The sender gets no copy and no event about itself.
    assert_eq!(h.events(3), vec![]);
    // The batch is not announced a second time when its timer fires.
    h.tick(100);
    for c in 1..=3 {
        assert_eq!(h.take(c), vec![]);
    }
}

#[test]
fn a_batch_started_after_an_early_flush_waits_its_full_window() {
    let mut h = Harness::plain();
    h.login_many(1, 3);
    h.create(1, "r", 0);
    h.join(2, "r");
    h.advance(10);
    // The message flushes bob's join early.
    h.send(2, "r", "hi");
    assert_eq!(h.events(1)[0], joined("r", &["u2"]));
    h.advance(10);
    h.join(3, "r");
    // 30 ms into carol's batch (when bob's batch would have ended): nothing yet.
    h.tick(30);
    assert_eq!(h.events(1), vec![]);
    h.tick(19);
    assert_eq!(h.events(1), vec![]);
    h.tick(1);
    assert_eq!(h.events(1), vec![joined("r", &["u3"])]);
    assert_eq!(h.events(2), vec![joined("r", &["u3"])]);
}

#[test]
fn rooms_over_the_threshold_get_member_count_updates() {
    let mut h = Harness::new(Limits { presence_count_threshold: 3, ..Limits::default() });
    h.login_many(1, 6);
    h.create(1, "r", 0);
    h.join(2, "r");
    h.join(3, "r");
    h.tick(50);
    // Three members: at the threshold, member lists still.
    assert_eq!(h.events(1), vec![joined("r", &["u2", "u3"])]);
    h.take(2);
    h.take(3);
    h.join(4, "r");
    h.join(5, "r");
    h.tick(50);
    let update = Event::MemberCountUpdated { room_id: "r".into(), count: 5 };
    for c in 1..=5 {
        assert_eq!(h.events(c), vec![update.clone()], "conn {c}");
    }
    h.ok(5, leave("r"));
    h.take(5);
    h.tick(50);
    let update = Event::MemberCountUpdated { room_id: "r".into(), count: 4 };
    for c in 1..=4 {
        assert_eq!(h.events(c), vec![update.clone()], "conn {c}");
    }
    // A join and a leave in one window leave the count where it was: nothing to say.
    h.join(6, "r");
    h.ok(6, leave("r"));
    h.take(6);
    h.tick(50);
    for c in 1..=4 {
        assert_eq!(h.events(c), vec![], "conn {c}");
    }
}
