//! `mooring`: the operator's command for Mooring's session stores and client configurations.
//! It reads and repairs redb and sled store files without a broker (the store's kind is told
//! from the file), and checks configuration files.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod config;
mod edit;
mod inspect;
mod read;
mod store_file;
mod table;

/// Why a command failed, in words for the person who ran it.
#[derive(Debug)]
pub struct Failure {
    /// What is wrong and what to do.
    pub message: String,
}

impl Failure {
    /// A failure described by `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// The store is damaged.
    pub fn damaged(message: impl Into<String>) -> Self {
        Self::new(format!("damaged store: {}", message.into()))
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "mooring",
    version,
    about = "Inspect and repair Mooring's session stores; check client configurations"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Work on a store file (redb) or directory (sled), without a broker. A store a running
    /// client holds is refused.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Work on a client configuration file (TOML, as `ClientConfig::load` reads it).
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Read the file as a client would (TLS files, password sources, the store section,
    /// addresses) and print the settings in effect, defaults included, secrets hidden. Exits
    /// with status 1 naming the file and the key at fault.
    Check {
        /// The configuration file.
        file: PathBuf,
    },
    /// Print the reference of every key: its default, an example, what it sets.
    Reference,
}

#[derive(Debug, Subcommand)]
enum StoreCommand {
    /// Every session: queued, in-flight and inbound records, bytes, the age of the oldest
    /// queued message, the last time it was alive, and its expiry.
    List {
        /// The store: a redb file or a sled directory.
        file: PathBuf,
        /// One JSON object per session, one per line.
        #[arg(long)]
        json: bool,
    },
    /// One session's records in order: packet id, stage, QoS, topic, payload size, DUP.
    Show {
        /// The store: a redb file or a sled directory.
        file: PathBuf,
        /// The session, as `list` names it (CLIENT_ID@SERVER), or a client id with one session.
        #[arg(long, value_name = "KEY")]
        session: String,
        /// Print whole payloads (text, or base64 when not UTF-8), not a preview.
        #[arg(long)]
        payload: bool,
        /// One JSON object per record, one per line.
        #[arg(long)]
        json: bool,
    },
    /// Every record of every session as JSON lines, payloads included (for scripts and support
    /// tickets). Damaged records become lines with an `error` field.
    Export {
        /// The store: a redb file or a sled directory.
        file: PathBuf,
    },
    /// Check every record's format version, checksum and contents, and each queue's totals.
    /// Exits with status 1 when anything is damaged.
    Verify {
        /// The store: a redb file or a sled directory.
        file: PathBuf,
        /// The report as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Remove a session and every message it holds.
    DropSession {
        /// The store: a redb file or a sled directory.
        file: PathBuf,
        /// The session, as `list` names it, or a client id with one session.
        #[arg(long, value_name = "KEY")]
        session: String,
        /// Drop it; without this, only say what would be lost.
        #[arg(long)]
        yes: bool,
    },
    /// Move a session to another server's address (a broker whose address changed), so that a
    /// client configured with the new address resumes it.
    MoveSession {
        /// The store: a redb file or a sled directory.
        file: PathBuf,
        /// The session, as `list` names it, or a client id with one session.
        #[arg(long, value_name = "KEY")]
        session: String,
        /// The new server address (`mqtt://host:1883`), or `cluster:NAME` for a cluster scope.
        #[arg(long, value_name = "SERVER")]
        to: String,
    },
}

fn run(command: Command) -> Result<(), Failure> {
    match command {
        Command::Store(command) => run_store(command),
        Command::Config(ConfigCommand::Check { file }) => config::check(&file),
        Command::Config(ConfigCommand::Reference) => {
            config::reference();
            Ok(())
        }
    }
}

fn run_store(command: StoreCommand) -> Result<(), Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| Failure::new(format!("cannot start: {e}")))?;
    runtime.block_on(async move {
        match command {
            StoreCommand::List { file, json } => read::list(&file, json).await,
            StoreCommand::Show {
                file,
                session,
                payload,
                json,
            } => read::show(&file, &session, payload, json).await,
            StoreCommand::Export { file } => read::export(&file),
            StoreCommand::Verify { file, json } => read::verify(&file, json),
            StoreCommand::DropSession { file, session, yes } => {
                edit::drop_session(&file, &session, yes).await
            }
            StoreCommand::MoveSession { file, session, to } => {
                edit::move_session(&file, &session, &to).await
            }
        }
    })
}

fn main() -> ExitCode {
    let Cli { command } = Cli::parse();
    match run(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("mooring: {}", failure.message);
            ExitCode::FAILURE
        }
    }
}
