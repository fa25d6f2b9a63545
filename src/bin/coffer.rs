//! The `coffer` command-line tool: a thin layer over the library.

use std::fs;
use std::io::{self, BufRead, BufReader, BufWriter, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use coffer::bundle::{self, BundleReader, ReadLimits, WriteOptions};
use coffer::seal::{self, Identity, Key, OpenLimits, OpenReader, PublicKey, Recipient, SealOptions, SealWriter};
use coffer::{Error, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use zeroize::Zeroizing;

/// Portable, encrypted, deterministic database backups.
#[derive(Parser)]
#[command(name = "coffer", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: databases with history, users, backups and restores over HTTP (docs/SERVER.md).
    #[cfg(feature = "server")]
    Serve {
        /// Server options: --data-dir DIR (./coffer-data), --listen ADDR (127.0.0.1:6363), --config FILE.json.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Turn a directory of JSON collections into a deterministic bundle.
    Bundle {
        /// Directory with NAME.json / NAME.ndjson collections, schema.json, history.json.
        dir: PathBuf,
        /// Output file (`-` for stdout).
        #[arg(short, long)]
        output: String,
        /// Compression threads (0 = all cores).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        #[command(flatten)]
        fmt: Format,
    },
    /// Write a bundle (plain or sealed) back out as a directory.
    Unbundle {
        /// Bundle or sealed bundle (`-` for stdin).
        input: String,
        /// Directory to create (must not exist).
        #[arg(short, long)]
        output: PathBuf,
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        fmt: Format,
    },
    /// Encrypt a file (usually a bundle) to a passphrase or public keys.
    Seal {
        /// Input file (`-` for stdin).
        input: String,
        /// Output file (`-` for stdout).
        #[arg(short, long)]
        output: String,
        /// Seal to this public key (coffer1…) instead of a passphrase; repeatable.
        #[arg(short = 'r', long = "recipient")]
        recipients: Vec<String>,
        /// Read the passphrase from this file (else $COFFER_PASSPHRASE, else a prompt).
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
        /// Public metadata: a JSON object, readable by `inspect` without a key.
        #[arg(long)]
        metadata: Option<String>,
        #[command(flatten)]
        fmt: Format,
    },
    /// Decrypt a sealed file.
    Open {
        /// Sealed file (`-` for stdin).
        input: String,
        /// Output file (`-` for stdout). Nothing is left behind on failure.
        #[arg(short, long)]
        output: String,
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        fmt: Format,
    },
    /// Show what a file is, without any key (or, with --unlock, a sealed bundle's contents).
    Inspect {
        /// Bundle or sealed file (`-` for stdin).
        input: String,
        /// Also unlock a sealed bundle and show its table of contents: only
        /// the header and the last segments are decrypted, whatever the size.
        #[arg(long)]
        unlock: bool,
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        fmt: Format,
    },
    /// Check every tag, hash and digest without writing plaintext anywhere.
    Verify {
        /// Bundle or sealed file (`-` for stdin).
        input: String,
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        fmt: Format,
    },
    /// Create an identity (X25519 private key) and print its public key.
    Keygen {
        /// Write the identity to this file (created with mode 0600; never overwritten).
        #[arg(short, long)]
        output: Option<PathBuf>,
        #[command(flatten)]
        fmt: Format,
    },
}

#[derive(Args)]
struct KeyArgs {
    /// Identity file (COFFER-SECRET-KEY-1…); repeatable. Without it, a passphrase is used.
    #[arg(short = 'i', long = "identity")]
    identities: Vec<PathBuf>,
    /// Read the passphrase from this file (else $COFFER_PASSPHRASE, else a prompt).
    #[arg(long)]
    passphrase_file: Option<PathBuf>,
}

#[derive(Args, Clone, Copy)]
struct Format {
    /// Machine-readable JSON on stdout.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = match &cli.command {
        Command::Bundle { fmt, .. }
        | Command::Unbundle { fmt, .. }
        | Command::Seal { fmt, .. }
        | Command::Open { fmt, .. }
        | Command::Inspect { fmt, .. }
        | Command::Verify { fmt, .. }
        | Command::Keygen { fmt, .. } => fmt.json,
        #[cfg(feature = "server")]
        Command::Serve { .. } => false,
    };
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if json {
                println!("{}", json!({"error": {"code": e.code(), "message": e.to_string()}}));
            }
            eprintln!("error[{}]: {e}", e.code());
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<()> {
    match command {
        #[cfg(feature = "server")]
        Command::Serve { args } => match coffer::server::run_cli(args) {
            0 => Ok(()),
            code => std::process::exit(code),
        },
        Command::Bundle { dir, output, threads, fmt } => {
            let out = Output::create(&output)?;
            let progress = spinner(&format!("bundling {}", dir.display()));
            let (writer, summary) = coffer::dir::bundle_dir(&dir, BufWriter::with_capacity(1 << 20, out), WriteOptions { threads, ..Default::default() })?;
            writer.into_inner().map_err(|e| Error::Io(e.into_error()))?.commit()?;
            progress.finish_and_clear();
            let collections: Vec<Value> = summary.toc.collections.iter().map(|c| json!({"name": c.name, "documents": c.documents})).collect();
            report(
                fmt,
                &output,
                json!({"digest": summary.toc.digest, "bytes": summary.bytes, "raw_bytes": summary.toc.raw_bytes, "collections": collections, "commits": summary.toc.commits}),
                || format!("bundle {} ({} bytes from {} bytes of content), digest {}", output, summary.bytes, summary.toc.raw_bytes, summary.toc.digest),
            )
        }
        Command::Unbundle { input, output, key, fmt } => {
            let (plain, _) = plaintext_reader(&input, &key)?;
            let summary = coffer::dir::unbundle_to_dir(plain, &output)?;
            let value = serde_json::to_value(&summary).map_err(|e| Error::Io(e.into()))?;
            report(fmt, "", value, || {
                format!("{}: {} collections, {} documents, {} commits", output.display(), summary.collections, summary.documents, summary.commits)
            })
        }
        Command::Seal { input, output, recipients, passphrase_file, metadata, fmt } => {
            let recipients = if recipients.is_empty() {
                vec![Recipient::Passphrase(passphrase(passphrase_file.as_deref(), true)?)]
            } else {
                recipients.iter().map(|r| r.parse::<PublicKey>().map(Recipient::X25519)).collect::<Result<_>>()?
            };
            let metadata = match metadata {
                Some(text) => match serde_json::from_str::<Value>(&text) {
                    Ok(Value::Object(map)) => Some(map),
                    _ => return Err(Error::InvalidInput("--metadata must be a JSON object".into())),
                },
                None => None,
            };
            let (mut reader, len) = open_input(&input)?;
            let out = Output::create(&output)?;
            let mut writer = SealWriter::new(out, &recipients, &SealOptions { metadata, ..SealOptions::default() })?;
            let bar = progress(len, "sealing");
            copy(&mut reader, &mut writer, &bar)?;
            writer.finish()?.commit()?;
            bar.finish_and_clear();
            report(fmt, &output, json!({"output": output, "recipients": recipients.len()}), || format!("sealed {input} to {output}"))
        }
        Command::Open { input, output, key, fmt } => {
            let (mut reader, len) = open_input(&input)?;
            let keys = keys(&key)?;
            let mut plain = OpenReader::new(&mut reader, &keys, &OpenLimits::default())?;
            let mut out = Output::create(&output)?;
            let bar = progress(len, "opening");
            copy(&mut plain, &mut out, &bar)?;
            out.commit()?;
            bar.finish_and_clear();
            report(fmt, &output, json!({"output": output}), || format!("opened {input} into {output}"))
        }
        Command::Inspect { input, unlock, key, fmt } => inspect(&input, unlock.then_some(&key), fmt),
        Command::Verify { input, key, fmt } => {
            let (plain, sealed) = plaintext_reader(&input, &key)?;
            let mut plain = BufReader::with_capacity(1 << 20, plain);
            let is_bundle = plain.fill_buf()?.starts_with(&bundle::MAGIC);
            let mut result = json!({"ok": true, "sealed": sealed});
            if is_bundle {
                let toc = BundleReader::new(plain, ReadLimits::default())?.read_to_end()?;
                result["digest"] = json!(toc.digest);
                result["documents"] = json!(toc.collections.iter().map(|c| c.documents).sum::<u64>());
                result["commits"] = json!(toc.commits);
            } else if sealed {
                io::copy(&mut plain, &mut io::sink()).map_err(coffer::error::into_error)?;
            } else {
                return Err(Error::NotABundle("not a coffer bundle or sealed file".into()));
            }
            report(fmt, "", result.clone(), || {
                let what = if is_bundle { format!("bundle digest {}", result["digest"].as_str().unwrap_or("")) } else { "payload".to_string() };
                format!("OK: every {}tag and hash verified ({what})", if sealed { "segment " } else { "" })
            })
        }
        Command::Keygen { output, fmt } => {
            let identity = Identity::generate()?;
            let public = identity.public().to_string();
            match &output {
                Some(path) => {
                    write_secret_file(path, identity.to_file_string().as_bytes())?;
                    if fmt.json {
                        println!("{}", json!({"public_key": public, "identity_file": path}));
                    } else {
                        println!("{public}");
                    }
                    Ok(())
                }
                None => {
                    print!("{}", identity.to_file_string().as_str());
                    eprintln!("public key: {public}");
                    Ok(())
                }
            }
        }
    }
}

/// Prints the result: JSON on stdout with `--json` (on stderr when stdout
/// carries the data, i.e. `output` is `-`), else a line of text on stderr.
fn report(fmt: Format, output: &str, value: Value, text: impl FnOnce() -> String) -> Result<()> {
    if fmt.json && output != "-" {
        println!("{value}");
    } else if fmt.json {
        eprintln!("{value}");
    } else {
        eprintln!("{}", text());
    }
    Ok(())
}

fn inspect(input: &str, unlock: Option<&KeyArgs>, fmt: Format) -> Result<()> {
    let mut value = json!({});
    if input != "-" {
        let mut file = fs::File::open(input)?;
        let mut magic = [0u8; 8];
        let n = file.read(&mut magic)?;
        if n == 8 && magic == bundle::MAGIC {
            let toc = bundle::read_toc(&mut file)?;
            value = json!({"format": "coffer-bundle", "version": bundle::VERSION, "bytes": fs::metadata(input)?.len(), "toc": toc});
        }
    }
    if value.as_object().is_some_and(|m| m.is_empty()) {
        let (mut reader, _) = open_input(input)?;
        let mut head = Vec::with_capacity(seal::MAX_HEADER);
        (&mut reader).take(seal::MAX_HEADER as u64).read_to_end(&mut head)?;
        if head.starts_with(&bundle::MAGIC) {
            let toc = BundleReader::new(head.chain(reader), ReadLimits::default())?.read_to_end()?;
            value = json!({"format": "coffer-bundle", "version": bundle::VERSION, "toc": toc});
        } else {
            value = serde_json::to_value(seal::inspect(&head, &OpenLimits::default())?).map_err(|e| Error::Io(e.into()))?;
            if let Some(key) = unlock {
                if input == "-" {
                    return Err(Error::InvalidInput("--unlock needs a file, not stdin".into()));
                }
                let mut plain = seal::SeekReader::new(fs::File::open(input)?, &keys(key)?, &OpenLimits::default())?;
                value["toc"] = serde_json::to_value(bundle::read_toc(&mut plain)?).map_err(|e| Error::Io(e.into()))?;
                value["plaintext_bytes"] = json!(plain.len());
            }
        }
    }
    if fmt.json {
        println!("{value}");
    } else {
        print_human(&value);
    }
    Ok(())
}

fn print_human(value: &Value) {
    if let Some(toc) = value.get("toc") {
        println!("format:      coffer bundle v{}", value["version"]);
        println!("digest:      {}", toc["digest"].as_str().unwrap_or(""));
        println!("content:     {} bytes ({} stored)", toc["raw_bytes"], toc["stored_bytes"]);
        println!("commits:     {}   branches: {}", toc["commits"], toc["branches"]);
        println!("collections:");
        for c in toc["collections"].as_array().into_iter().flatten() {
            println!("  {:<24} {:>10} documents {:>12} bytes", c["name"].as_str().unwrap_or(""), c["documents"], c["raw_bytes"]);
        }
    } else {
        println!("format:      coffer sealed v{}", value["version"]);
        println!("segment:     {} bytes", value["segment_size"]);
        for r in value["recipients"].as_array().into_iter().flatten() {
            match r["kind"].as_str() {
                Some("passphrase") => {
                    println!("recipient:   passphrase (Argon2id m={} KiB t={} p={})", r["kdf"]["memory_kib"], r["kdf"]["iterations"], r["kdf"]["parallelism"])
                }
                other => println!("recipient:   {}", other.unwrap_or("?")),
            }
        }
        if let Some(meta) = value["metadata"].as_object() {
            println!("metadata:    {}", Value::Object(meta.clone()));
        }
        if let Some(toc) = value.get("toc") {
            println!("--- contents (authenticated)");
            print_human(&json!({"version": bundle::VERSION, "toc": toc}));
        }
    }
}

/// Input as a reader (plain, or decrypted when sealed) and whether it was sealed.
fn plaintext_reader(input: &str, key: &KeyArgs) -> Result<(Box<dyn Read>, bool)> {
    let (reader, _) = open_input(input)?;
    let mut reader = BufReader::with_capacity(1 << 20, reader);
    let head = reader.fill_buf()?;
    if seal::is_sealed(head) {
        let keys = keys(key)?;
        return Ok((Box::new(OpenReader::new(reader, &keys, &OpenLimits::default())?), true));
    }
    Ok((Box::new(reader), false))
}

fn open_input(input: &str) -> Result<(Box<dyn Read>, Option<u64>)> {
    if input == "-" {
        return Ok((Box::new(io::stdin().lock()), None));
    }
    let file = fs::File::open(input).map_err(|e| Error::Io(io::Error::new(e.kind(), format!("{input}: {e}"))))?;
    let len = file.metadata().ok().map(|m| m.len());
    Ok((Box::new(file), len))
}

fn keys(args: &KeyArgs) -> Result<Vec<Key>> {
    if args.identities.is_empty() {
        return Ok(vec![Key::Passphrase(passphrase(args.passphrase_file.as_deref(), false)?)]);
    }
    let mut keys = Vec::new();
    for path in &args.identities {
        let text = Zeroizing::new(fs::read_to_string(path).map_err(|e| Error::InvalidInput(format!("{}: {e}", path.display())))?);
        keys.extend(Identity::parse_file(&text)?.into_iter().map(Key::Identity));
    }
    Ok(keys)
}

/// The passphrase: $COFFER_PASSPHRASE, else `--passphrase-file`, else a
/// prompt on the terminal. Never taken from the command line.
fn passphrase(file: Option<&Path>, confirm: bool) -> Result<Zeroizing<String>> {
    if let Some(path) = file {
        let mut text = Zeroizing::new(fs::read_to_string(path).map_err(|e| Error::InvalidInput(format!("{}: {e}", path.display())))?);
        while text.ends_with('\n') || text.ends_with('\r') {
            text.pop();
        }
        return non_empty(text);
    }
    if let Ok(p) = std::env::var("COFFER_PASSPHRASE") {
        return non_empty(Zeroizing::new(p));
    }
    let prompt = |label: &str| rpassword::prompt_password(label).map(Zeroizing::new);
    let first =
        prompt("Passphrase: ").map_err(|_| Error::InvalidInput("no passphrase: set COFFER_PASSPHRASE, use --passphrase-file, or run in a terminal".into()))?;
    if confirm {
        let again = prompt("Repeat passphrase: ").map_err(Error::Io)?;
        if *again != *first {
            return Err(Error::InvalidInput("the passphrases do not match".into()));
        }
    }
    non_empty(first)
}

fn non_empty(p: Zeroizing<String>) -> Result<Zeroizing<String>> {
    if p.is_empty() {
        return Err(Error::InvalidInput("empty passphrase".into()));
    }
    Ok(p)
}

fn write_secret_file(path: &Path, data: &[u8]) -> Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|e| Error::Io(io::Error::new(e.kind(), format!("{}: {e}", path.display()))))?;
    file.write_all(data)?;
    file.sync_all()?;
    Ok(())
}

