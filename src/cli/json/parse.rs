//! Input: one request line (a JSON object) into a [`Command`] for the server or the CLI
//! itself.

use serde_json::{Map, Value};

use crate::wire::{HistoryAnchor, MessageBody, Priority, Request, RoomConfig, RoomInfo};

/// What one valid input line asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// A request for the server.
    Request(Request),
    /// `begin_room_attributes_batch`: from now on, the room's `set_room_attributes` and
    /// `delete_room_attributes` are collected locally instead of being sent.
    BeginAttributesBatch {
        /// The room.
        room_id: String,
    },
    /// `end_room_attributes_batch`: send the collected steps as one atomic batch.
    EndAttributesBatch {
        /// The room.
        room_id: String,
    },
}

impl Command {
    /// The operation name as written in the input.
    pub fn op_name(&self) -> &'static str {
        match self {
            Command::Request(r) => r.op_name(),
            Command::BeginAttributesBatch { .. } => "begin_room_attributes_batch",
            Command::EndAttributesBatch { .. } => "end_room_attributes_batch",
        }
    }
}

/// One parsed input line.
#[derive(Debug)]
pub struct Parsed {
    /// The `"id"` field, echoed in the response.
    pub id: Option<Value>,
    /// The `"op"` field when it is a string.
    pub op: Option<String>,
    /// The command, or why the line is not a valid one.
    pub command: Result<Command, String>,
}

/// Parses one request line: `{"op": "...", "id": any?, ...parameters}`.
pub fn parse_line(line: &str) -> Parsed {
    let value: Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => return Parsed { id: None, op: None, command: Err(format!("bad JSON: {e}")) },
    };
    let Value::Object(mut map) = value else {
        return Parsed { id: None, op: None, command: Err("expected a JSON object".into()) };
    };
    let id = map.remove("id");
    let op = match map.remove("op") {
        Some(Value::String(s)) => s,
        Some(_) => return Parsed { id, op: None, command: Err("\"op\" must be a string".into()) },
        None => return Parsed { id, op: None, command: Err("missing field \"op\"".into()) },
    };
    let command = parse_command(&op, Params(map));
    Parsed { id, op: Some(op), command }
}

/// The parameters of a request, consumed field by field; leftovers are an error.
struct Params(Map<String, Value>);

impl Params {
    /// Removes a field; `null` counts as absent.
    fn take(&mut self, key: &str) -> Option<Value> {
        self.0.remove(key).filter(|v| !v.is_null())
    }

    fn string(&mut self, key: &str) -> Result<String, String> {
        self.opt_string(key)?.ok_or_else(|| format!("missing field \"{key}\""))
    }

