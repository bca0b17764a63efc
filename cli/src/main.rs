//! `mooring`: the operator's command for Mooring's session stores and client configurations.
//! It reads and repairs redb, SQLite and sled store files without a broker (the store's kind is told
//! from the file), and checks configuration files.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod config;
mod doctor;
mod edit;
mod inspect;
mod read;
mod store_file;
mod table;

/// The version of the JSON the commands print (`"schema"` in every object): raised when a
/// field changes meaning or goes, not when one is added.
pub const JSON_SCHEMA: u32 = 1;

/// What kind of failure ended a command: its exit status, for scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// Anything else (exit status 1).
    Failed,
    /// No store at the path, no such session (3).
    NotFound,
    /// The store is damaged (4).
    Damaged,
    /// A running client holds the store (5).
    Locked,
    /// The configuration file is not valid (6).
    InvalidConfig,
}

impl Class {
    /// The exit status of this class (2 is clap's, for a wrong command line).
    pub fn status(self) -> u8 {
        match self {
            Self::Failed => 1,
            Self::NotFound => 3,
            Self::Damaged => 4,
            Self::Locked => 5,
            Self::InvalidConfig => 6,
        }
    }
}

const EXIT_STATUS: &str = "Exit status: 0 done; 1 failed; 2 wrong command line; 3 not found (no \
store at the path, no such session); 4 damaged store; 5 locked by a running client; 6 invalid \
configuration. With --json, a failure is also printed as one JSON object on standard output: \
{\"schema\": 1, \"error\": \"...\", \"class\": \"locked\"}.";

/// Why a command failed, in words for the person who ran it.
#[derive(Debug)]
pub struct Failure {
    /// What is wrong and what to do.
    pub message: String,
    /// Its kind, which sets the exit status.
    pub class: Class,
}

impl Failure {
    /// A failure described by `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            class: Class::Failed,
        }
    }

    /// The store is damaged.
    pub fn damaged(message: impl Into<String>) -> Self {
        Self::new(format!("damaged store: {}", message.into())).of(Class::Damaged)
    }

    /// Of class `class`.
    pub fn of(mut self, class: Class) -> Self {
        self.class = class;
        self
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "mooring",
    version,
    about = "Inspect and repair Mooring's session stores; check client configurations",
    after_help = EXIT_STATUS
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Print JSON for scripts: one object per line, each with `"schema"` (the version of the
    /// format); `export` always does.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Work on a store file (redb, SQLite) or directory (sled), without a broker, or read a
    /// PostgreSQL store by its connection string. A store a running client holds is refused,
    /// naming the process. `list`, `show`, `export` and `verify`
    /// only read: a redb file is opened read-only (one a killed client left is first brought
    /// back to its last commit, which redb needs before it can be read), never compacted.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Work on a client configuration file (TOML, as `ClientConfig::load` reads it).
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Connect to a live broker once and print what its CONNACK says (Maximum QoS, Retain
    /// Available, Receive Maximum, Maximum Packet Size, Topic Alias Maximum, wildcard,
    /// subscription identifier and shared subscription support, Server Keep Alive), and what
    /// a QoS 2 wildcard subscription is granted. Leaves nothing at the broker (a clean session
    /// that ends with the connection), the broker profile that matches and where the CONNACK
    /// differs from it. With --config, connects as that client would and lists its settings
    /// the broker will refuse or change.
    Doctor {
        /// The broker's address (`mqtt://`, `mqtts://`, `ws://`, `wss://`, `quic://`).
        url: String,
        /// A client configuration to connect with and check.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Check the broker against this profile (aws-iot-core, azure-iot-hub,
        /// azure-event-grid, hivemq-cloud, emqx, mosquitto, generic); without it, the
        /// configuration's, or the one the address names.
        #[arg(long, value_name = "NAME")]
        profile: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Read the file as a client would (TLS files, password sources, the store section,
    /// addresses) and print the settings in effect, defaults included, secrets hidden. Exits
    /// with status 6 naming the file and the key at fault.
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
        /// The store: a redb or SQLite file, a sled directory, or (to read) a PostgreSQL connection string.
        file: PathBuf,
    },
    /// One session's records in order: packet id, stage, QoS, topic, payload size, DUP.
    Show {
        /// The store: a redb or SQLite file, a sled directory, or (to read) a PostgreSQL connection string.
        file: PathBuf,
        /// The session, as `list` names it (CLIENT_ID@SERVER), or a client id with one session.
        #[arg(long, value_name = "KEY")]
        session: String,
        /// Print whole payloads (text, or base64 when not UTF-8), not a preview.
        #[arg(long)]
        payload: bool,
    },
    /// Every record of every session as JSON lines, payloads included (for scripts and support
    /// tickets). Damaged records become lines with an `error` field.
    Export {
        /// The store: a redb or SQLite file, a sled directory, or (to read) a PostgreSQL connection string.
        file: PathBuf,
    },
    /// Check every record's format version, checksum and contents, and each queue's totals.
    /// Exits with status 4 when anything is damaged.
    Verify {
        /// The store: a redb or SQLite file, a sled directory, or (to read) a PostgreSQL connection string.
        file: PathBuf,
    },
    /// Remove a session and every message it holds.
    DropSession {
        /// The store: a redb or SQLite file, a sled directory, or (to read) a PostgreSQL connection string.
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
        /// The store: a redb or SQLite file, a sled directory, or (to read) a PostgreSQL connection string.
        file: PathBuf,
        /// The session, as `list` names it, or a client id with one session.
        #[arg(long, value_name = "KEY")]
        session: String,
        /// The new server address (`mqtt://host:1883`), or `cluster:NAME` for a cluster scope.
        #[arg(long, value_name = "SERVER")]
        to: String,
    },
}

fn run(command: Command, json: bool) -> Result<(), Failure> {
    match command {
        Command::Store(command) => run_store(command, json),
        Command::Config(ConfigCommand::Check { file }) => config::check(&file, json),
        Command::Doctor {
            url,
            config,
            profile,
        } => doctor::doctor(&url, config.as_deref(), profile.as_deref(), json),
        Command::Config(ConfigCommand::Reference) => {
            config::reference();
            Ok(())
        }
    }
}

fn run_store(command: StoreCommand, json: bool) -> Result<(), Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| Failure::new(format!("cannot start: {e}")))?;
    // Reading records runs outside the runtime: a PostgreSQL backend blocks.
    match command {
        StoreCommand::List { file } => runtime.block_on(read::list(&file, json)),
        StoreCommand::Show {
            file,
            session,
            payload,
        } => read::show(&runtime, &file, &session, payload, json),
        StoreCommand::Export { file } => read::export(&file),
        StoreCommand::Verify { file } => read::verify(&file, json),
        StoreCommand::DropSession { file, session, yes } => {
            runtime.block_on(edit::drop_session(&file, &session, yes, json))
        }
        StoreCommand::MoveSession { file, session, to } => {
            runtime.block_on(edit::move_session(&file, &session, &to, json))
        }
    }
}

fn main() -> ExitCode {
    let Cli { command, json } = Cli::parse();
    match run(command, json) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("mooring: {}", failure.message);
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "schema": JSON_SCHEMA,
                        "error": failure.message,
                        "class": failure.class,
                    })
                );
            }
            ExitCode::from(failure.class.status())
        }
    }
}
