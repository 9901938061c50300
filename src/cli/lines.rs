//! JSON-lines mode: one request object per stdin line, one JSON object per stdout line.
//!
//! Why the first poll happens here: the server handles a connection's requests in the order
//! they arrive, and scripts rely on that (`create_room` then `send_room_message` without
//! waiting). [`Client::request`] writes its frame during its first poll, so each request future
//! is polled once in the reading loop, in input order, and then kept in [`InFlight`] until its
//! answer comes. The loop polls the waiting futures itself instead of spawning tasks, and only
//! the oldest one, so that answers print in request order (tasks on a multi-threaded runtime
//! could finish in either order), interleaved with events.
//!
//! Room-attribute batches are kept here: between `begin_room_attributes_batch` and
//! `end_room_attributes_batch` for a room, its `set_room_attributes` and
//! `delete_room_attributes` lines are answered at once (`"batched": true`) and collected, and
//! the end sends them as one `RoomAttributesBatch`, applied all or nothing by the server.
//!
//! Everything is printed by the one loop below, so lines never tear; its stdout writes are
//! awaited, so a reader that stops reading stops this client from reading events (and QUIC flow
//! control pushes back on the server) rather than growing a buffer.

use std::collections::{HashMap, VecDeque};
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::json::{self, Command, Failure, J};
use crate::client::{Client, ClientError, ClientEvent};
use crate::wire::{AttributeOp, Request, Response};

/// How long the client waits for answers still owed once the connection is gone, for the
/// logout at end of input, and for the `disconnected` event after it.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a server event may be held back behind answers still owed (see [`Held`]).
const HOLD_TIMEOUT: Duration = Duration::from_millis(500);

/// How many server events may be held back at most; past it the loop stops reading events.
const HOLD_CAP: usize = 256;

type Answer = Pin<Box<dyn Future<Output = J> + Send>>;

/// Requests sent and not yet answered, in the order they were sent.
#[derive(Default)]
struct InFlight(VecDeque<Answer>);

impl InFlight {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The oldest answer, once it is ready: answers print in request order (the server
    /// answers in that order too, so nothing waits longer than it would anyway).
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<J> {
        let Some(front) = self.0.front_mut() else { return Poll::Pending };
        let line = std::task::ready!(front.as_mut().poll(cx));
        self.0.pop_front();
        Poll::Ready(line)
    }

    async fn next(&mut self) -> J {
        poll_fn(|cx| self.poll_next(cx)).await
    }
}

/// Server events read while answers are owed, printed once none is.
///
/// Why: an answer travels on the control stream and the events on the room's stream, read by
/// different tasks, so an event the server sent after answering (`room_attributes_updated`
/// after `create_room`'s answer, `members_joined` after `join_room`'s) can be read first.
/// Holding events until every answer owed is printed puts each answer before what the server
/// sent after it. Under a steady stream of pipelined requests the hold ends after
/// [`HOLD_TIMEOUT`] or [`HOLD_CAP`] events anyway, so events are never starved.
#[derive(Default)]
struct Held {
    lines: VecDeque<J>,
    since: Option<tokio::time::Instant>,
}

impl Held {
    fn push(&mut self, line: J) {
        self.since.get_or_insert_with(tokio::time::Instant::now);
        self.lines.push_back(line);
    }

    fn is_full(&self) -> bool {
        self.lines.len() >= HOLD_CAP
    }

    /// When the hold must end at the latest.
    fn deadline(&self) -> Option<tokio::time::Instant> {
        self.since.map(|t| t + HOLD_TIMEOUT)
    }

