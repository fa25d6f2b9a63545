//! In-memory seal/open throughput, as the library does it by default
//! (1 MiB segments, worker threads = the machine's parallelism).
//!
//! `cargo bench --bench seal` (scripts/bench.sh runs it beside
//! `openssl speed -evp aes-256-gcm`). Not a timed test: it prints figures.
//!
//! Figures are MB/s of plaintext (1 MB = 10^6 bytes, as openssl reports),
//! per second of wall time and per second of CPU time (all threads; the
//! machine may be shared). The push-API figures exclude the per-file key
//! setup (Argon2id, done once in `Encryptor::new` / when the header is
//! pushed), which is printed separately; "default" feeds 8 MiB pushes like
//! `SealWriter`/`OpenReader` (the CLI path), "whole" one push of the whole
//! buffer, both through `push_into` into one output buffer reused across
//! rounds; `seal_to_vec` / `open_to_vec` are timed end to end.
//!
//! Environment: `COFFER_BENCH_MIB` (buffer size, default 256),
//! `COFFER_BENCH_ROUNDS` (default 5; the median is printed),
//! `COFFER_BENCH_MODES` (comma-separated subset of default, 1thread,
//! whole_default, whole_1thread, to_vec; for profiling with `perf`).

use std::hint::black_box;
use std::time::{Duration, Instant};

use coffer::seal::{self, Decryptor, Encryptor, Key, OpenLimits, Recipient, SealOptions};

const PASSPHRASE: &str = "bench passphrase";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn mbps(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e6
}

/// Plaintext that neither compresses nor repeats (xorshift).
fn data(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// CPU time (user + system) of the whole process so far, all threads
/// included (Linux: /proc/self/stat, in clock ticks of 10 ms).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<u64> = after.split_whitespace().skip(11).take(2).map(|f| f.parse().unwrap_or(0)).collect();
    Duration::from_millis(fields.iter().sum::<u64>() * 10)
}

/// Wall and CPU time of one run of `f`.
fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration, Duration) {
    let (c0, t0) = (cpu_time(), Instant::now());
    let out = f();
    (out, t0.elapsed(), cpu_time().saturating_sub(c0))
}

/// How plaintext or ciphertext is handed to the push API.
#[derive(Clone, Copy)]
enum Feed {
    /// The whole buffer in one push (what `seal_to_vec`/`open_to_vec` do).
    Whole,
    /// Pushes of this many bytes, output appended to one preallocated buffer
    /// (what `SealWriter`/`OpenReader` and the CLI do, with 8 segments).
    Pieces(usize),
}

/// Hands `input` to `push` (which appends its output to `out`, as
/// `push_into` does) whole or in pieces.
fn feed(push: &mut dyn FnMut(&[u8], &mut Vec<u8>), input: &[u8], how: Feed, out: &mut Vec<u8>) {
    match how {
        Feed::Whole => push(input, out),
        Feed::Pieces(n) => input.chunks(n).for_each(|c| push(c, out)),
    }
}

/// Seals with the push API; the key setup (Argon2id) is outside the timing.
fn seal_stream(plain: &[u8], options: &SealOptions, how: Feed, out: &mut Vec<u8>) -> (Duration, Duration, Duration) {
    let (enc, setup, _) = timed(|| Encryptor::new(&[Recipient::passphrase(PASSPHRASE)], options).expect("encryptor"));
    let mut enc = enc;
    out.clear();
    out.extend_from_slice(&enc.take_header().expect("header"));
    let ((), wall, cpu) = timed(|| {
        feed(&mut |c, out| enc.push_into(c, out).expect("push"), plain, how, out);
        enc.finish_into(out).expect("finish");
    });
    (setup, wall, cpu)
}

/// Opens with the push API; the header (Argon2id) is pushed outside the timing.
fn open_stream(sealed: &[u8], threads: usize, how: Feed, out: &mut Vec<u8>) -> (Duration, Duration, Duration) {
    let header_len = seal::inspect(sealed, &OpenLimits::default()).expect("inspect").header_len;
    let mut dec = Decryptor::new(&[Key::passphrase(PASSPHRASE)], OpenLimits::default());
    dec.set_threads(threads);
    let (head, setup, _) = timed(|| dec.push(&sealed[..header_len]).expect("header"));
    assert!(head.is_empty());
    out.clear();
    let ((), wall, cpu) = timed(|| {
        feed(&mut |c, out| dec.push_into(c, out).expect("push"), &sealed[header_len..], how, out);
        out.extend_from_slice(&dec.finish().expect("finish"));
    });
    (setup, wall, cpu)
}

