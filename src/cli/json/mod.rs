//! The JSON-lines protocol of `huddle client`: request objects in, response and event objects
//! out. Pure translation between JSON values and wire types; no IO.
//!
//! [`parse_line`] reads input (`parse`); the output side (`render`) builds [`J`] values
//! (`value`), whose keys keep the order they were written in.

mod parse;
mod render;
mod value;

pub use parse::{parse_line, Command, Parsed, OPS};
pub use render::{
    disconnected, event, member, message, reconnecting, response_fields, response_head, resumed,
    room_recovery, Failure,
};
pub use value::J;
