//! `cairn snapshot restore FILE` and `cairn snapshot status FILE`: etcdutl's snapshot
//! commands, with etcdutl's flags, defaults, messages and exit codes, for a Cairn data
//! directory. A snapshot from etcd 3.4–3.7 or from Cairn (both are etcd snapshots) becomes
//! a new Cairn data directory: the store as the snapshot has it (revisions, tombstones,
//! compaction, leases with their keys, auth, alarms) and the membership the flags give.
//!
//! The restore writes into a directory beside the target and renames it into place at the
//! end: a refused or damaged file leaves nothing behind. Start the member with the same
//! `--name`, `--initial-cluster` and `--initial-cluster-token`, as with etcd.
//!
//! May call `etcd_backend`, `bbolt`, `storage`, `cluster`, `config` and `server`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::bbolt::Reader;
use crate::cluster::Identity;
use crate::etcd_backend::{check_snapshot_file, import, ImportOptions};

/// etcdutl's exit codes.
const EXIT_ERROR: u8 = 1;
const EXIT_BAD_ARGS: u8 = 128;

#[derive(Parser, Debug)]
#[command(name = "cairn snapshot", about = "Restores or inspects etcd snapshots")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Restores an etcd member snapshot to a Cairn data directory.
    Restore(RestoreArgs),
    /// Gets the status of a snapshot file.
    Status(StatusArgs),
}

#[derive(Args, Debug)]
struct RestoreArgs {
    file: Vec<PathBuf>,
    /// Path to the output data directory (default: `<name>.etcd`).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Path to the WAL directory: Cairn keeps its log with its store, so it is refused.
    #[arg(long)]
    wal_dir: Option<PathBuf>,
    /// Human-readable name for this member.
    #[arg(long, default_value = "default")]
    name: String,
    /// Initial cluster configuration for restore bootstrap (default: `<name>=http://localhost:2380`).
    #[arg(long)]
    initial_cluster: Option<String>,
    /// Initial cluster token for the etcd cluster during restore bootstrap.
    #[arg(long, default_value = "etcd-cluster")]
    initial_cluster_token: String,
    /// List of this member's peer URLs to advertise to the rest of the cluster.
    #[arg(long, default_value = "http://localhost:2380")]
    initial_advertise_peer_urls: String,
    /// Ignore the snapshot's integrity hash value (required if copied from a data directory).
    #[arg(long)]
    skip_hash_check: bool,
    /// How much to increase the latest revision after restore.
    #[arg(long, default_value_t = 0)]
    bump_revision: u64,
    /// Mark the latest revision after restore as the point of scheduled compaction
    /// (required if --bump-revision > 0, disallowed otherwise).
    #[arg(long)]
    mark_compacted: bool,
}

#[derive(Args, Debug)]
struct StatusArgs {
    file: Vec<PathBuf>,
    /// Output format: simple, json or table.
    #[arg(short = 'w', long = "write-out", default_value = "simple")]
    write_out: String,
}

/// Runs `cairn snapshot ...`; `args` are the words after `cairn`.
pub fn run(args: Vec<OsString>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_BAD_ARGS } else { 0 });
        }
    };
    let result = match cli.command {
        Command::Restore(args) => restore(args),
        Command::Status(args) => status(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => {
            eprintln!("Error: {message}");
            ExitCode::from(code)
        }
    }
}

type CliResult = Result<(), (u8, String)>;

fn bad_args(message: impl Into<String>) -> (u8, String) {
    (EXIT_BAD_ARGS, message.into())
}

fn failed(message: impl std::fmt::Display) -> (u8, String) {
    (EXIT_ERROR, message.to_string())
}

fn one_file(files: &[PathBuf], command: &str) -> Result<PathBuf, (u8, String)> {
    match files {
        [file] => Ok(file.clone()),
        _ => Err(bad_args(format!(
            "snapshot {command} requires exactly one argument"
        ))),
    }
}

fn restore(args: RestoreArgs) -> CliResult {
    let file = one_file(&args.file, "restore")?;
    if (args.bump_revision == 0) == args.mark_compacted {
        return Err(bad_args("--mark-compacted required if --revision-bump > 0"));
    }
    if args.wal_dir.is_some() {
        return Err(bad_args(
            "--wal-dir is not supported: Cairn keeps its Raft log in the data directory",
        ));
    }
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.etcd", args.name)));
    if !dir_is_empty_or_absent(&data_dir) {
        return Err(failed(format!(
            "data-dir {:?} not empty or could not be read",
            data_dir.display().to_string()
        )));
    }
    let identity = restore_identity(&args)?;
    let db_len = check_snapshot_file(&file, args.skip_hash_check).map_err(failed)?;
    tracing::info!(path = %file.display(), bytes = db_len, "restoring snapshot");

    let staging = staging_dir_for(&data_dir);
    let _ = std::fs::remove_dir_all(&staging);
    let imported = (|| -> anyhow::Result<_> {
        let db = Reader::open(&file).map_err(|e| {
            anyhow::anyhow!("snapshot file integrity check failed. 1 errors found.\n{e}")
        })?;
        let member_dir = staging.join("member");
        std::fs::create_dir_all(&member_dir)?;
        let storage = crate::storage::Storage::open(&member_dir.join("db"))?;
        let options = ImportOptions {
            bump_revision: args.bump_revision,
            mark_compacted: args.mark_compacted,
        };
        let imported = import(&db, &storage, options).map_err(|e| {
            anyhow::anyhow!("snapshot file integrity check failed. 1 errors found.\n{e}")
        })?;
        crate::server::save_identity(&storage, &identity)?;
        storage.sync_wal()?;
        drop(storage);
        Ok(imported)
    })();
    let imported = match imported {
        Ok(imported) => imported,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(failed(format!("{e:#}")));
        }
    };
    if let Some(parent) = data_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(failed)?;
    }
    let _ = std::fs::remove_dir(&data_dir);
    std::fs::rename(&staging, &data_dir).map_err(failed)?;
    for member in &identity.initial_members {
        tracing::info!(
            cluster_id = format!("{:x}", identity.cluster_id),
            local_member_id = format!("{:x}", identity.member_id),
            added_peer_id = format!("{:x}", member.id),
            added_peer_peer_urls = ?member.peer_urls,
            "added member"
        );
    }
    tracing::info!(
        path = %file.display(),
        data_dir = %data_dir.display(),
        revision = imported.current_rev,
        revisions = imported.revisions,
        leases = imported.leases,
        "restored snapshot"
    );
    Ok(())
}

