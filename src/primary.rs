//! A primary node: the only node that takes writes. Every write goes through
//! [`Node::write`](crate::node::Node::write), which commits the change and its log entry in
//! one transaction before anyone is told `OK`, then wakes the replication senders that
//! stream the log to replicas.

use crate::node::Node;
use crate::replication::sender;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Serves replicas on `listener` until `node` shuts down. Tests call this with a listener
/// bound to port 0.
pub async fn serve(node: Arc<Node>, listener: TcpListener) {
    sender::serve(node, listener).await;
}