/// An output that appears only when complete: a temporary file beside the
/// target, renamed over it by [`commit`](Self::commit); dropped otherwise.
enum Output {
    Stdout(io::StdoutLock<'static>),
    File { temp: tempfile::NamedTempFile, path: PathBuf },
}

impl Output {
    fn create(target: &str) -> Result<Self> {
        if target == "-" {
            return Ok(Output::Stdout(io::stdout().lock()));
        }
        let path = PathBuf::from(target);
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let temp = tempfile::Builder::new()
            .prefix(".coffer-")
            .suffix(".partial")
            .tempfile_in(dir)
            .map_err(|e| Error::Io(io::Error::new(e.kind(), format!("{}: {e}", dir.display()))))?;
        Ok(Output::File { temp, path })
    }

    fn commit(self) -> Result<()> {
        match self {
            Output::Stdout(mut s) => Ok(s.flush()?),
            Output::File { temp, path } => {
                temp.as_file().sync_all()?;
                temp.persist(&path).map_err(|e| Error::Io(e.error))?;
                Ok(())
            }
        }
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Output::Stdout(s) => s.write(buf),
            Output::File { temp, .. } => temp.write(buf),
        }
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Output::Stdout(s) => s.write_all(buf),
            Output::File { temp, .. } => temp.write_all(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Output::Stdout(s) => s.flush(),
            Output::File { temp, .. } => temp.flush(),
        }
    }
}

fn progress(len: Option<u64>, label: &str) -> ProgressBar {
    if !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    match len {
        Some(len) => {
            let bar = ProgressBar::new(len);
            if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}") {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(label.to_string());
            bar
        }
        None => spinner(label),
    }
}

fn spinner(label: &str) -> ProgressBar {
    if !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    bar.set_message(label.to_string());
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

fn copy(reader: &mut dyn Read, writer: &mut dyn Write, bar: &ProgressBar) -> Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(coffer::error::into_error(e)),
        };
        writer.write_all(&buf[..n]).map_err(coffer::error::into_error)?;
        total += n as u64;
        bar.inc(n as u64);
    }
    Ok(total)
}