/// The member and cluster IDs the flags give, as etcd derives them (and as the member
/// derives them when it starts with the same flags).
fn restore_identity(args: &RestoreArgs) -> Result<Identity, (u8, String)> {
    let spec = args
        .initial_cluster
        .clone()
        .unwrap_or_else(|| format!("{}=http://localhost:2380", args.name));
    let cluster = crate::config::parse_initial_cluster(&spec).map_err(bad_args)?;
    let Some((_, urls)) = cluster.iter().find(|(name, _)| *name == args.name) else {
        return Err(bad_args(format!(
            "couldn't find local name {:?} in the initial cluster configuration",
            args.name
        )));
    };
    let mut advertised: Vec<String> = args
        .initial_advertise_peer_urls
        .split(',')
        .map(|u| {
            crate::cluster::url_string(
                &url::Url::parse(u.trim()).unwrap_or_else(|_| urls[0].clone()),
            )
        })
        .collect();
    let mut listed: Vec<String> = urls.iter().map(crate::cluster::url_string).collect();
    advertised.sort();
    listed.sort();
    if advertised != listed {
        return Err(bad_args(format!(
            "--initial-cluster has {}={} but missing from --initial-advertise-peer-urls={} ",
            args.name,
            listed.join(","),
            args.initial_advertise_peer_urls
        )));
    }
    Ok(Identity::bootstrap(
        &args.name,
        &cluster,
        &args.initial_cluster_token,
        &[],
    ))
}

fn dir_is_empty_or_absent(dir: &Path) -> bool {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

/// Beside the target, so that the final rename stays on one filesystem.
fn staging_dir_for(data_dir: &Path) -> PathBuf {
    let name = data_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "data".into());
    data_dir.with_file_name(format!(".{name}.restoring"))
}

/// etcdutl's `snapshot status`: the CRC-32C of every bucket's name, keys and values, the
/// latest revision, the live keys, the file's size, the storage version.
fn status(args: StatusArgs) -> CliResult {
    let file = one_file(&args.file, "status")?;
    let db = Reader::open(&file).map_err(|e| {
        failed(format!(
            "snapshot file integrity check failed. 1 errors found.\n{e}"
        ))
    })?;
    let status = crate::etcd_backend::status(&db).map_err(|e| {
        failed(format!(
            "snapshot file integrity check failed. 1 errors found.\n{e}"
        ))
    })?;
    let size = humanize_bytes(status.total_size);
    match args.write_out.as_str() {
        "simple" => println!(
            "{:x}, {}, {}, {}, {}",
            status.hash, status.revision, status.total_keys, size, status.version
        ),
        "json" => println!(
            "{}",
            serde_json::json!({
                "hash": status.hash,
                "revision": status.revision,
                "totalKey": status.total_keys,
                "totalSize": status.total_size,
                "version": status.version,
            })
        ),
        "table" => {
            let row = [
                format!("{:x}", status.hash),
                status.revision.to_string(),
                status.total_keys.to_string(),
                size,
                status.version.clone(),
            ];
            let header = ["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE", "VERSION"];
            let widths: Vec<usize> = header
                .iter()
                .zip(&row)
                .map(|(h, r)| h.len().max(r.len()) + 2)
                .collect();
            let rule: String = widths
                .iter()
                .map(|w| format!("+{}", "-".repeat(*w)))
                .collect::<String>()
                + "+";
            let line = |cells: Vec<String>| -> String {
                cells
                    .iter()
                    .zip(&widths)
                    .map(|(c, w)| format!("|{c:^w$}"))
                    .collect::<String>()
                    + "|"
            };
            println!("{rule}");
            println!("{}", line(header.iter().map(|h| h.to_string()).collect()));
            println!("{rule}");
            println!("{}", line(row.to_vec()));
            println!("{rule}");
        }
        other => {
            return Err(bad_args(format!("unknown output format {other:?}")));
        }
    }
    Ok(())
}

/// go-humanize's `Bytes`: SI units, one decimal below 10.
fn humanize_bytes(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    if bytes < 10 {
        return format!("{bytes} B");
    }
    let exponent = ((bytes as f64).ln() / 1000f64.ln()).floor() as usize;
    let value = (bytes as f64 / 1000f64.powi(exponent as i32) * 10.0 + 0.5).floor() / 10.0;
    match value < 10.0 {
        true => format!("{value:.1} {}", UNITS[exponent]),
        false => format!("{value:.0} {}", UNITS[exponent]),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_print_as_go_humanize_prints_them() {
        assert_eq!(super::humanize_bytes(5), "5 B");
        assert_eq!(super::humanize_bytes(57344), "57 kB");
        assert_eq!(super::humanize_bytes(1_500_000), "1.5 MB");
        assert_eq!(super::humanize_bytes(20480), "20 kB");
    }
}