    async fn flush(&mut self, out: &mut Out) -> std::io::Result<()> {
        self.since = None;
        while let Some(line) = self.lines.pop_front() {
            out.line(&line).await?;
        }
        Ok(())
    }
}

/// Serialized stdout: whole lines, flushed one by one.
struct Out(tokio::io::Stdout);

impl Out {
    async fn line(&mut self, j: &J) -> std::io::Result<()> {
        let mut text = j.to_line();
        text.push('\n');
        self.0.write_all(text.as_bytes()).await?;
        self.0.flush().await
    }
}

/// Runs JSON-lines mode on a logged-in client; returns the exit code.
pub async fn run(client: Client) -> anyhow::Result<i32> {
    let client = Arc::new(client);
    let mut out = Out(tokio::io::stdout());
    out.line(
        &J::obj()
            .with("type", "ready")
            .with("user_id", client.user_id())
            .with("session_id", client.session().session_id),
    )
    .await?;

    let mut input = BufReader::new(tokio::io::stdin()).split(b'\n');
    let mut answers = InFlight::default();
    // Room id -> the steps of its open attribute batch.
    let mut batches: HashMap<String, Vec<AttributeOp>> = HashMap::new();
    let mut input_open = true;
    // Whether this side asked for the end (a logout request or end of input).
    let mut leaving = false;

    let mut held = Held::default();

    let (code, reason) = loop {
        if !input_open && answers.is_empty() {
            held.flush(&mut out).await?;
            return finish(&client, &mut out).await;
        }
        let hold_until = held.deadline();
        tokio::select! {
            segment = input.next_segment(), if input_open => match segment {
                Ok(Some(bytes)) => {
                    let line =
                        handle_line(&client, &bytes, &mut answers, &mut batches, &mut leaving).await;
                    if let Some(line) = line {
                        // Behind answers still owed: keep request order.
                        answers.0.push_back(Box::pin(async move { line }));
                    }
                }
                // A read error on stdin ends the input like EOF does.
                Ok(None) | Err(_) => input_open = false,
            },
            line = answers.next(), if !answers.is_empty() => {
                out.line(&line).await?;
                if answers.is_empty() {
                    held.flush(&mut out).await?;
                }
            }
            () = sleep_until(hold_until), if hold_until.is_some() => held.flush(&mut out).await?,
            event = client.next_event(), if !held.is_full() => match event {
                Some(ClientEvent::Event(e)) if !answers.is_empty() => held.push(json::event(&e)),
                Some(ClientEvent::Event(e)) => out.line(&json::event(&e)).await?,
                // The `ready` line stands for these; the CLI neither migrates nor suspends.
                Some(
                    ClientEvent::Connecting
                    | ClientEvent::Connected { .. }
                    | ClientEvent::Migrated { .. }
                    | ClientEvent::Suspended,
                ) => {}
                Some(ClientEvent::Reconnecting { reason }) => {
                    held.flush(&mut out).await?;
                    out.line(&json::reconnecting(&reason)).await?
                }
                Some(ClientEvent::Resumed { session_resumed, rooms, early_data }) => {
                    held.flush(&mut out).await?;
                    out.line(&json::resumed(session_resumed, &rooms, early_data)).await?
                }
                Some(ClientEvent::Disconnected { code, reason }) => break (code, reason),
                None => break (None, "connection closed".to_string()),
            },
        }
    };
    held.flush(&mut out).await?;

    // The connection is gone: the answers still owed fail fast; print them before the end.
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while !answers.is_empty() {
            let line = answers.next().await;
            out.line(&line).await?;
        }
        std::io::Result::Ok(())
    })
    .await;
    out.line(&json::disconnected(code, &reason)).await?;
    client.shutdown().await;
    Ok(if leaving { 0 } else { 2 })
}

/// Waits until `deadline`; forever when there is none.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// End of input with every answer printed: log out, print only the `disconnected` event.
/// Exits 0 only when the logout was answered: a session the server had already ended (a kick,
/// a close for a protocol error) exits 2 even though the input ended normally.
async fn finish(client: &Client, out: &mut Out) -> anyhow::Result<i32> {
    let logged_out =
        matches!(tokio::time::timeout(DRAIN_TIMEOUT, client.logout()).await, Ok(Ok(())));
    let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
    while let Ok(Some(event)) = tokio::time::timeout_at(deadline, client.next_event()).await {
        if let ClientEvent::Disconnected { code, reason } = event {
            out.line(&json::disconnected(code, &reason)).await?;
            break;
        }
    }
    client.shutdown().await;
    Ok(if logged_out { 0 } else { 2 })
}

