//! Empty: this crate only pins the published quinn and quinn-proto.
