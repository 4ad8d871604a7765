//! Delivery of rendered messages: the [`Sender`] port and the two senders the shop ships.
//!
//! A sender is only called for a notification that is committed, and may be called more
//! than once for the same message (the process died after a send, before marking it sent),
//! so every sender must make a repeat harmless. Both senders here are keyed by the
//! notification id, which, like the message itself, is the same on every attempt.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use uuid::Uuid;

/// A message on its way out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// The notification's id, the same on every attempt to send it.
    pub id: Uuid,
    pub to: String,
    pub subject: String,
    pub body: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Any other sender's failure (a mail relay's answer, a test's refusal).
    #[error("{0}")]
    Other(String),
}

/// Delivers messages. Called after the notification was committed, outside any
/// transaction; once `send` succeeded the notification is marked sent, and an `Err` leaves it
/// unsent, to be retried (with backoff, then parked) without handling the event again. The
/// same message may come again under the same id: treat it as the same message.
#[async_trait]
pub trait Sender: Send + Sync + std::fmt::Debug + 'static {
    async fn send(&self, message: &OutgoingMessage) -> Result<(), SendError>;
}

/// Which sender the shop uses, as read from its configuration:
/// `{ kind = "file", dir = "data/mail" }` or `{ kind = "log" }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum SenderConfig {
    /// One `<notification id>.txt` file per message in `dir` (created when needed).
    File { dir: PathBuf },
    /// One info-level log line per message.
    Log,
}

impl SenderConfig {
    pub fn build(&self) -> Arc<dyn Sender> {
        match self {
            Self::File { dir } => Arc::new(FileSender::new(dir.clone())),
            Self::Log => Arc::new(LogSender),
        }
    }
}

/// Writes each message to `<dir>/<notification id>.txt`: a mailbox to look at in development
/// and in tests. A repeat overwrites the same file, so a retried delivery never shows twice.
#[derive(Debug, Clone)]
pub struct FileSender {
    dir: PathBuf,
}

impl FileSender {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the message with this id is written.
    pub fn path_of(&self, id: Uuid) -> PathBuf {
        self.dir.join(format!("{id}.txt"))
    }
}

/// The file's content: headers, a blank line, the body.
fn file_content(message: &OutgoingMessage) -> String {
    let mut content = format!(
        "To: {}\nSubject: {}\n\n{}",
        message.to, message.subject, message.body
    );
    if !content.ends_with('\n') {
        content.push('\n');
    }
    content
}

#[async_trait]
impl Sender for FileSender {
    async fn send(&self, message: &OutgoingMessage) -> Result<(), SendError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| SendError::Io { path, source }
        };
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(io(&self.dir))?;
        let path = self.path_of(message.id);
        // Written beside the target and renamed over it, so a reader (or a crash) never sees
        // half a message.
        let partial = self.dir.join(format!("{}.txt.partial", message.id));
        tokio::fs::write(&partial, file_content(message))
            .await
            .map_err(io(&partial))?;
        tokio::fs::rename(&partial, &path)
            .await
            .map_err(io(&path))?;
        tracing::debug!(notification_id = %message.id, path = %path.display(), "message written");
        Ok(())
    }
}

/// Logs each message at info level; for deployments without a mailbox.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogSender;

#[async_trait]
impl Sender for LogSender {
    async fn send(&self, message: &OutgoingMessage) -> Result<(), SendError> {
        tracing::info!(
            notification_id = %message.id,
            to = %message.to,
            subject = %message.subject,
            body = %message.body,
            "message sent"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(subject: &str) -> OutgoingMessage {
        OutgoingMessage {
            id: Uuid::now_v7(),
            to: "ada@example.com".into(),
            subject: subject.into(),
            body: "Hello Ada,\n\nhi.".into(),
        }
    }

    #[tokio::test]
    async fn file_sender_creates_its_directory_and_overwrites_repeats() {
        let root = tempfile::tempdir().expect("tempdir");
        let sender = FileSender::new(root.path().join("mail").join("out"));
        let first = message("First");
        sender.send(&first).await.expect("send");
        let path = sender.path_of(first.id);
        assert_eq!(
            std::fs::read_to_string(&path).expect("written"),
            "To: ada@example.com\nSubject: First\n\nHello Ada,\n\nhi.\n"
        );

        let repeat = OutgoingMessage {
            subject: "Again".into(),
            ..first
        };
        sender.send(&repeat).await.expect("send again");
        let files: Vec<_> = std::fs::read_dir(sender.dir())
            .expect("dir")
            .map(|entry| {
                entry
                    .expect("entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(files, [format!("{}.txt", repeat.id)]);
        assert!(
            std::fs::read_to_string(&path)
                .expect("written")
                .contains("Subject: Again")
        );
    }

    #[tokio::test]
    async fn file_sender_reports_unwritable_directories() {
        let root = tempfile::tempdir().expect("tempdir");
        let blocker = root.path().join("not-a-dir");
        std::fs::write(&blocker, "").expect("file");
        let error = FileSender::new(&blocker)
            .send(&message("x"))
            .await
            .expect_err("cannot write into a file");
        assert!(matches!(error, SendError::Io { .. }), "{error:?}");
    }

    #[tokio::test]
    async fn log_sender_always_succeeds() {
        LogSender.send(&message("x")).await.expect("logged");
    }

    #[test]
    fn sender_config_reads_from_tagged_maps() {
        let file: SenderConfig =
            serde_json::from_value(serde_json::json!({"kind": "file", "dir": "data/mail"}))
                .expect("file");
        assert_eq!(
            file,
            SenderConfig::File {
                dir: PathBuf::from("data/mail")
            }
        );
        let log: SenderConfig =
            serde_json::from_value(serde_json::json!({"kind": "log"})).expect("log");
        assert_eq!(log, SenderConfig::Log);
        assert!(
            serde_json::from_value::<SenderConfig>(serde_json::json!({"kind": "smtp"})).is_err()
        );
    }
}
