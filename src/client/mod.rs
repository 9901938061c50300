//! The client library: a logged-in Huddle session over QUIC, with typed operations and events.
//!
//! ```no_run
//! # async fn demo() -> Result<(), huddle::client::ClientError> {
//! use huddle::client::{Client, ClientConfig, ClientEvent};
//! use huddle::wire::{Priority, RoomConfig, RoomInfo};
//!
//! let config = ClientConfig::new("127.0.0.1:7443".parse().unwrap(), "alice", "token...");
//! let client = Client::connect(config).await?;
//! client.enter_room(RoomInfo { room_id: "lobby".into(), room_name: "Lobby".into() }, RoomConfig::default()).await?;
//! client.send_text("lobby", "hello", Priority::Medium).await?;
//! while let Some(event) = client.next_event().await {
//!     if let ClientEvent::Event(e) = event { println!("{e:?}"); }
//! }
//! # Ok(()) }
//! ```
//!
//! One file per concern, each using only those listed before it (`tests::layers_import_downward`
//! checks it): `lock` (the mutex helper), `error`, `config` (with the QUIC configuration),
//! `event` (what the application hears, and `EventSink`, where it goes), `streams` (the
//! readers of server streams and datagrams, and `Activity`, what they tell the supervisor),
//! `link` (a connection and its control stream), `session` (what the client's tasks share),
//! `supervisor` (the stall watchdog, reconnection and resumption) and `api` ([`Client`]).

mod api;
mod config;
mod error;
mod event;
mod link;
mod lock;
mod session;
mod streams;
mod supervisor;

pub use api::{AttributesBatch, Client, HistoryPage, MemberPage, SendAck};
pub use config::{
    client_endpoint, quic_client_config, ClientConfig, TlsSessions, EVENT_QUEUE, MOBILE_KEEP_ALIVE,
    STREAM_RECEIVE_WINDOW,
};
pub use error::{ClientError, ConnectionClosed, Ended};
pub use event::{ClientEvent, ConnectionState, EventListener};
pub use session::Session;

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// The files of this module, lowest first: each may use only those before it.
    const LAYERS: &[&str] =
        &["lock", "error", "config", "event", "streams", "link", "session", "supervisor", "api"];

    /// Imports run downward: no file names `super::X` unless `X` is a lower layer, so none
    /// reaches up into `mod.rs` or into its own layer or a higher one.
    #[test]
    fn layers_import_downward() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/client");
        for (i, layer) in LAYERS.iter().enumerate() {
            let text = std::fs::read_to_string(dir.join(format!("{layer}.rs"))).unwrap();
            // A file's own tests (`use super::*`) are not part of its layer.
            let code = text.split("#[cfg(test)]").next().unwrap_or("");
            for (n, line) in code.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                for (at, _) in code.match_indices("super::") {
                    let rest = &code[at + "super::".len()..];
                    let name: String =
                        rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                    let lower = LAYERS[..i].contains(&name.as_str());
                    assert!(lower, "src/client/{layer}.rs:{}: uses super::{name}: {line}", n + 1);
                }
            }
        }
        let files = std::fs::read_dir(&dir).unwrap().count();
        assert_eq!(files, LAYERS.len() + 1, "a new file in src/client goes into LAYERS");
    }
}
