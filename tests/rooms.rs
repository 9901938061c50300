//! Room operations against a real server, through the real client library.

mod common;

use std::fmt::Debug;
use std::time::Duration;

use common::*;
use huddle::client::ClientError;
use huddle::wire::{ErrorCode, Event, LeaveReason, Member, RoomConfig, RoomInfo};

/// The error code of a failed call.
fn code<T: Debug>(r: Result<T, ClientError>) -> ErrorCode {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.code().unwrap_or_else(|| panic!("not a server error: {e}")),
    }
}

fn delay(s: u32) -> RoomConfig {
    RoomConfig { destroy_delay_s: s, attributes: Vec::new() }
}

fn names(members: &[Member]) -> Vec<&str> {
    members.iter().map(|m| m.user_id.as_str()).collect()
}

#[tokio::test]
async fn create_join_and_their_errors() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    let st = alice.create_room(info("r"), cfg()).await.unwrap();
    assert!(st.created && !st.already_member);
    assert_eq!((st.room_id.as_str(), st.room_name.as_str()), ("r", "r name"));
    assert_eq!(st.member_count, 1);
    assert_eq!(st.last_seq, 0);
    assert_eq!(code(bob.create_room(info("r"), cfg()).await), ErrorCode::RoomAlreadyExists);
    assert_eq!(code(bob.join_room("missing").await), ErrorCode::RoomDoesNotExist);
    assert_eq!(code(bob.join_room("bad id").await), ErrorCode::InvalidRoomId);
    assert_eq!(code(bob.create_room(info(""), cfg()).await), ErrorCode::InvalidRoomId);
    let long_name = RoomInfo { room_id: "n".into(), room_name: "x".repeat(257) };
    assert_eq!(code(bob.create_room(long_name, cfg()).await), ErrorCode::RoomNameTooLong);
    assert_eq!(
        code(bob.create_room(info("d"), delay(10_801)).await),
        ErrorCode::InvalidDestroyDelay
    );
    // The refused requests changed nothing.
    assert!(bob.query_joined_rooms().await.unwrap().is_empty());
    let st = bob.join_room("r").await.unwrap();
    assert!(!st.created && !st.already_member);
    assert_eq!(st.member_count, 2);
    server.stop().await;
}

#[tokio::test]
async fn member_events_go_to_present_members_not_the_joiner_and_rejoin_is_idempotent() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    let carol = server.client("carol").await;
    alice.create_room(info("r"), cfg()).await.unwrap();
    bob.join_room("r").await.unwrap();
    match next_event(&alice, 2).await {
        Event::MembersJoined { room_id, members } => {
            assert_eq!(room_id, "r");
            assert_eq!(
                members,
                vec![Member { user_id: "bob".into(), user_name: "bob name".into() }]
            );
        }
        e => panic!("{e:?}"),
    }
    // Joining again succeeds, says so, and tells nobody.
    let st = bob.join_room("r").await.unwrap();
    assert!(st.already_member);
    assert_eq!(st.member_count, 2);
    carol.join_room("r").await.unwrap();
    for c in [&alice, &bob] {
        match next_event(c, 2).await {
            Event::MembersJoined { members, .. } => assert_eq!(names(&members), vec!["carol"]),
            e => panic!("{e:?}"),
        }
    }
    // The joiners got no event about themselves, and the re-join made none.
    no_event(&carol, 200).await;
    no_event(&bob, 0).await;
    no_event(&alice, 0).await;
    server.stop().await;
}

#[tokio::test]
async fn enter_creates_or_joins_and_a_joiner_config_is_ignored() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    let attrs = vec![("topic".to_string(), "rust".to_string())];
    let st = alice
        .enter_room(info("e"), RoomConfig { destroy_delay_s: 0, attributes: attrs.clone() })
        .await
        .unwrap();
    assert!(st.created);
    assert_eq!(st.attributes, attrs);
    let other = RoomConfig { destroy_delay_s: 3600, attributes: vec![("x".into(), "y".into())] };
    let other_info = RoomInfo { room_id: "e".into(), room_name: "another name".into() };
    let st = bob.enter_room(other_info, other).await.unwrap();
    assert!(!st.created && !st.already_member);
    assert_eq!(st.member_count, 2);
    assert_eq!(st.attributes, attrs, "the room's attributes stay");
    assert_eq!(st.room_name, "e name", "the room's name stays");
    // The joiner's destroy delay was ignored too: the room goes as soon as it is empty.
    alice.leave_room("e").await.unwrap();
    bob.leave_room("e").await.unwrap();
    assert_eq!(code(alice.join_room("e").await), ErrorCode::RoomDoesNotExist);
    server.stop().await;
}