    fn opt_string(&mut self, key: &str) -> Result<Option<String>, String> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(format!("field \"{key}\" must be a string")),
        }
    }

    fn opt_u64(&mut self, key: &str) -> Result<Option<u64>, String> {
        match self.take(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| format!("field \"{key}\" must be an integer >= 0")),
        }
    }

    fn opt_u32(&mut self, key: &str) -> Result<Option<u32>, String> {
        match self.opt_u64(key)? {
            None => Ok(None),
            Some(n) => u32::try_from(n)
                .map(Some)
                .map_err(|_| format!("field \"{key}\" must be at most {}", u32::MAX)),
        }
    }

    fn opt_bool(&mut self, key: &str) -> Result<Option<bool>, String> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(_) => Err(format!("field \"{key}\" must be true or false")),
        }
    }

    fn strings(&mut self, key: &str) -> Result<Vec<String>, String> {
        let bad = || format!("field \"{key}\" must be a list of strings");
        match self.take(key) {
            None => Err(format!("missing field \"{key}\"")),
            Some(Value::Array(items)) => items
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s),
                    _ => Err(bad()),
                })
                .collect(),
            Some(_) => Err(bad()),
        }
    }

    /// `attributes`: an object of string values (serde_json sorts the keys; the server keeps
    /// attributes by key, so order does not matter). Absent: none.
    fn attributes(&mut self) -> Result<Vec<(String, String)>, String> {
        Ok(self.opt_attributes()?.unwrap_or_default())
    }

    /// `attributes`, which must be present.
    fn required_attributes(&mut self) -> Result<Vec<(String, String)>, String> {
        self.opt_attributes()?.ok_or_else(|| "missing field \"attributes\"".to_string())
    }

    fn opt_attributes(&mut self) -> Result<Option<Vec<(String, String)>>, String> {
        let bad = || "field \"attributes\" must be an object of string values".to_string();
        match self.take("attributes") {
            None => Ok(None),
            Some(Value::Object(m)) => m
                .into_iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k, s)),
                    _ => Err(bad()),
                })
                .collect::<Result<_, _>>()
                .map(Some),
            Some(_) => Err(bad()),
        }
    }

    fn room_config(&mut self) -> Result<RoomConfig, String> {
        Ok(RoomConfig {
            destroy_delay_s: self.opt_u32("destroy_delay_s")?.unwrap_or(0),
            attributes: self.attributes()?,
        })
    }

    fn priority(&mut self) -> Result<Priority, String> {
        match self.opt_string("priority")? {
            None => Ok(Priority::default()),
            Some(p) => Priority::from_name(&p).ok_or_else(|| {
                format!("field \"priority\" must be low, medium or high, not {p:?}")
            }),
        }
    }

    fn body(&mut self) -> Result<MessageBody, String> {
        match (self.take("text"), self.take("custom")) {
            (Some(Value::String(t)), None) => Ok(MessageBody::Text(t)),
            (Some(_), None) => Err("field \"text\" must be a string".into()),
            (None, Some(Value::Object(mut c))) => {
                let mut c = Params(std::mem::take(&mut c));
                let sub_type = c.opt_u32("sub_type")?.ok_or("missing field \"custom.sub_type\"")?;
                let data = c.opt_string("data")?.unwrap_or_default();
                let data = hex::decode(&data)
                    .map_err(|e| format!("field \"custom.data\" must be hex: {e}"))?;
                c.finish().map_err(|e| format!("in \"custom\": {e}"))?;
                Ok(MessageBody::Custom { sub_type, data })
            }
            (None, Some(_)) => {
                Err("field \"custom\" must be an object {\"sub_type\": N, \"data\": HEX}".into())
            }
            (None, None) => Err("missing field \"text\" (or \"custom\")".into()),
            (Some(_), Some(_)) => Err("give either \"text\" or \"custom\", not both".into()),
        }
    }

    fn finish(self) -> Result<(), String> {
        match self.0.keys().next() {
            None => Ok(()),
            Some(k) => Err(format!("unknown field \"{k}\"")),
        }
    }
}

/// Every operation name the JSON-lines mode accepts.
pub const OPS: &[&str] = &[
    "create_room",
    "join_room",
    "enter_room",
    "leave_room",
    "leave_all_rooms",
    "switch_room",
    "send_room_message",
    "query_room_members",
    "query_room_online_count",
    "query_room_members_by_id",
    "query_joined_rooms",
    "query_history",
    "set_room_attributes",
    "delete_room_attributes",
    "query_room_attributes",
    "begin_room_attributes_batch",
    "end_room_attributes_batch",
    "set_room_members_attributes",
    "query_room_members_attributes",
    "query_room_member_attributes_list",
    "renew_token",
    "ping",
    "logout",
];

fn parse_command(op: &str, mut p: Params) -> Result<Command, String> {
    let command = match op {
        "begin_room_attributes_batch" => {
            Command::BeginAttributesBatch { room_id: p.string("room_id")? }
        }
        "end_room_attributes_batch" => {
            Command::EndAttributesBatch { room_id: p.string("room_id")? }
        }
        _ => Command::Request(parse_request(op, &mut p)?),
    };
    p.finish()?;
    Ok(command)
}

