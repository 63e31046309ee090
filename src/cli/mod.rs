//! The command line: argument parsing, exit codes, and one file per verb.
//!
//! Owns the user-facing contract of ../shared/SPEC.md §1: exit 0 on success, 1 on a
//! failure explained in one `error:` line on stderr naming what and where, 2 on bad usage.
//! It must never panic on any input and never print anything but the JSON document on
//! stdout when `--json` is given.

mod check_config;
mod completions;
mod convert;
mod digest;
mod download;
mod fetch;
mod inspect;
mod list;
mod point;
mod progress;
mod restore;
mod retention;
mod run;
mod sets;
mod snapshot;
mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Where the verbs that need a configuration look for it without `--config` (the unit
/// files' path), unless `$REPLISNAP_CONFIG` names another.
pub const DEFAULT_CONFIG: &str = "/etc/replisnap/replisnap.toml";

#[derive(Parser, Debug)]
#[command(
    name = "replisnap",
    version,
    about = "Back up Redis and Valkey as a permanent replica"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// The daemon: replicate, snapshot on schedule into storage, apply retention.
    Run(run::RunArgs),
    /// Stream through an RDB file in bounded memory: header, aux fields, per-db counts.
    Inspect(inspect::InspectArgs),
    /// Print the 40-hex DEBUG DIGEST a server of the target version answers after loading FILE.
    Digest(digest::DigestArgs),
    /// Parse and validate a config file; print the effective config, secrets redacted.
    CheckConfig(check_config::CheckConfigArgs),
    /// Load and rewrite an RDB file for a target server version (magic, version, encodings).
    Convert(convert::ConvertArgs),
    /// Ask the running daemon (HTTP) for a snapshot now; with --wait, print its id when stored.
    Snapshot(snapshot::SnapshotArgs),
    /// The snapshots in the configured storage, newest first.
    List(list::ListArgs),
    /// Apply (or with --dry-run only show) the retention policy: each snapshot kept or deleted.
    Retention(retention::RetentionArgs),
    /// Copy a stored snapshot to a file, checking length, SHA-256 and CRC-64 on the way.
    Fetch(fetch::FetchArgs),
    /// Prove snapshots good: full parse, CRC, digest and key count against the manifest;
    /// --server also loads it into a real server and compares its DEBUG DIGEST.
    Verify(verify::VerifyArgs),
    /// Push every key of a snapshot into a live server with pipelined RESTORE.
    Restore(restore::RestoreArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(completions::CompletionsArgs),
    /// Print the man page (roff).
    Man(completions::ManArgs),
}

/// Open an RDB file for reading: the reader (header read), the file's size, and its name
/// for messages. Errors name the file.
pub(crate) fn open_rdb(
    path: &std::path::Path,
    relaxed: bool,
) -> anyhow::Result<(crate::rdb::RdbReader<std::fs::File>, u64, String)> {
    use anyhow::Context;
    let name = path.display().to_string();
    let f = std::fs::File::open(path).with_context(|| format!("{name}: cannot open"))?;
    let len = f
        .metadata()
        .with_context(|| format!("{name}: cannot stat"))?
        .len();
    let opts = crate::rdb::Options {
        relaxed_version: relaxed,
        ..crate::rdb::Options::default()
    };
    let reader = crate::rdb::RdbReader::new(f, Some(len), opts)
        .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    Ok((reader, len, name))
}

/// Milliseconds since the Unix epoch, for judging expiries.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Parse the arguments, run the verb, map the outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let result = match cli.command {
        Command::Run(a) => run::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Digest(a) => digest::run(a),
        Command::Convert(a) => convert::run(a),
        Command::CheckConfig(a) => check_config::run(a),
        Command::Snapshot(a) => snapshot::run(a),
        Command::List(a) => list::run(a),
        Command::Retention(a) => retention::run(a),
        Command::Fetch(a) => fetch::run(a),
        Command::Verify(a) => verify::run(a),
        Command::Restore(a) => restore::run(a),
        Command::Completions(a) => {
            completions::completions(a, <Cli as clap::CommandFactory>::command())
        }
        Command::Man(a) => completions::man(a, <Cli as clap::CommandFactory>::command()),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::from(1)
        }
    }
}

/// The error and its causes on one line, each said once. Many of our errors print their
/// cause in their own text (`{path}: {op}: {source}`) and also return it as `source()`,
/// and a context often repeats the path the next error starts with: built from the
/// innermost cause outwards, a layer that already holds the text so far replaces it, a
/// layer the text already holds adds nothing, and a layer ending with the word the text
/// starts with (`local directory /srv/b` + `/srv/b: read directory: …`) shares it.
pub fn one_line(e: &anyhow::Error) -> String {
    let layers: Vec<String> = e.chain().map(|c| c.to_string()).collect();
    let mut msg = String::new();
    for layer in layers.iter().rev() {
        let layer = layer.trim();
        if msg.is_empty() || layer.contains(msg.as_str()) {
            msg = layer.to_string();
        } else if msg.contains(layer) {
        } else {
            match layer.rsplit_once(' ') {
                Some((head, last)) if msg.starts_with(last) && last.len() > 1 => {
                    msg = format!("{head} {msg}");
                }
                _ => msg = format!("{layer}: {msg}"),
            }
        }
    }
    msg.split(['\r', '\n'])
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[derive(Debug, thiserror::Error)]
    #[error("{path}: {op}: {source}")]
    struct Io {
        op: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    }

    #[test]
    fn each_cause_is_said_once() {
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let shown_io = io.to_string();
        let e = anyhow::Error::new(Io {
            op: "read directory",
            path: "/srv/b".into(),
            source: io,
        })
        .context("local directory /srv/b");
        assert_eq!(
            one_line(&e),
            format!("local directory /srv/b: read directory: {shown_io}")
        );
        let e = anyhow::anyhow!("inner").context("outer");
        assert_eq!(one_line(&e), "outer: inner");
        let e = anyhow::anyhow!("a\nb");
        assert_eq!(one_line(&e), "a b");
    }
}