/// Parses one input line and issues its request. Returns a line to print now (an invalid
/// request or a locally answered batch step); otherwise the answer is queued in `answers`.
async fn handle_line(
    client: &Arc<Client>,
    bytes: &[u8],
    answers: &mut InFlight,
    batches: &mut HashMap<String, Vec<AttributeOp>>,
    leaving: &mut bool,
) -> Option<J> {
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Some(failed(None, &None, &Failure::invalid_request("line is not UTF-8")));
    };
    if text.trim().is_empty() {
        return None;
    }
    let parsed = json::parse_line(text);
    let command = match parsed.command {
        Ok(c) => c,
        Err(msg) => {
            return Some(failed(parsed.op.as_deref(), &parsed.id, &Failure::invalid_request(msg)))
        }
    };
    let op = command.op_name();
    let id = parsed.id;
    let request = match batch_command(command, batches) {
        Ok(Local::Send(request)) => request,
        Ok(Local::Answer(fields)) => {
            let mut line = json::response_head(Some(op), &id, true);
            line.extend(fields);
            return Some(line);
        }
        Err(msg) => return Some(failed(Some(op), &id, &Failure::invalid_request(msg))),
    };
    let is_logout = matches!(request, Request::Logout);
    *leaving |= is_logout;
    let client = client.clone();
    let mut answer: Answer = Box::pin(async move {
        let result = if is_logout {
            // The library's logout also closes the connection once the server has answered.
            client.logout().await.map(|()| Response::LoggedOut)
        } else {
            client.request(request).await
        };
        render(op, &id, result)
    });
    // The first poll writes the request (see the module comment).
    // Even an answer that is ready at once waits its turn: answers print in request order.
    if let Poll::Ready(line) = poll_fn(|cx| Poll::Ready(answer.as_mut().poll(cx))).await {
        answer = Box::pin(async move { line });
    }
    answers.0.push_back(answer);
    None
}

/// What a command comes to once the open attribute batches have had their say.
enum Local {
    /// A request to send.
    Send(Request),
    /// Handled here: the fields of the successful answer.
    Answer(J),
}

/// Opens, collects into and closes attribute batches; any other command is sent as it is.
fn batch_command(
    command: Command,
    batches: &mut HashMap<String, Vec<AttributeOp>>,
) -> Result<Local, String> {
    match command {
        Command::BeginAttributesBatch { room_id } => {
            if batches.contains_key(&room_id) {
                return Err(format!("an attribute batch for room {room_id:?} is already open"));
            }
            let fields = J::obj().with("room_id", room_id.as_str());
            batches.insert(room_id, Vec::new());
            Ok(Local::Answer(fields))
        }
        Command::EndAttributesBatch { room_id } => match batches.remove(&room_id) {
            Some(ops) => Ok(Local::Send(Request::RoomAttributesBatch { room_id, ops })),
            None => Err(format!(
                "no attribute batch is open for room {room_id:?} (begin_room_attributes_batch first)"
            )),
        },
        Command::Request(request) => {
            if let Some((room_id, step)) = request.attribute_step() {
                if let Some(ops) = batches.get_mut(room_id) {
                    ops.push(step);
                    return Ok(Local::Answer(J::obj().with("batched", true)));
                }
            }
            Ok(Local::Send(request))
        }
    }
}

fn render(op: &str, id: &Option<Value>, result: Result<Response, ClientError>) -> J {
    match result {
        Ok(r) => {
            let mut line = json::response_head(Some(op), id, true);
            line.extend(json::response_fields(&r));
            line
        }
        Err(e) => failed(Some(op), id, &Failure::from(&e)),
    }
}

fn failed(op: Option<&str>, id: &Option<Value>, failure: &Failure) -> J {
    json::response_head(op, id, false).with("error", failure.to_json())
}