#[tokio::test]
async fn leave_tells_the_others_and_leaving_twice_is_not_in_room() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    alice.create_room(info("r"), cfg()).await.unwrap();
    bob.join_room("r").await.unwrap();
    next_event(&alice, 2).await;
    bob.leave_room("r").await.unwrap();
    match next_event(&alice, 2).await {
        Event::MembersLeft { room_id, members, reason } => {
            assert_eq!(room_id, "r");
            assert_eq!(names(&members), vec!["bob"]);
            assert_eq!(reason, LeaveReason::Left);
        }
        e => panic!("{e:?}"),
    }
    assert_eq!(code(bob.leave_room("r").await), ErrorCode::NotInRoom);
    assert_eq!(code(bob.leave_room("missing").await), ErrorCode::NotInRoom);
    assert_eq!(alice.query_room_online_count("r").await.unwrap(), 1);
    no_event(&bob, 100).await;
    server.stop().await;
}

#[tokio::test]
async fn leave_all_rooms_and_joined_rooms() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    for id in ["a", "b", "c"] {
        alice.create_room(info(id), cfg()).await.unwrap();
    }
    bob.join_room("b").await.unwrap();
    let rooms = alice.query_joined_rooms().await.unwrap();
    let got: Vec<(&str, u32)> =
        rooms.iter().map(|r| (r.room_id.as_str(), r.member_count)).collect();
    assert_eq!(got, vec![("a", 1), ("b", 2), ("c", 1)]);
    assert_eq!(rooms[1].room_name, "b name");
    let mut left = alice.leave_all_rooms().await.unwrap();
    left.sort();
    assert_eq!(left, vec!["a", "b", "c"]);
    assert!(alice.query_joined_rooms().await.unwrap().is_empty());
    match next_event(&bob, 2).await {
        Event::MembersLeft { room_id, members, reason } => {
            assert_eq!((room_id.as_str(), reason), ("b", LeaveReason::Left));
            assert_eq!(names(&members), vec!["alice"]);
        }
        e => panic!("{e:?}"),
    }
    // The empty rooms are gone; the one with bob is not.
    assert_eq!(code(alice.join_room("a").await), ErrorCode::RoomDoesNotExist);
    assert_eq!(alice.join_room("b").await.unwrap().member_count, 2);
    assert!(alice.leave_all_rooms().await.unwrap().len() == 1);
    assert!(alice.leave_all_rooms().await.unwrap().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn switch_room_moves_between_rooms() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    alice.create_room(info("a"), cfg()).await.unwrap();
    bob.create_room(info("b"), cfg()).await.unwrap();
    // Into a missing room without create: refused, alice stays in a.
    assert_eq!(
        code(alice.switch_room("a", info("missing"), false, cfg()).await),
        ErrorCode::RoomDoesNotExist
    );
    let joined: Vec<String> =
        alice.query_joined_rooms().await.unwrap().into_iter().map(|r| r.room_id).collect();
    assert_eq!(joined, vec!["a"]);
    // Not in the from room.
    assert_eq!(code(bob.switch_room("a", info("c"), true, cfg()).await), ErrorCode::NotInRoom);
    // Into an existing room.
    let st = alice.switch_room("a", info("b"), false, cfg()).await.unwrap();
    assert_eq!((st.room_id.as_str(), st.created, st.member_count), ("b", false, 2));
    match next_event(&bob, 2).await {
        Event::MembersJoined { room_id, members } => {
            assert_eq!(room_id, "b");
            assert_eq!(names(&members), vec!["alice"]);
        }
        e => panic!("{e:?}"),
    }
    assert_eq!(code(bob.join_room("a").await), ErrorCode::RoomDoesNotExist, "a was destroyed");
    // Creating the target.
    let st = alice.switch_room("b", info("c"), true, cfg()).await.unwrap();
    assert_eq!((st.room_id.as_str(), st.created, st.member_count), ("c", true, 1));
    match next_event(&bob, 2).await {
        Event::MembersLeft { members, reason, .. } => {
            assert_eq!(names(&members), vec!["alice"]);
            assert_eq!(reason, LeaveReason::Left);
        }
        e => panic!("{e:?}"),
    }
    let joined: Vec<String> =
        alice.query_joined_rooms().await.unwrap().into_iter().map(|r| r.room_id).collect();
    assert_eq!(joined, vec!["c"]);
    server.stop().await;
}

