//! Control requests between nodes (kick, handover, state requests): opaque bytes on
//! `<prefix>.ctl.<node>`, request and reply over core NATS, at most once.

use std::time::Duration;

use async_nats::client::RequestErrorKind;
use async_nats::{Client, Subject, Subscriber};
use bytes::Bytes;
use futures::StreamExt;

use super::bus::NatsBus;
use super::naming;

/// Why a control request got no answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CtlError {
    /// Nobody listens on the node's control subject: the node is gone.
    #[error("no such node")]
    NoResponders,
    /// The node did not answer in time.
    #[error("the node did not answer in time")]
    Timeout,
    /// NATS did not take the request.
    #[error("the cluster bus is unavailable")]
    Unavailable,
}

/// The control requests addressed to this node ([`NatsBus::listen_ctl`]).
pub struct CtlListener {
    client: Client,
    subscription: Subscriber,
}

/// One control request; answer it with [`CtlRequest::respond`].
pub struct CtlRequest {
    client: Client,
    reply: Option<Subject>,
    /// The request's bytes.
    pub payload: Bytes,
}

impl CtlListener {
    /// The next request; `None` once the connection has closed for good.
    pub async fn next(&mut self) -> Option<CtlRequest> {
        let message = self.subscription.next().await?;
        Some(CtlRequest {
            client: self.client.clone(),
            reply: message.reply,
            payload: message.payload,
        })
    }
}

impl CtlRequest {
    /// Sends `answer` to the requester (nothing if it asked for no answer).
    pub async fn respond(self, answer: Bytes) -> Result<(), CtlError> {
        let Some(reply) = self.reply else { return Ok(()) };
        self.client.publish(reply, answer).await.map_err(|_| CtlError::Unavailable)
    }
}

impl NatsBus {
    /// Starts taking the control requests for node `node` (this node's id). Once it returns,
    /// the server knows the subscription: a request sent after it reaches this listener.
    pub async fn listen_ctl(&self, node: u16) -> Result<CtlListener, CtlError> {
        let subject = naming::ctl_subject(&self.inner.opts.prefix, node);
        let subscription =
            self.inner.client.subscribe(subject).await.map_err(|_| CtlError::Unavailable)?;
        // The server handles a connection's operations in order: once a request made after the
        // SUB is answered, the SUB is in place.
        self.inner
            .client
            .request("$JS.API.INFO", Bytes::new())
            .await
            .map_err(|_| CtlError::Unavailable)?;
        Ok(CtlListener { client: self.inner.client.clone(), subscription })
    }

    /// Sends `payload` to node `node` and waits up to `timeout` for its answer.
    pub async fn ctl_request(
        &self,
        node: u16,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, CtlError> {
        let subject = naming::ctl_subject(&self.inner.opts.prefix, node);
        let request = async_nats::client::Request::new().payload(payload).timeout(Some(timeout));
        match self.inner.client.send_request(subject, request).await {
            Ok(message) => Ok(message.payload),
            Err(e) => Err(match e.kind() {
                RequestErrorKind::NoResponders => CtlError::NoResponders,
                RequestErrorKind::TimedOut => CtlError::Timeout,
                _ => CtlError::Unavailable,
            }),
        }
    }
}
