//! Multi-device: sessions of one user share messages and presence.

use super::*;

#[test]
fn multi_device_sessions_share_messages_and_presence() {
    let mut h = Harness::new(Limits { allow_multi_device: true, ..Limits::default() });
    h.login(1, "alice");
    h.login(2, "alice");
    h.login(3, "bob");
    assert!(h.core.is_logged_in(1) && h.core.is_logged_in(2));
    assert_eq!(h.take(1), vec![], "no kick in multi-device mode");
    h.create(3, "r", 0);
    h.join(1, "r");
    h.tick(50);
    assert_eq!(h.events(3), vec![joined("r", &["alice"])]);
    // The second device joins: bob hears nothing, the member count stays 2.
    let st = h.join(2, "r");
    assert!(!st.already_member, "this session was not in the room");
    assert_eq!(st.member_count, 2);
    h.tick(50);
    assert_eq!(h.events(3), vec![]);
    h.take(1);
    h.take(2);
    // A message from one device reaches the other device and bob, not the sender.
    h.send(1, "r", "from phone");
    assert_eq!(h.events(1), vec![]);
    assert_eq!(message_seqs(&h.events(2)), vec![1]);
    assert_eq!(message_seqs(&h.events(3)), vec![1]);
    // The first device leaves: alice is still a member.
    h.ok(1, leave("r"));
    h.take(1);
    h.tick(50);
    assert_eq!(h.events(3), vec![]);
    h.send(3, "r", "still there?");
    assert_eq!(h.events(1), vec![]);
    assert_eq!(message_seqs(&h.events(2)), vec![2]);
    // The last device goes: now alice left.
    let now = h.now();
    h.core.handle_disconnect(now, 2);
    h.pump();
    h.tick(29_999);
    assert_eq!(h.events(3), vec![], "nobody sees a leave during the offline grace");
    h.tick(1);
    h.tick(50);
    assert_eq!(h.events(3), vec![left("r", &["alice"], LeaveReason::Offline)]);
}