fn main() {
    // `cargo bench` passes `--bench`; ignore arguments.
    let mib = env_usize("COFFER_BENCH_MIB", 256);
    let rounds = env_usize("COFFER_BENCH_ROUNDS", 5).max(1);
    let len = mib << 20;
    let plain = data(len);
    let threads_default = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
    println!("seal/open in memory: {mib} MiB buffer, 1 MiB segments, median of {rounds} rounds; {threads_default} worker threads by default");
    println!("  MB/s = 10^6 bytes of plaintext per second of wall time; MB/cpu-s = per second of CPU time (all threads)");

    // Output buffers reused across rounds (and touched once), so the
    // streaming figures do not include first-touch page faults of the output.
    let modes = std::env::var("COFFER_BENCH_MODES").unwrap_or_default();
    let mut sealed = Vec::with_capacity(len + len / 1000 + 4096);
    let mut opened = Vec::with_capacity(len);
    let segment = 1usize << seal::DEFAULT_SEGMENT_LOG2;
    for (name, threads, how) in [
        ("default", 0usize, Feed::Pieces(8 * segment)),
        ("1thread", 1, Feed::Pieces(8 * segment)),
        ("whole_default", 0, Feed::Whole),
        ("whole_1thread", 1, Feed::Whole),
    ] {
        if !modes.is_empty() && !modes.split(',').any(|m| m == name) {
            continue;
        }
        let options = SealOptions { threads, ..SealOptions::default() };
        let (mut sw, mut sc, mut ow, mut oc, mut ss, mut os) = (vec![], vec![], vec![], vec![], vec![], vec![]);
        for _ in 0..rounds {
            let (setup, wall, cpu) = seal_stream(&plain, &options, how, &mut sealed);
            ss.push(setup);
            sw.push(wall);
            sc.push(cpu);
            let (setup, wall, cpu) = open_stream(&sealed, threads, how, &mut opened);
            assert!(opened == plain, "round trip failed");
            os.push(setup);
            ow.push(wall);
            oc.push(cpu);
        }
        let (sw, sc, ow, oc) = (median(sw), median(sc), median(ow), median(oc));
        // Machine-readable lines (scripts/bench.sh greps them), then prose.
        println!("RESULT seal_{name}_mbps {:.0}", mbps(len, sw));
        println!("RESULT open_{name}_mbps {:.0}", mbps(len, ow));
        println!("RESULT seal_{name}_cpu_mbps {:.0}", mbps(len, sc));
        println!("RESULT open_{name}_cpu_mbps {:.0}", mbps(len, oc));
        let feed = match how {
            Feed::Whole => "one push of the whole buffer".to_string(),
            Feed::Pieces(n) => format!("pushes of {} MiB", n >> 20),
        };
        let threads = if threads == 0 { threads_default } else { threads };
        println!(
            "  {threads} thread(s), {feed:<28}: seal {:>5.0} MB/s ({:>5.0} MB/cpu-s), open {:>5.0} MB/s ({:>5.0} MB/cpu-s); Argon2id setup seal {:.0} ms, open {:.0} ms",
            mbps(len, sw),
            mbps(len, sc),
            mbps(len, ow),
            mbps(len, oc),
            median(ss).as_secs_f64() * 1e3,
            median(os).as_secs_f64() * 1e3
        );
    }
    drop((sealed, opened));

    // The one-call API, end to end (Argon2id and fresh output buffers included).
    if !modes.is_empty() && !modes.split(',').any(|m| m == "to_vec") {
        return;
    }
    let (mut sw, mut ow) = (vec![], vec![]);
    for _ in 0..rounds {
        let (sealed, wall, _) = timed(|| seal::seal_to_vec(&plain, &[Recipient::passphrase(PASSPHRASE)], &SealOptions::default()).expect("seal_to_vec"));
        sw.push(wall);
        let (opened, wall, _) = timed(|| seal::open_to_vec(&sealed, &[Key::passphrase(PASSPHRASE)], &OpenLimits::default()).expect("open_to_vec"));
        ow.push(wall);
        black_box(opened);
    }
    let (sw, ow) = (median(sw), median(ow));
    println!("RESULT seal_to_vec_mbps {:.0}", mbps(len, sw));
    println!("RESULT open_to_vec_mbps {:.0}", mbps(len, ow));
    println!("  seal_to_vec / open_to_vec, end to end (Argon2id, fresh buffers): seal {:.0} MB/s, open {:.0} MB/s", mbps(len, sw), mbps(len, ow));
}