#[tokio::test]
async fn member_queries() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    alice.create_room(info("r"), cfg()).await.unwrap();
    let mut others = Vec::new();
    for u in ["u1", "u2", "u3", "u4"] {
        let c = server.client(u).await;
        c.join_room("r").await.unwrap();
        others.push(c);
    }
    let mut all = Vec::new();
    let mut flag = String::new();
    let mut sizes = Vec::new();
    loop {
        let page = alice.query_room_members("r", &flag, 2).await.unwrap();
        sizes.push(page.members.len());
        all.extend(page.members);
        if page.next_flag.is_empty() {
            break;
        }
        flag = page.next_flag;
    }
    assert_eq!(sizes, vec![2, 2, 1]);
    assert_eq!(names(&all), vec!["alice", "u1", "u2", "u3", "u4"]);
    assert_eq!(all[1].user_name, "u1 name");
    assert_eq!(code(alice.query_room_members("r", "", 0).await), ErrorCode::InvalidRequest);
    assert_eq!(code(alice.query_room_members("r", "", 101).await), ErrorCode::InvalidRequest);
    assert_eq!(code(alice.query_room_members("nope", "", 10).await), ErrorCode::NotInRoom);

    assert_eq!(alice.query_room_online_count("r").await.unwrap(), 5);
    assert_eq!(code(alice.query_room_online_count("nope").await), ErrorCode::RoomDoesNotExist);

    let ids = vec!["u2".to_string(), "ghost".to_string(), "alice".to_string()];
    let (found, not_found) = alice.query_room_members_by_id("r", ids).await.unwrap();
    assert_eq!(names(&found), vec!["u2", "alice"]);
    assert_eq!(not_found, vec!["ghost"]);
    let eleven: Vec<String> = (0..11).map(|i| format!("x{i}")).collect();
    assert_eq!(code(alice.query_room_members_by_id("r", eleven).await), ErrorCode::TooManyUserIds);

    others[0].leave_room("r").await.unwrap();
    assert_eq!(alice.query_room_online_count("r").await.unwrap(), 4);
    let rooms = others[1].query_joined_rooms().await.unwrap();
    assert_eq!(rooms.len(), 1);
    assert_eq!((rooms[0].room_id.as_str(), rooms[0].member_count), ("r", 4));
    assert!(others[0].query_joined_rooms().await.unwrap().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn last_member_leaving_destroys_the_room() {
    // No offline grace, so that a dropped connection leaves at once too.
    let server = TestServer::start_with(|c| c.limits.offline_grace_s = 0).await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    alice.create_room(info("r"), cfg()).await.unwrap();
    bob.join_room("r").await.unwrap();
    alice.leave_room("r").await.unwrap();
    assert_eq!(bob.query_room_online_count("r").await.unwrap(), 1);
    bob.leave_room("r").await.unwrap();
    assert_eq!(code(alice.join_room("r").await), ErrorCode::RoomDoesNotExist);
    // A disconnect empties a room too.
    alice.create_room(info("s"), cfg()).await.unwrap();
    alice.shutdown().await;
    let mut gone = false;
    for _ in 0..50 {
        if code(bob.join_room("s").await) == ErrorCode::RoomDoesNotExist {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(gone, "the room of a disconnected last member is destroyed");
    server.stop().await;
}

#[tokio::test]
async fn delayed_destroy_and_its_cancellation() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    let carol = server.client("carol").await;
    alice.create_room(info("gone"), delay(1)).await.unwrap();
    alice.create_room(info("kept"), delay(1)).await.unwrap();
    alice.leave_all_rooms().await.unwrap();
    // Both wait for their destroy: they still exist.
    assert_eq!(code(bob.create_room(info("gone"), cfg()).await), ErrorCode::RoomAlreadyExists);
    assert_eq!(bob.query_room_online_count("gone").await.unwrap(), 0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // A join within the delay cancels the destroy.
    let st = bob.join_room("kept").await.unwrap();
    assert_eq!(st.member_count, 1);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(code(carol.join_room("gone").await), ErrorCode::RoomDoesNotExist);
    assert_eq!(carol.join_room("kept").await.unwrap().member_count, 2);
    assert!(carol.create_room(info("gone"), cfg()).await.unwrap().created);
    server.stop().await;
}

#[tokio::test]
async fn rooms_per_user_limit() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    bob.create_room(info("bobs"), cfg()).await.unwrap();
    for i in 0..5 {
        alice.create_room(info(&format!("r{i}")), cfg()).await.unwrap();
    }
    assert_eq!(code(alice.create_room(info("r5"), cfg()).await), ErrorCode::RoomLimitReached);
    assert_eq!(code(alice.join_room("bobs").await), ErrorCode::RoomLimitReached);
    assert_eq!(code(alice.enter_room(info("r6"), cfg()).await), ErrorCode::RoomLimitReached);
    assert_eq!(alice.query_joined_rooms().await.unwrap().len(), 5);
    alice.leave_room("r0").await.unwrap();
    alice.join_room("bobs").await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn members_per_room_limit() {
    let server = TestServer::start_with(|c| c.limits.members_per_room = 2).await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    let carol = server.client("carol").await;
    alice.create_room(info("r"), cfg()).await.unwrap();
    bob.join_room("r").await.unwrap();
    assert_eq!(code(carol.join_room("r").await), ErrorCode::RoomFull);
    assert_eq!(code(carol.enter_room(info("r"), cfg()).await), ErrorCode::RoomFull);
    assert!(bob.join_room("r").await.unwrap().already_member, "a member may re-join a full room");
    bob.leave_room("r").await.unwrap();
    assert_eq!(carol.join_room("r").await.unwrap().member_count, 2);
    server.stop().await;
}

#[tokio::test]
async fn rooms_per_server_limit() {
    let server = TestServer::start_with(|c| c.limits.rooms_per_server = 2).await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    alice.create_room(info("a"), cfg()).await.unwrap();
    bob.create_room(info("b"), cfg()).await.unwrap();
    assert_eq!(code(alice.create_room(info("c"), cfg()).await), ErrorCode::ServerRoomLimit);
    // Joining an existing room is still fine.
    alice.join_room("b").await.unwrap();
    server.stop().await;
}
