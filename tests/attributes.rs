//! Room and member attributes (docs/PROTOCOL.md, section 7.1) against a real server, through
//! the real client library; the default member-attribute member limit (500) is checked on the sans-IO core
//! (through `huddle::fuzzing::harness`).

mod common;

use std::fmt::Debug;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::Poll;

use common::*;
use huddle::client::{Client, ClientError};
use huddle::core::{ConnId, Limits};
use huddle::fuzzing::harness::{Got, Harness};
use huddle::wire::{
    AttributeFailure, ErrorBody, ErrorCode, Event, LeaveReason, MemberAttributes, Request,
    Response, RoomConfig,
};

type Pairs = Vec<(String, String)>;

/// Key/value pairs from string slices.
fn kv(pairs: &[(&str, &str)]) -> Pairs {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn keys(ks: &[&str]) -> Vec<String> {
    ks.iter().map(|k| k.to_string()).collect()
}

fn ids(us: &[&str]) -> Vec<String> {
    keys(us)
}

/// The error code of a failed call.
fn code<T: Debug>(r: Result<T, ClientError>) -> ErrorCode {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.code().unwrap_or_else(|| panic!("not a server error: {e}")),
    }
}

fn not_owned(key: &str) -> AttributeFailure {
    AttributeFailure { key: key.into(), code: ErrorCode::AttributeNotOwned.as_u16() }
}

fn with_attrs(attributes: Pairs) -> RoomConfig {
    RoomConfig { destroy_delay_s: 0, attributes }
}

/// A plain set (no force, no owner update, no delete-after-owner-left).
async fn set(c: &Client, room: &str, pairs: &[(&str, &str)]) -> Vec<AttributeFailure> {
    c.set_room_attributes(room, kv(pairs), false, false, false).await.unwrap()
}

/// A forced set.
async fn force_set(c: &Client, room: &str, pairs: &[(&str, &str)]) -> Vec<AttributeFailure> {
    c.set_room_attributes(room, kv(pairs), true, false, false).await.unwrap()
}

/// The next event, which must be a room_attributes_updated for `room`: (set, deleted).
async fn updated(c: &Client, room: &str) -> (Pairs, Vec<String>) {
    match next_event(c, 5).await {
        Event::RoomAttributesUpdated { room_id, set, deleted } => {
            assert_eq!(room_id, room);
            (set, deleted)
        }
        e => panic!("{}: expected room_attributes_updated, got {e:?}", c.user_id()),
    }
}

/// The next event, which must be members_joined (of `who`).
async fn joined(c: &Client, who: &str) {
    match next_event(c, 5).await {
        Event::MembersJoined { members, .. } => {
            assert_eq!(members.iter().map(|m| m.user_id.as_str()).collect::<Vec<_>>(), [who])
        }
        e => panic!("{}: expected members_joined, got {e:?}", c.user_id()),
    }
}

/// The next event, which must be members_left (of `who`).
async fn left(c: &Client, who: &str) {
    match next_event(c, 5).await {
        Event::MembersLeft { members, reason, .. } => {
            assert_eq!(members.iter().map(|m| m.user_id.as_str()).collect::<Vec<_>>(), [who]);
            assert_eq!(reason, LeaveReason::Left);
        }
        e => panic!("{}: expected members_left, got {e:?}", c.user_id()),
    }
}

/// The next event, which must be room_member_attributes_updated: (members, operated_by).
async fn member_updated(c: &Client) -> (Vec<MemberAttributes>, String) {
    match next_event(c, 5).await {
        Event::RoomMemberAttributesUpdated { members, operated_by, .. } => (members, operated_by),
        e => panic!("{}: expected room_member_attributes_updated, got {e:?}", c.user_id()),
    }
}

async fn query(c: &Client, room: &str) -> Pairs {
    c.query_room_attributes(room).await.unwrap()
}

fn member(user: &str, pairs: &[(&str, &str)]) -> MemberAttributes {
    MemberAttributes { user_id: user.into(), attributes: kv(pairs) }
}

