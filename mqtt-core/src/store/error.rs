//! How a store fails.

/// Why a store could not do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A stored record cannot be read. Nothing was returned for the session.
    #[error(
        "the record {record} of session {session} cannot be read ({reason}); the store is \
         damaged: restore it from a backup, or clear this session to start it anew"
    )]
    Corrupt {
        /// The session, as well as it could be read.
        session: String,
        /// Which record.
        record: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An earlier commit failed; the store accepts no writes until it is opened again.
    #[error(
        "an earlier commit failed ({cause}); the store refuses writes until it is reopened, \
         and nothing after that failure was acknowledged"
    )]
    Poisoned {
        /// What the failed commit reported.
        cause: String,
    },
    /// The session to write holds records already (see [`move_session`](super::move_session)).
    #[error("session {session} holds records already; clear it first or pick another")]
    Occupied {
        /// The session.
        session: String,
    },
    /// The store at `path` could not be opened. `damaged` says the file itself is unreadable
    /// (not a store, truncated, corrupted), as opposed to the system refusing it (permissions,
    /// a missing directory, a full disk); only a damaged store may be set aside
    /// ([`open_or_set_aside`](super::open_or_set_aside)).
    // The cause is in the message only when no source carries it (a chain prints it once).
    #[error(
        "cannot open the store at {path}{}{}",
        if source.is_none() { format!(": {cause}") } else { String::new() },
        if *damaged { " (the file is damaged)" } else { "" }
    )]
    Open {
        /// The file or directory.
        path: String,
        /// Why, in the backend's words.
        cause: String,
        /// Whether the file is damaged.
        damaged: bool,
        /// The underlying error.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// Another process owns the session now: it took the session over (its lease had lapsed,
    /// or it was told to take over), and this process may neither write to the session nor
    /// connect with its client identifier again. Stores shared by several machines fence a
    /// previous owner this way ([`SessionStore::acquire`](super::SessionStore::acquire)).
    #[error(
        "session {session} was taken over by {holder}; this process no longer owns it and \
         must neither write to it nor connect with its client identifier"
    )]
    Fenced {
        /// The session.
        session: String,
        /// Who owns it now, as that process named itself.
        holder: String,
    },
    /// A commit may or may not have been made durable: the store lost its answer (the
    /// connection broke after it was sent) and could not learn afterwards whether it landed.
    /// What it held (an accepted message, an ack) may take effect: with `holder` set, another
    /// process owns the session now and may deliver it. Sending such a message again can
    /// duplicate it; dropping it can lose it. Stores that can read a commit back report this
    /// only when that is impossible too.
    #[error(
        "a commit to session {session} may or may not have been stored ({cause}){}; what it held \
         may still take effect, so sending it again can duplicate it",
        match holder { Some(holder) => format!(", and {holder} owns the session now"), None => String::new() }
    )]
    OutcomeUnknown {
        /// The session.
        session: String,
        /// Who owns the session now, if another process took it over.
        holder: Option<String>,
        /// Why the answer was lost.
        cause: String,
    },
    /// Another process holds the store open.
    #[error(
        "the store at {path} is open in another process; stop that process or use another path"
    )]
    Locked {
        /// Where the store is.
        path: String,
    },
    /// The store was not closed cleanly (its process was killed) and must be recovered before
    /// it can be read without writing: opening it to write does that.
    #[error(
        "the store at {path} was not closed cleanly and needs recovery before it can be read without changing it"
    )]
    NeedsRecovery {
        /// Where the store is.
        path: String,
    },
    /// The store was closed ([`SessionStore::close`](super::SessionStore::close)): it takes no
    /// more sessions and no more writes.
    #[error("the store was closed; open it again to go on")]
    Closed,
    /// The store cannot do what was asked (see the method's documentation).
    #[error("this store cannot {what}")]
    Unsupported {
        /// What it cannot do.
        what: &'static str,
    },
    /// The backend reported an error (I/O, a full disk, a damaged file).
    #[error(
        "{backend} failed{}",
        if source.is_none() { format!(": {message}") } else { String::new() }
    )]
    Backend {
        /// Which store.
        backend: &'static str,
        /// What happened.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl StoreError {
    /// The store at `path` cannot be opened because of `source`; `damaged` as in
    /// [`StoreError::Open`].
    pub fn open(
        path: &std::path::Path,
        damaged: bool,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        let source = source.into();
        Self::Open {
            path: path.display().to_string(),
            cause: source.to_string(),
            damaged,
            source: Some(source),
        }
    }

    /// A backend error with its source.
    pub fn backend(
        backend: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        let source = source.into();
        Self::Backend {
            backend,
            message: source.to_string(),
            source: Some(source),
        }
    }
}

/// An error and each of its causes, once, in one line (`a: b: c`): for a message that must
/// stand alone, such as the cause a poisoned store keeps or a log line. Displaying an error
/// shows only its own part; its causes come through `source`.
pub fn described(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn described_tells_each_cause_once() {
        let io = std::io::Error::other("disk full");
        let error = StoreError::backend("redb store", io);
        assert_eq!(
            error.to_string(),
            "redb store failed",
            "the cause is the source's"
        );
        assert_eq!(described(&error), "redb store failed: disk full");
        let flat = StoreError::Backend {
            backend: "redb store",
            message: "disk full".into(),
            source: None,
        };
        assert_eq!(described(&flat), "redb store failed: disk full");
    }
}