fn parse_request(op: &str, p: &mut Params) -> Result<Request, String> {
    let request = match op {
        "create_room" | "enter_room" => {
            let room_id = p.string("room_id")?;
            let info =
                RoomInfo { room_id, room_name: p.opt_string("room_name")?.unwrap_or_default() };
            let config = p.room_config()?;
            if op == "create_room" {
                Request::CreateRoom { info, config }
            } else {
                Request::EnterRoom { info, config }
            }
        }
        "join_room" => Request::JoinRoom { room_id: p.string("room_id")? },
        "leave_room" => Request::LeaveRoom { room_id: p.string("room_id")? },
        "leave_all_rooms" => Request::LeaveAllRooms,
        "switch_room" => Request::SwitchRoom {
            from_room_id: p.string("from_room_id")?,
            to: RoomInfo {
                room_id: p.string("to_room_id")?,
                room_name: p.opt_string("to_room_name")?.unwrap_or_default(),
            },
            create_if_missing: p.opt_bool("create_if_missing")?.unwrap_or(false),
            config: p.room_config()?,
        },
        "send_room_message" => Request::SendRoomMessage {
            room_id: p.string("room_id")?,
            body: p.body()?,
            priority: p.priority()?,
            client_msg_id: p.opt_string("client_msg_id")?,
        },
        "query_room_members" => Request::QueryRoomMembers {
            room_id: p.string("room_id")?,
            next_flag: p.opt_string("next_flag")?.unwrap_or_default(),
            count: p.opt_u32("count")?.unwrap_or(100),
        },
        "query_room_online_count" => {
            Request::QueryRoomOnlineCount { room_id: p.string("room_id")? }
        }
        "query_room_members_by_id" => Request::QueryRoomMembersById {
            room_id: p.string("room_id")?,
            user_ids: p.strings("user_ids")?,
        },
        "query_joined_rooms" => Request::QueryJoinedRooms,
        "renew_token" => Request::RenewToken { token: p.string("token")? },
        "ping" => Request::Ping,
        "query_history" => {
            let room_id = p.string("room_id")?;
            let anchor = match (p.opt_u64("before_seq")?, p.opt_u64("after_seq")?) {
                (None, None) => HistoryAnchor::Latest,
                (Some(s), None) => HistoryAnchor::BeforeSeq(s),
                (None, Some(s)) => HistoryAnchor::AfterSeq(s),
                (Some(_), Some(_)) => {
                    return Err("give at most one of \"before_seq\" and \"after_seq\"".into())
                }
            };
            Request::QueryHistory { room_id, anchor, count: p.opt_u32("count")?.unwrap_or(20) }
        }
        "set_room_attributes" => Request::SetRoomAttributes {
            room_id: p.string("room_id")?,
            attributes: p.required_attributes()?,
            is_force: p.opt_bool("is_force")?.unwrap_or(false),
            is_update_owner: p.opt_bool("is_update_owner")?.unwrap_or(false),
            is_delete_after_owner_left: p.opt_bool("is_delete_after_owner_left")?.unwrap_or(false),
        },
        "delete_room_attributes" => Request::DeleteRoomAttributes {
            room_id: p.string("room_id")?,
            keys: p.strings("keys")?,
            is_force: p.opt_bool("is_force")?.unwrap_or(false),
        },
        "query_room_attributes" => Request::QueryRoomAttributes { room_id: p.string("room_id")? },
        "set_room_members_attributes" => Request::SetRoomMembersAttributes {
            room_id: p.string("room_id")?,
            user_ids: p.strings("user_ids")?,
            attributes: p.required_attributes()?,
        },
        "query_room_members_attributes" => Request::QueryRoomMembersAttributes {
            room_id: p.string("room_id")?,
            user_ids: p.strings("user_ids")?,
        },
        "query_room_member_attributes_list" => Request::QueryRoomMemberAttributesList {
            room_id: p.string("room_id")?,
            next_flag: p.opt_string("next_flag")?.unwrap_or_default(),
            count: p.opt_u32("count")?.unwrap_or(100),
        },
        "logout" => Request::Logout,
        other => return Err(format!("unknown op {other:?}; known: {}", OPS.join(", "))),
    };
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::AttributeOp;

    fn req(line: &str) -> Result<Request, String> {
        match parse_line(line).command? {
            Command::Request(r) => Ok(r),
            other => Err(format!("not a server request: {other:?}")),
        }
    }

    #[test]
    fn parses_every_op_with_defaults() {
        assert_eq!(
            req(
                r#"{"op":"create_room","room_id":"r1","destroy_delay_s":5,"attributes":{"a":"b"}}"#
            ),
            Ok(Request::CreateRoom {
                info: RoomInfo { room_id: "r1".into(), room_name: String::new() },
                config: RoomConfig {
                    destroy_delay_s: 5,
                    attributes: vec![("a".into(), "b".into())]
                },
            })
        );
        assert_eq!(
            req(r#"{"op":"send_room_message","room_id":"r","text":"hi"}"#),
            Ok(Request::SendRoomMessage {
                room_id: "r".into(),
                body: MessageBody::Text("hi".into()),
                priority: Priority::Low,
                client_msg_id: None,
            })
        );
        assert_eq!(
            req(
                r#"{"op":"send_room_message","room_id":"r","custom":{"sub_type":3,"data":"00ff"},"priority":"high","client_msg_id":"c1"}"#
            ),
            Ok(Request::SendRoomMessage {
                room_id: "r".into(),
                body: MessageBody::Custom { sub_type: 3, data: vec![0, 255] },
                priority: Priority::High,
                client_msg_id: Some("c1".into()),
            })
        );
        assert_eq!(
            req(r#"{"op":"query_room_members","room_id":"r"}"#),
            Ok(Request::QueryRoomMembers {
                room_id: "r".into(),
                next_flag: String::new(),
                count: 100
            })
        );
        assert_eq!(
            req(r#"{"op":"query_history","room_id":"r","after_seq":4}"#),
            Ok(Request::QueryHistory {
                room_id: "r".into(),
                anchor: HistoryAnchor::AfterSeq(4),
                count: 20
            })
        );
        assert_eq!(
            req(
                r#"{"op":"switch_room","from_room_id":"a","to_room_id":"b","create_if_missing":true}"#
            ),
            Ok(Request::SwitchRoom {
                from_room_id: "a".into(),
                to: RoomInfo { room_id: "b".into(), room_name: String::new() },
                create_if_missing: true,
                config: RoomConfig::default(),
            })
        );
        for op in OPS {
            let p = parse_line(&format!(r#"{{"op":"{op}","id":7}}"#));
            assert_eq!(p.op.as_deref(), Some(*op));
            assert_eq!(p.id, Some(Value::from(7)));
        }
    }

    #[test]
    fn parses_attribute_ops() {
        let pairs = |ps: &[(&str, &str)]| -> Vec<(String, String)> {
            ps.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        assert_eq!(
            req(r#"{"op":"set_room_attributes","room_id":"r","attributes":{"b":"2","a":"1"}}"#),
            Ok(Request::SetRoomAttributes {
                room_id: "r".into(),
                attributes: pairs(&[("a", "1"), ("b", "2")]),
                is_force: false,
                is_update_owner: false,
                is_delete_after_owner_left: false,
            })
        );
        assert_eq!(
            req(
                r#"{"op":"set_room_attributes","room_id":"r","attributes":{},"is_force":true,"is_update_owner":true,"is_delete_after_owner_left":true}"#
            ),
            Ok(Request::SetRoomAttributes {
                room_id: "r".into(),
                attributes: Vec::new(),
                is_force: true,
                is_update_owner: true,
                is_delete_after_owner_left: true,
            })
        );
        assert_eq!(
            req(r#"{"op":"delete_room_attributes","room_id":"r","keys":["a","b"]}"#),
            Ok(Request::DeleteRoomAttributes {
                room_id: "r".into(),
                keys: vec!["a".into(), "b".into()],
                is_force: false,
            })
        );
        assert_eq!(
            req(r#"{"op":"query_room_attributes","room_id":"r"}"#),
            Ok(Request::QueryRoomAttributes { room_id: "r".into() })
        );
        assert_eq!(
            parse_line(r#"{"op":"begin_room_attributes_batch","room_id":"r"}"#).command,
            Ok(Command::BeginAttributesBatch { room_id: "r".into() })
        );
        assert_eq!(
            parse_line(r#"{"op":"end_room_attributes_batch","room_id":"r"}"#).command,
            Ok(Command::EndAttributesBatch { room_id: "r".into() })
        );
        assert_eq!(
            req(
                r#"{"op":"set_room_members_attributes","room_id":"r","user_ids":["u"],"attributes":{"k":"v"}}"#
            ),
            Ok(Request::SetRoomMembersAttributes {
                room_id: "r".into(),
                user_ids: vec!["u".into()],
                attributes: pairs(&[("k", "v")]),
            })
        );
        assert_eq!(
            req(r#"{"op":"query_room_members_attributes","room_id":"r","user_ids":["u","v"]}"#),
            Ok(Request::QueryRoomMembersAttributes {
                room_id: "r".into(),
                user_ids: vec!["u".into(), "v".into()],
            })
        );
        assert_eq!(
            req(r#"{"op":"query_room_member_attributes_list","room_id":"r"}"#),
            Ok(Request::QueryRoomMemberAttributesList {
                room_id: "r".into(),
                next_flag: String::new(),
                count: 100,
            })
        );
        assert_eq!(
            req(
                r#"{"op":"query_room_member_attributes_list","room_id":"r","next_flag":"3","count":2}"#
            ),
            Ok(Request::QueryRoomMemberAttributesList {
                room_id: "r".into(),
                next_flag: "3".into(),
                count: 2,
            })
        );
        // Required fields and types.
        for bad in [
            r#"{"op":"set_room_attributes","room_id":"r"}"#,
            r#"{"op":"set_room_attributes","room_id":"r","attributes":{"a":1}}"#,
            r#"{"op":"set_room_attributes","room_id":"r","attributes":{},"is_force":"yes"}"#,
            r#"{"op":"delete_room_attributes","room_id":"r"}"#,
            r#"{"op":"delete_room_attributes","room_id":"r","keys":"a"}"#,
            r#"{"op":"begin_room_attributes_batch"}"#,
            r#"{"op":"end_room_attributes_batch","room_id":"r","x":1}"#,
            r#"{"op":"set_room_members_attributes","room_id":"r","user_ids":["u"]}"#,
            r#"{"op":"query_room_members_attributes","room_id":"r"}"#,
        ] {
            assert!(parse_line(bad).command.is_err(), "{bad}");
        }
    }

    #[test]
    fn batch_steps_are_sets_and_deletes() {
        let set = Request::SetRoomAttributes {
            room_id: "r".into(),
            attributes: vec![("a".into(), "1".into())],
            is_force: true,
            is_update_owner: false,
            is_delete_after_owner_left: true,
        };
        assert_eq!(
            set.attribute_step(),
            Some((
                "r",
                AttributeOp::Set {
                    attributes: vec![("a".into(), "1".into())],
                    is_force: true,
                    is_update_owner: false,
                    is_delete_after_owner_left: true,
                }
            ))
        );
        let del = Request::DeleteRoomAttributes {
            room_id: "r".into(),
            keys: vec!["a".into()],
            is_force: false,
        };
        assert_eq!(
            del.attribute_step(),
            Some(("r", AttributeOp::Delete { keys: vec!["a".into()], is_force: false }))
        );
        assert_eq!(Request::QueryRoomAttributes { room_id: "r".into() }.attribute_step(), None);
    }

    #[test]
    fn bad_lines_say_why() {
        let p = parse_line("not json");
        assert!(p.op.is_none() && p.command.unwrap_err().contains("bad JSON"));
        let p = parse_line(r#"{"op":"nope","id":"x"}"#);
        assert_eq!((p.op.as_deref(), p.id), (Some("nope"), Some(Value::from("x"))));
        assert!(p.command.unwrap_err().contains("unknown op"));
        assert!(req(r#"{"op":"join_room"}"#).unwrap_err().contains("missing field \"room_id\""));
        assert!(req(r#"{"op":"join_room","room_id":3}"#).unwrap_err().contains("must be a string"));
        assert!(req(r#"{"op":"join_room","room_id":"r","x":1}"#).unwrap_err().contains("unknown"));
        assert!(req(r#"{"op":"send_room_message","room_id":"r","text":"a","priority":"urgent"}"#)
            .is_err());
        assert!(req(
            r#"{"op":"send_room_message","room_id":"r","custom":{"sub_type":1,"data":"zz"}}"#
        )
        .unwrap_err()
        .contains("hex"));
        assert!(
            req(r#"{"op":"query_history","room_id":"r","before_seq":1,"after_seq":2}"#).is_err()
        );
        assert!(req(r#"{"op":"query_room_members","room_id":"r","count":-1}"#).is_err());
        assert!(parse_line("[1]").command.is_err());
    }
}