/// Polls every future until all are done, in order at each pass (so requests inside them are
/// written in the order of the list); the outputs in the same order.
async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    poll_fn(|cx| {
        let mut pending = false;
        for (f, out) in futures.iter_mut().zip(outputs.iter_mut()) {
            if out.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *out = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().map(|o| o.expect("every future finished")).collect()
}

/// alice creates `room`, bob joins, and alice's members_joined is consumed.
async fn pair(server: &TestServer, room: &str) -> (Client, Client) {
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    alice.create_room(info(room), cfg()).await.unwrap();
    bob.join_room(room).await.unwrap();
    joined(&alice, "bob").await;
    (alice, bob)
}

#[tokio::test]
async fn a_key_owned_by_a_present_member_changes_only_with_force() {
    let server = TestServer::start().await;
    let (alice, bob) = pair(&server, "r").await;

    assert!(set(&alice, "r", &[("k", "a1")]).await.is_empty());
    for c in [&alice, &bob] {
        assert_eq!(updated(c, "r").await, (kv(&[("k", "a1")]), vec![]));
    }

    // bob's write of alice's key fails for that key alone; his other key is applied.
    let failed = set(&bob, "r", &[("k", "b1"), ("bk", "b")]).await;
    assert_eq!(failed, vec![not_owned("k")]);
    for c in [&alice, &bob] {
        assert_eq!(updated(c, "r").await, (kv(&[("bk", "b")]), vec![]));
    }
    assert_eq!(query(&bob, "r").await, kv(&[("bk", "b"), ("k", "a1")]));

    // The same for a delete, and nothing at all changed: no event.
    let failed = bob.delete_room_attributes("r", keys(&["k"]), false).await.unwrap();
    assert_eq!(failed, vec![not_owned("k")]);
    // Asking for the owner change does not get around the ownership either.
    let failed = bob.set_room_attributes("r", kv(&[("k", "b2")]), false, true, false).await;
    assert_eq!(failed.unwrap(), vec![not_owned("k")]);
    no_event(&alice, 150).await;
    no_event(&bob, 0).await;
    assert_eq!(query(&alice, "r").await, kv(&[("bk", "b"), ("k", "a1")]));

    // With is_force it works, for sets and deletes; alice may touch bob's key only by force too.
    assert!(force_set(&bob, "r", &[("k", "b3")]).await.is_empty());
    for c in [&alice, &bob] {
        assert_eq!(updated(c, "r").await, (kv(&[("k", "b3")]), vec![]));
    }
    let failed = alice.delete_room_attributes("r", keys(&["bk"]), false).await.unwrap();
    assert_eq!(failed, vec![not_owned("bk")]);
    assert!(alice.delete_room_attributes("r", keys(&["bk"]), true).await.unwrap().is_empty());
    for c in [&alice, &bob] {
        assert_eq!(updated(c, "r").await, (vec![], keys(&["bk"])));
    }

    // A forced write does not take the key over: it is still alice's.
    assert_eq!(set(&bob, "r", &[("k", "b4")]).await, vec![not_owned("k")]);
    assert!(set(&alice, "r", &[("k", "a2")]).await.is_empty());
    for c in [&alice, &bob] {
        assert_eq!(updated(c, "r").await, (kv(&[("k", "a2")]), vec![]));
    }

    // Once alice has left, bob may overwrite (and delete) her key without force.
    alice.leave_room("r").await.unwrap();
    left(&bob, "alice").await;
    assert!(set(&bob, "r", &[("k", "b5")]).await.is_empty());
    assert_eq!(updated(&bob, "r").await, (kv(&[("k", "b5")]), vec![]));
    assert_eq!(query(&bob, "r").await, kv(&[("k", "b5")]));
    assert!(bob.delete_room_attributes("r", keys(&["k"]), false).await.unwrap().is_empty());
    assert_eq!(updated(&bob, "r").await, (vec![], keys(&["k"])));
    assert!(query(&bob, "r").await.is_empty());
    no_event(&alice, 100).await;
    server.stop().await;
}

#[tokio::test]
async fn is_update_owner_transfers_ownership() {
    let server = TestServer::start().await;
    let (alice, bob) = pair(&server, "r").await;
    assert!(set(&alice, "r", &[("k", "a1")]).await.is_empty());
    updated(&alice, "r").await;
    updated(&bob, "r").await;

    // Forced and with the owner update: bob now owns k.
    let failed = bob.set_room_attributes("r", kv(&[("k", "b1")]), true, true, false).await;
    assert!(failed.unwrap().is_empty());
    for c in [&alice, &bob] {
        assert_eq!(updated(c, "r").await, (kv(&[("k", "b1")]), vec![]));
    }
    // alice needs force now; bob does not.
    assert_eq!(set(&alice, "r", &[("k", "a2")]).await, vec![not_owned("k")]);
    let failed = alice.delete_room_attributes("r", keys(&["k"]), false).await.unwrap();
    assert_eq!(failed, vec![not_owned("k")]);
    assert!(set(&bob, "r", &[("k", "b2")]).await.is_empty());
    for c in [&alice, &bob] {
        assert_eq!(updated(c, "r").await, (kv(&[("k", "b2")]), vec![]));
    }
    assert!(force_set(&alice, "r", &[("k", "a3")]).await.is_empty());
    for c in [&alice, &bob] {
        assert_eq!(updated(c, "r").await, (kv(&[("k", "a3")]), vec![]));
    }
    // That forced write kept bob as the owner: he deletes without force.
    assert!(bob.delete_room_attributes("r", keys(&["k"]), false).await.unwrap().is_empty());
    for c in [&alice, &bob] {
        assert_eq!(updated(c, "r").await, (vec![], keys(&["k"])));
    }
    no_event(&alice, 100).await;
    server.stop().await;
}

#[tokio::test]
async fn keys_marked_delete_after_owner_left_go_with_their_owner() {
    // No offline grace: a dropped connection leaves at once (resumption is tested elsewhere).
    let server = TestServer::start_with(|c| c.limits.offline_grace_s = 0).await;
    let (alice, bob) = pair(&server, "r").await;
    let failed =
        alice.set_room_attributes("r", kv(&[("k", "1"), ("k2", "2")]), false, false, true).await;
    assert!(failed.unwrap().is_empty());
    assert!(set(&alice, "r", &[("keep", "3")]).await.is_empty());
    // bob takes k2 over (with force and owner update, without the flag): it stays when alice
    // leaves.
    let failed = bob.set_room_attributes("r", kv(&[("k2", "b")]), true, true, false).await;
    assert!(failed.unwrap().is_empty());
    // bob's own flagged key stays while bob does.
    let failed = bob.set_room_attributes("r", kv(&[("bk", "b")]), false, false, true).await;
    assert!(failed.unwrap().is_empty());
    for _ in 0..4 {
        updated(&alice, "r").await;
        updated(&bob, "r").await;
    }

    alice.leave_room("r").await.unwrap();
    left(&bob, "alice").await;
    assert_eq!(updated(&bob, "r").await, (vec![], keys(&["k"])));
    assert_eq!(query(&bob, "r").await, kv(&[("bk", "b"), ("k2", "b"), ("keep", "3")]));
    no_event(&alice, 100).await;
    no_event(&bob, 0).await;

    // A key the owner re-set without the flag loses the flag; alice comes back to check.
    alice.join_room("r").await.unwrap();
    joined(&bob, "alice").await;
    let failed = alice.set_room_attributes("r", kv(&[("f", "1")]), false, false, true).await;
    assert!(failed.unwrap().is_empty());
    assert!(set(&alice, "r", &[("f", "2")]).await.is_empty());
    updated(&bob, "r").await;
    updated(&bob, "r").await;
    alice.leave_room("r").await.unwrap();
    left(&bob, "alice").await;
    no_event(&bob, 150).await;
    assert_eq!(query(&bob, "r").await, kv(&[("bk", "b"), ("f", "2"), ("k2", "b"), ("keep", "3")]));

    // A lost connection is a leave too (reason offline): carol's flagged key goes with her.
    let carol = server.client("carol").await;
    carol.join_room("r").await.unwrap();
    joined(&bob, "carol").await;
    let failed = carol.set_room_attributes("r", kv(&[("c", "1")]), false, false, true).await;
    assert!(failed.unwrap().is_empty());
    updated(&bob, "r").await;
    carol.shutdown().await;
    match next_event(&bob, 5).await {
        Event::MembersLeft { members, reason, .. } => {
            assert_eq!((members[0].user_id.as_str(), reason), ("carol", LeaveReason::Offline));
        }
        e => panic!("{e:?}"),
    }
    assert_eq!(updated(&bob, "r").await, (vec![], keys(&["c"])));

    // The last member's flagged keys go too, while unflagged ones wait with the room for its
    // delayed destroy.
    let delayed = RoomConfig { destroy_delay_s: 60, attributes: kv(&[("i", "1")]) };
    bob.create_room(info("d"), delayed).await.unwrap();
    let failed = bob.set_room_attributes("d", kv(&[("gone", "1")]), false, false, true).await;
    assert!(failed.unwrap().is_empty());
    updated(&bob, "d").await;
    bob.leave_room("d").await.unwrap();
    let st = alice.join_room("d").await.unwrap();
    assert!(!st.created);
    assert_eq!(st.attributes, kv(&[("i", "1")]));
    server.stop().await;
}

#[tokio::test]
async fn room_attribute_limits_at_and_over_their_bounds() {
    // Default limits: 20 keys, key 16 bytes, value 1024 bytes, 5120 bytes of keys and values.
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    for r in ["count", "sizes", "total", "total2"] {
        alice.create_room(info(r), cfg()).await.unwrap();
    }

    // 20 keys are fine; a 21st fails the whole request, in one request or added later.
    let twenty: Pairs = (0..20).map(|i| (format!("k{i:02}"), "v".to_string())).collect();
    let mut twenty_one = twenty.clone();
    twenty_one.push(("k20".into(), "v".into()));
    let r = alice.set_room_attributes("count", twenty_one.clone(), false, false, false).await;
    assert_eq!(code(r), ErrorCode::AttributeCountExceeded);
    assert!(query(&alice, "count").await.is_empty());
    alice.set_room_attributes("count", twenty.clone(), false, false, false).await.unwrap();
    assert_eq!(updated(&alice, "count").await.0, twenty);
    assert_eq!(
        code(alice.set_room_attributes("count", kv(&[("k20", "v")]), false, false, false).await),
        ErrorCode::AttributeCountExceeded
    );
    // Overwriting one of the twenty is not a new key.
    assert!(set(&alice, "count", &[("k00", "w")]).await.is_empty());
    updated(&alice, "count").await;
    assert_eq!(query(&alice, "count").await.len(), 20);

    // Key: 16 bytes fine, 17 not. Value: 1024 fine, 1025 not. A bad pair fails the whole
    // request (the good pair with it), which changes nothing.
    let k16 = "k".repeat(16);
    let k17 = "k".repeat(17);
    let v1024 = "v".repeat(1024);
    let v1025 = "v".repeat(1025);
    let r = alice
        .set_room_attributes(
            "sizes",
            vec![("a".into(), "1".into()), (k17.clone(), "v".into())],
            false,
            false,
            false,
        )
        .await;
    assert_eq!(code(r), ErrorCode::AttributeKeyTooLong);
    let r = alice
        .set_room_attributes(
            "sizes",
            vec![("a".into(), "1".into()), ("b".into(), v1025.clone())],
            false,
            false,
            false,
        )
        .await;
    assert_eq!(code(r), ErrorCode::AttributeValueTooLong);
    assert_eq!(
        code(alice.delete_room_attributes("sizes", vec![k17.clone()], false).await),
        ErrorCode::AttributeKeyTooLong
    );
    assert!(query(&alice, "sizes").await.is_empty());
    let pairs = vec![(k16.clone(), "v".to_string()), ("b".to_string(), v1024.clone())];
    assert!(alice
        .set_room_attributes("sizes", pairs.clone(), false, false, false)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(updated(&alice, "sizes").await.0, pairs);
    let mut sorted = pairs.clone();
    sorted.sort();
    assert_eq!(query(&alice, "sizes").await, sorted);

    // Total: five 2-byte keys with 1022-byte values are exactly 5120 bytes; one more byte is
    // too much, whether it comes from a longer value or from a new key.
    let exact: Pairs = (0..5).map(|i| (format!("t{i}"), "x".repeat(1022))).collect();
    assert_eq!(exact.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>(), 5120);
    alice.set_room_attributes("total", exact.clone(), false, false, false).await.unwrap();
    assert_eq!(updated(&alice, "total").await.0, exact);
    let r = alice
        .set_room_attributes("total", vec![("t0".into(), "x".repeat(1023))], false, false, false)
        .await;
    assert_eq!(code(r), ErrorCode::AttributesTooLarge);
    let r = alice
        .set_room_attributes("total", vec![("z".into(), String::new())], false, false, false)
        .await;
    assert_eq!(code(r), ErrorCode::AttributesTooLarge);
    assert_eq!(query(&alice, "total").await, exact);
    // Shrinking one value makes room again.
    alice
        .set_room_attributes(
            "total",
            vec![("t0".into(), "x".repeat(1021)), ("z".into(), String::new())],
            false,
            false,
            false,
        )
        .await
        .unwrap();
    updated(&alice, "total").await;
    let mut over = exact.clone();
    over[4].1.push('x');
    let r = alice.set_room_attributes("total2", over, false, false, false).await;
    assert_eq!(code(r), ErrorCode::AttributesTooLarge);
    assert!(query(&alice, "total2").await.is_empty());
    no_event(&alice, 100).await;
    server.stop().await;
}

/// Four members of room "m" (alice created it); every members_joined consumed.
async fn four(server: &TestServer) -> Vec<Client> {
    let mut cs: Vec<Client> = Vec::new();
    for u in ["alice", "bob", "carol", "dave"] {
        let c = server.client(u).await;
        if cs.is_empty() {
            c.create_room(info("m"), cfg()).await.unwrap();
        } else {
            c.join_room("m").await.unwrap();
            for earlier in &cs {
                joined(earlier, u).await;
            }
        }
        cs.push(c);
    }
    cs
}

#[tokio::test]
async fn member_attribute_limits_at_and_over_their_bounds() {
    // Only member_attributes_max_members is lowered (500 -> 3), so that four clients can go over
    // it; every other limit keeps its default (30 keys, key 8 bytes, value 64 bytes). The
    // default of 500 is checked on the core in `five_hundred_members_with_attributes_...`.
    let server = TestServer::start_with(|c| c.limits.member_attributes_max_members = 3).await;
    let cs = four(&server).await;
    let (alice, bob, carol, dave) = (&cs[0], &cs[1], &cs[2], &cs[3]);

    // Key 8 bytes fine, 9 not; value 64 fine, 65 not.
    let ok = alice
        .set_room_members_attributes("m", ids(&["alice"]), vec![("k".repeat(8), "v".repeat(64))])
        .await
        .unwrap();
    assert_eq!(
        ok.0,
        vec![MemberAttributes {
            user_id: "alice".into(),
            attributes: vec![("k".repeat(8), "v".repeat(64))]
        }]
    );
    for c in &cs {
        member_updated(c).await;
    }
    let r = alice
        .set_room_members_attributes("m", ids(&["alice"]), vec![("k".repeat(9), "v".into())])
        .await;
    assert_eq!(code(r), ErrorCode::AttributeKeyTooLong);
    let r = alice
        .set_room_members_attributes("m", ids(&["alice"]), vec![("a".into(), "v".repeat(65))])
        .await;
    assert_eq!(code(r), ErrorCode::AttributeValueTooLong);

    // At most 100 user ids per request.
    let many: Vec<String> = (0..101).map(|i| format!("u{i}")).collect();
    let r = alice.set_room_members_attributes("m", many.clone(), kv(&[("a", "1")])).await;
    assert_eq!(code(r), ErrorCode::TooManyUserIds);
    assert_eq!(
        code(alice.query_room_members_attributes("m", many).await),
        ErrorCode::TooManyUserIds
    );

    // 30 keys per member fine (merged with what the member has), a 31st not.
    let twenty_nine: Pairs = (0..29).map(|i| (format!("m{i:02}"), "v".to_string())).collect();
    alice.set_room_members_attributes("m", ids(&["alice"]), twenty_nine).await.unwrap();
    for c in &cs {
        let (members, _) = member_updated(c).await;
        assert_eq!(members[0].attributes.len(), 30);
    }
    let r = alice.set_room_members_attributes("m", ids(&["alice"]), kv(&[("m29", "v")])).await;
    assert_eq!(code(r), ErrorCode::AttributeCountExceeded);
    // Overwriting an existing key is fine.
    alice.set_room_members_attributes("m", ids(&["alice"]), kv(&[("m00", "w")])).await.unwrap();
    for c in &cs {
        member_updated(c).await;
    }

    // Members with attributes: alice has some; bob and carol make three; dave is one too many,
    // alone or in a request with members that are fine (which then changes nothing).
    let r = bob
        .set_room_members_attributes("m", ids(&["bob", "carol", "dave"]), kv(&[("x", "1")]))
        .await;
    assert_eq!(code(r), ErrorCode::MemberAttributesMembersExceeded);
    let got = bob.query_room_members_attributes("m", ids(&["bob", "carol", "dave"])).await.unwrap();
    assert_eq!(got, vec![member("bob", &[]), member("carol", &[]), member("dave", &[])]);
    bob.set_room_members_attributes("m", ids(&["bob", "carol"]), kv(&[("x", "1")])).await.unwrap();
    for c in &cs {
        let (members, by) = member_updated(c).await;
        assert_eq!(members, vec![member("bob", &[("x", "1")]), member("carol", &[("x", "1")])]);
        assert_eq!(by, "bob");
    }
    let r = dave.set_room_members_attributes("m", ids(&["dave"]), kv(&[("x", "1")])).await;
    assert_eq!(code(r), ErrorCode::MemberAttributesMembersExceeded);
    // Members that already have attributes may still change them.
    carol
        .set_room_members_attributes("m", ids(&["carol", "alice"]), kv(&[("m00", "2")]))
        .await
        .unwrap();
    for c in &cs {
        member_updated(c).await;
    }
    // When carol leaves, her attributes go, and dave fits.
    carol.leave_room("m").await.unwrap();
    for c in [alice, bob, dave] {
        left(c, "carol").await;
    }
    dave.set_room_members_attributes("m", ids(&["dave"]), kv(&[("x", "1")])).await.unwrap();
    for c in [alice, bob, dave] {
        member_updated(c).await;
    }
    no_event(alice, 100).await;
    server.stop().await;
}

#[tokio::test]
async fn a_batch_applies_everything_or_nothing_and_is_one_event() {
    let server = TestServer::start().await;
    let (alice, bob) = pair(&server, "r").await;
    let carol = server.client("carol").await;
    carol.join_room("r").await.unwrap();
    joined(&alice, "carol").await;
    joined(&bob, "carol").await;
    let all = [&alice, &bob, &carol];
    assert!(set(&alice, "r", &[("a", "1"), ("a2", "2")]).await.is_empty());
    for c in all {
        updated(c, "r").await;
    }
    let before = query(&bob, "r").await;

    // A step on alice's key without force: the whole batch fails, the earlier step included.
    let mut b = bob.begin_room_attributes_batch("r");
    b.set(kv(&[("x", "1")]), false, false, false).delete(keys(&["a"]), false);
    assert_eq!(code(b.end().await), ErrorCode::AttributeNotOwned);
    let mut b = bob.begin_room_attributes_batch("r");
    b.set(kv(&[("x", "1")]), false, false, false).set(kv(&[("a2", "b")]), false, false, false);
    assert_eq!(code(b.end().await), ErrorCode::AttributeNotOwned);
    // Steps over a limit: the same.
    let mut b = bob.begin_room_attributes_batch("r");
    b.set(kv(&[("x", "1")]), false, false, false).set(
        vec![("y".into(), "v".repeat(1025))],
        false,
        false,
        false,
    );
    assert_eq!(code(b.end().await), ErrorCode::AttributeValueTooLong);
    let mut b = bob.begin_room_attributes_batch("r");
    b.set(kv(&[("x", "1")]), false, false, false).set(
        vec![("k".repeat(17), "v".into())],
        false,
        false,
        false,
    );
    assert_eq!(code(b.end().await), ErrorCode::AttributeKeyTooLong);
    let mut b = bob.begin_room_attributes_batch("r");
    let many: Pairs = (0..19).map(|i| (format!("n{i}"), "v".into())).collect();
    b.set(kv(&[("x", "1")]), false, false, false).set(many, false, false, false);
    assert_eq!(code(b.end().await), ErrorCode::AttributeCountExceeded);
    // 5 bytes already there, 3 + 1020 and 4 x (4 + 1020) more: 5124.
    let mut b = bob.begin_room_attributes_batch("r");
    b.set(vec![("big".into(), "v".repeat(1020))], false, false, false);
    for i in 0..4 {
        b.set(vec![(format!("big{i}"), "v".repeat(1020))], false, false, false);
    }
    assert_eq!(code(b.end().await), ErrorCode::AttributesTooLarge);
    assert_eq!(query(&bob, "r").await, before);
    for c in all {
        no_event(c, 100).await;
    }

    // A good batch: sets and deletes, one of them forced, announced once to every member with
    // the net change (y set then deleted never existed; a2 deleted then set is a set).
    let mut b = bob.begin_room_attributes_batch("r");
    b.set(kv(&[("x", "1"), ("y", "2")]), false, false, false)
        .delete(keys(&["y"]), false)
        .delete(keys(&["a2"]), true)
        .set(kv(&[("z", "3")]), false, false, false)
        .delete(keys(&["a"]), true)
        .set(kv(&[("a2", "bob"), ("x", "11")]), true, false, false);
    b.end().await.unwrap();
    for c in all {
        let (set, deleted) = updated(c, "r").await;
        assert_eq!(set, kv(&[("x", "11"), ("a2", "bob"), ("z", "3")]), "{}", c.user_id());
        assert_eq!(deleted, keys(&["a"]), "{}", c.user_id());
    }
    for c in all {
        no_event(c, 100).await;
    }
    assert_eq!(query(&carol, "r").await, kv(&[("a2", "bob"), ("x", "11"), ("z", "3")]));
    // An empty batch, or one that changes nothing, is fine and silent.
    bob.begin_room_attributes_batch("r").end().await.unwrap();
    let mut b = bob.begin_room_attributes_batch("r");
    b.delete(keys(&["nope"]), false);
    b.end().await.unwrap();
    for c in all {
        no_event(c, 100).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn concurrent_writers_and_every_member_see_the_same_order() {
    const EACH: usize = 50;
    let server = TestServer::start().await;
    let (alice, bob) = pair(&server, "r").await;
    let carol = server.client("carol").await;
    carol.join_room("r").await.unwrap();
    joined(&alice, "carol").await;
    joined(&bob, "carol").await;

    // Both pipeline their sets (forced, so every one applies), interleaved in polling order.
    let mut writes = Vec::new();
    for i in 0..EACH {
        for (c, tag) in [(&alice, "a"), (&bob, "b")] {
            writes.push(c.set_room_attributes(
                "r",
                kv(&[("k", &format!("{tag}{i}"))]),
                true,
                false,
                false,
            ));
        }
    }
    for r in join_all(writes).await {
        assert!(r.unwrap().is_empty());
    }

    let mut seen = Vec::new();
    for c in [&alice, &bob, &carol] {
        let mut values = Vec::new();
        for _ in 0..2 * EACH {
            let (set, deleted) = updated(c, "r").await;
            assert!(deleted.is_empty());
            assert_eq!(set.len(), 1);
            assert_eq!(set[0].0, "k");
            values.push(set[0].1.clone());
        }
        no_event(c, 100).await;
        seen.push(values);
    }
    assert_eq!(seen[0], seen[1], "alice and bob saw different orders");
    assert_eq!(seen[0], seen[2], "alice and carol saw different orders");
    // Each writer's own sets keep their order.
    for tag in ["a", "b"] {
        let mine: Vec<&String> = seen[0].iter().filter(|v| v.starts_with(tag)).collect();
        let expected: Vec<String> = (0..EACH).map(|i| format!("{tag}{i}")).collect();
        assert_eq!(mine.len(), EACH);
        assert!(mine.iter().zip(&expected).all(|(a, b)| *a == b), "{mine:?}");
    }
    let last = seen[0].last().unwrap().clone();
    for c in [&alice, &bob, &carol] {
        assert_eq!(query(c, "r").await, vec![("k".to_string(), last.clone())]);
    }
    server.stop().await;
}

#[tokio::test]
async fn joiners_and_creators_see_current_attributes() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    let carol = server.client("carol").await;

    // Initial attributes: in the create answer, in queries, owned by the creator.
    let initial = kv(&[("b", "2"), ("a", "1")]);
    let st = alice.create_room(info("r"), with_attrs(initial)).await.unwrap();
    assert!(st.created);
    assert_eq!(st.attributes, kv(&[("a", "1"), ("b", "2")]));
    assert_eq!(query(&alice, "r").await, kv(&[("a", "1"), ("b", "2")]));
    let st = bob.join_room("r").await.unwrap();
    assert_eq!(st.attributes, kv(&[("a", "1"), ("b", "2")]));
    joined(&alice, "bob").await;
    assert_eq!(set(&bob, "r", &[("a", "x")]).await, vec![not_owned("a")]);

    // A late joiner gets the current attributes in its join answer (and no event for them).
    assert!(set(&alice, "r", &[("c", "3")]).await.is_empty());
    assert!(alice.delete_room_attributes("r", keys(&["b"]), false).await.unwrap().is_empty());
    for c in [&alice, &bob] {
        updated(c, "r").await;
        updated(c, "r").await;
    }
    let st = carol.join_room("r").await.unwrap();
    assert_eq!(st.attributes, kv(&[("a", "1"), ("c", "3")]));
    no_event(&carol, 150).await;
    // enter_room on an existing room ignores its config's attributes and shows the room's.
    carol.leave_room("r").await.unwrap();
    let st = carol.enter_room(info("r"), with_attrs(kv(&[("q", "q")]))).await.unwrap();
    assert!(!st.created);
    assert_eq!(st.attributes, kv(&[("a", "1"), ("c", "3")]));

    // enter_room that creates a room uses the config's attributes.
    let st = carol.enter_room(info("e"), with_attrs(kv(&[("q", "q")]))).await.unwrap();
    assert!(st.created);
    assert_eq!(st.attributes, kv(&[("q", "q")]));
    server.stop().await;
}

#[tokio::test]
async fn over_limit_initial_attributes_create_no_room() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let twenty_one: Pairs = (0..21).map(|i| (format!("k{i}"), "v".to_string())).collect();
    let five_k_one: Pairs =
        (0..5).map(|i| (format!("t{i}"), "x".repeat(1022 + (i == 0) as usize))).collect();
    let cases = [
        (twenty_one, ErrorCode::AttributeCountExceeded),
        (vec![("k".repeat(17), "v".to_string())], ErrorCode::AttributeKeyTooLong),
        (vec![("k".into(), "v".repeat(1025))], ErrorCode::AttributeValueTooLong),
        (five_k_one, ErrorCode::AttributesTooLarge),
    ];
    for (attrs, expected) in cases {
        assert_eq!(code(alice.create_room(info("r"), with_attrs(attrs.clone())).await), expected);
        assert_eq!(code(alice.enter_room(info("r"), with_attrs(attrs)).await), expected);
        assert_eq!(code(alice.join_room("r").await), ErrorCode::RoomDoesNotExist);
        assert!(alice.query_joined_rooms().await.unwrap().is_empty());
    }
    // At the bounds it works.
    let twenty: Pairs = (0..20).map(|i| (format!("k{i:02}"), "v".to_string())).collect();
    let st = alice.create_room(info("r"), with_attrs(twenty.clone())).await.unwrap();
    assert_eq!(st.attributes, twenty);
    let exact: Pairs = (0..5).map(|i| (format!("t{i}"), "x".repeat(1022))).collect();
    let st = alice.create_room(info("s"), with_attrs(exact.clone())).await.unwrap();
    assert_eq!(st.attributes, exact);
    server.stop().await;
}

#[tokio::test]
async fn a_destroyed_room_takes_its_attributes_along() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    alice.create_room(info("r"), with_attrs(kv(&[("i", "1")]))).await.unwrap();
    set(&alice, "r", &[("k", "v")]).await;
    alice.set_room_members_attributes("r", ids(&["alice"]), kv(&[("m", "1")])).await.unwrap();
    // Destroyed at once when the last member leaves (destroy_delay_s 0).
    alice.leave_room("r").await.unwrap();
    assert_eq!(code(bob.join_room("r").await), ErrorCode::RoomDoesNotExist);
    let st = bob.create_room(info("r"), cfg()).await.unwrap();
    assert!(st.created && st.attributes.is_empty());
    assert!(query(&bob, "r").await.is_empty());
    let (page, flag) = bob.query_room_member_attributes_list("r", "", 100).await.unwrap();
    assert!(page.is_empty() && flag.is_empty());
    let st = alice.join_room("r").await.unwrap();
    assert!(st.attributes.is_empty());
    let got = alice.query_room_members_attributes("r", ids(&["alice"])).await.unwrap();
    assert_eq!(got, vec![member("alice", &[])]);
    server.stop().await;
}

#[tokio::test]
async fn member_attributes_events_queries_and_leaving() {
    let server = TestServer::start().await;
    let (alice, bob) = pair(&server, "r").await;
    let carol = server.client("carol").await;

    let (members, failed) = alice
        .set_room_members_attributes("r", ids(&["bob", "alice", "ghost"]), kv(&[("role", "x")]))
        .await
        .unwrap();
    let expected = vec![member("bob", &[("role", "x")]), member("alice", &[("role", "x")])];
    assert_eq!(members, expected);
    assert_eq!(failed, ids(&["ghost"]));
    for c in [&alice, &bob] {
        assert_eq!(member_updated(c).await, (expected.clone(), "alice".to_string()));
    }
    // Attributes merge; the event carries all of the member's attributes.
    bob.set_room_members_attributes("r", ids(&["bob"]), kv(&[("b", "2"), ("role", "y")]))
        .await
        .unwrap();
    for c in [&alice, &bob] {
        let e = member_updated(c).await;
        assert_eq!(e, (vec![member("bob", &[("b", "2"), ("role", "y")])], "bob".to_string()));
    }

    // Query by ids: members (with or without attributes) in the asked order; others left out.
    let got =
        bob.query_room_members_attributes("r", ids(&["bob", "ghost", "alice"])).await.unwrap();
    assert_eq!(
        got,
        vec![member("bob", &[("b", "2"), ("role", "y")]), member("alice", &[("role", "x")])]
    );

    // The paged list: members with attributes in join order.
    carol.join_room("r").await.unwrap();
    for c in [&alice, &bob] {
        joined(c, "carol").await;
    }
    let (page, flag) = carol.query_room_member_attributes_list("r", "", 1).await.unwrap();
    assert_eq!(page, vec![member("alice", &[("role", "x")])]);
    assert!(!flag.is_empty());
    let (page, flag) = carol.query_room_member_attributes_list("r", &flag, 1).await.unwrap();
    assert_eq!(page, vec![member("bob", &[("b", "2"), ("role", "y")])]);
    // carol has no attributes: bob's page was the last.
    assert!(flag.is_empty(), "{flag}");
    let (page, flag) = carol.query_room_member_attributes_list("r", "", 100).await.unwrap();
    assert_eq!((page.len(), flag.as_str()), (2, ""));
    assert_eq!(
        code(carol.query_room_member_attributes_list("r", "", 0).await),
        ErrorCode::InvalidRequest
    );
    assert_eq!(
        code(carol.query_room_member_attributes_list("r", "x", 1).await),
        ErrorCode::InvalidRequest
    );

    // A member who leaves loses its attributes; back in the room it has none.
    bob.leave_room("r").await.unwrap();
    for c in [&alice, &carol] {
        left(c, "bob").await;
    }
    let (page, _) = carol.query_room_member_attributes_list("r", "", 100).await.unwrap();
    assert_eq!(page, vec![member("alice", &[("role", "x")])]);
    bob.join_room("r").await.unwrap();
    for c in [&alice, &carol] {
        joined(c, "bob").await;
    }
    let got = bob.query_room_members_attributes("r", ids(&["bob"])).await.unwrap();
    assert_eq!(got, vec![member("bob", &[])]);
    for c in [&alice, &bob, &carol] {
        no_event(c, 100).await;
    }

    // Setting no attributes gives nobody attributes: no change, no event, not in the list.
    let (members, failed) =
        carol.set_room_members_attributes("r", ids(&["bob", "ghost"]), vec![]).await.unwrap();
    assert!(members.is_empty(), "{members:?}");
    assert_eq!(failed, ids(&["ghost"]));
    let (page, _) = carol.query_room_member_attributes_list("r", "", 100).await.unwrap();
    assert_eq!(page, vec![member("alice", &[("role", "x")])]);
    for c in [&alice, &bob, &carol] {
        no_event(c, 100).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn attribute_requests_need_membership() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let eve = server.client("eve").await;
    alice.create_room(info("r"), with_attrs(kv(&[("a", "1")]))).await.unwrap();
    assert_eq!(code(eve.query_room_attributes("r").await), ErrorCode::NotInRoom);
    assert_eq!(
        code(eve.query_room_members_attributes("r", ids(&["alice"])).await),
        ErrorCode::NotInRoom
    );
    assert_eq!(
        code(eve.query_room_member_attributes_list("r", "", 10).await),
        ErrorCode::NotInRoom
    );
    assert_eq!(
        code(eve.set_room_attributes("r", kv(&[("e", "1")]), true, false, false).await),
        ErrorCode::NotInRoom
    );
    assert_eq!(
        code(eve.delete_room_attributes("r", keys(&["a"]), true).await),
        ErrorCode::NotInRoom
    );
    let mut b = eve.begin_room_attributes_batch("r");
    b.delete(keys(&["a"]), true);
    assert_eq!(code(b.end().await), ErrorCode::NotInRoom);
    assert_eq!(
        code(eve.set_room_members_attributes("r", ids(&["eve"]), kv(&[("e", "1")])).await),
        ErrorCode::NotInRoom
    );
    assert_eq!(code(eve.query_room_attributes("missing").await), ErrorCode::NotInRoom);
    no_event(&alice, 100).await;
    assert_eq!(query(&alice, "r").await, kv(&[("a", "1")]));
    server.stop().await;
}

/// Sends a request to the sans-IO core; returns its answer and the number of
/// room_member_attributes_updated events the caller got with it.
fn call_core(
    h: &mut Harness,
    conn: ConnId,
    request: Request,
) -> (Result<Response, ErrorBody>, usize) {
    h.take(conn);
    let answer = h.call(conn, request);
    let updates = h
        .take(conn)
        .iter()
        .filter(|g| matches!(g, Got::Event(_, Event::RoomMemberAttributesUpdated { .. })))
        .count();
    (answer, updates)
}

#[test]
fn five_hundred_members_with_attributes_and_not_one_more_by_default() {
    let limits = Limits::default();
    assert_eq!(
        (
            limits.member_attributes_max_members,
            limits.member_attributes_max_keys,
            limits.member_attribute_key_max_bytes,
            limits.member_attribute_value_max_bytes,
        ),
        (500, 30, 8, 64)
    );
    assert_eq!(
        (
            limits.room_attributes_max_keys,
            limits.room_attribute_key_max_bytes,
            limits.room_attribute_value_max_bytes,
            limits.room_attributes_max_total_bytes,
        ),
        (20, 16, 1024, 5120)
    );
    let mut h = Harness::new(limits);
    let users: Vec<String> = (0..502).map(|i| format!("u{i}")).collect();
    for (i, u) in users.iter().enumerate() {
        let conn = i as ConnId;
        h.login(conn, u);
        let request = if i == 0 {
            Request::CreateRoom { info: info("big"), config: cfg() }
        } else {
            Request::JoinRoom { room_id: "big".into() }
        };
        let (answer, _) = call_core(&mut h, conn, request);
        assert!(matches!(answer, Ok(Response::RoomEntered(_))), "{answer:?}");
    }
    // 500 members get attributes, 100 per request (the most ids one request takes).
    for chunk in users[..500].chunks(100) {
        let request = Request::SetRoomMembersAttributes {
            room_id: "big".into(),
            user_ids: chunk.to_vec(),
            attributes: kv(&[("k", "v")]),
        };
        let (answer, updates) = call_core(&mut h, 0, request);
        match answer {
            Ok(Response::RoomMembersAttributesSet { members, failed_user_ids, .. }) => {
                assert_eq!(members.len(), 100);
                assert!(failed_user_ids.is_empty());
            }
            r => panic!("{r:?}"),
        }
        assert_eq!(updates, 1);
    }
    // The 501st does not fit, alone or with a member that already has attributes.
    for user_ids in [vec![users[500].clone()], vec![users[0].clone(), users[501].clone()]] {
        let request = Request::SetRoomMembersAttributes {
            room_id: "big".into(),
            user_ids,
            attributes: kv(&[("k", "w")]),
        };
        let (answer, updates) = call_core(&mut h, 500, request);
        match answer {
            Err(e) => {
                assert_eq!(e.code, ErrorCode::MemberAttributesMembersExceeded.as_u16())
            }
            r => panic!("{r:?}"),
        }
        assert_eq!(updates, 0);
    }
    // Nothing changed, and the 500 still may change theirs.
    let request = Request::QueryRoomMemberAttributesList {
        room_id: "big".into(),
        next_flag: String::new(),
        count: 100,
    };
    let (answer, _) = call_core(&mut h, 1, request);
    match answer {
        Ok(Response::RoomMemberAttributesList { members, next_flag, .. }) => {
            assert_eq!(members.len(), 100);
            assert!(members.iter().all(|m| m.attributes == kv(&[("k", "v")])));
            assert!(!next_flag.is_empty());
        }
        r => panic!("{r:?}"),
    }
    let request = Request::SetRoomMembersAttributes {
        room_id: "big".into(),
        user_ids: vec![users[499].clone()],
        attributes: kv(&[("k", "w")]),
    };
    let (answer, updates) = call_core(&mut h, 499, request);
    assert!(answer.is_ok(), "{answer:?}");
    assert_eq!(updates, 1);
}

#[test]
fn a_set_of_too_many_keys_changes_nothing_and_tells_nobody() {
    let mut h = Harness::new(Limits::default());
    h.login(0, "alice");
    h.login(1, "bob");
    let (answer, _) = call_core(&mut h, 0, Request::CreateRoom { info: info("r"), config: cfg() });
    assert!(answer.is_ok(), "{answer:?}");
    let (answer, _) = call_core(&mut h, 1, Request::JoinRoom { room_id: "r".into() });
    assert!(answer.is_ok(), "{answer:?}");
    let request = Request::SetRoomAttributes {
        room_id: "r".into(),
        attributes: kv(&[("b", "1")]),
        is_force: false,
        is_update_owner: false,
        is_delete_after_owner_left: false,
    };
    assert!(call_core(&mut h, 1, request).0.is_ok());
    h.tick(1_000);
    h.take(0);
    // As many keys as a request frame holds: refused, and nothing of it applied.
    let request = Request::SetRoomAttributes {
        room_id: "r".into(),
        attributes: (0..2_700).map(|i| (format!("key-{i:012}"), "value".to_string())).collect(),
        is_force: true,
        is_update_owner: true,
        is_delete_after_owner_left: false,
    };
    match call_core(&mut h, 0, request).0 {
        Err(e) => assert_eq!(e.code, ErrorCode::AttributeCountExceeded.as_u16(), "{e:?}"),
        r => panic!("{r:?}"),
    }
    match call_core(&mut h, 0, Request::QueryRoomAttributes { room_id: "r".into() }).0 {
        Ok(Response::RoomAttributes { attributes, .. }) => {
            assert_eq!(attributes, kv(&[("b", "1")]))
        }
        r => panic!("{r:?}"),
    }
    assert_eq!(h.take(0), vec![]);
    assert_eq!(h.take(1), vec![], "no attribute event");
}
