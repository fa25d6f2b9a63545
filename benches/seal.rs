//! In-memory seal/open throughput, as the library does it by default
//! (1 MiB segments, worker threads = the machine's parallelism).
//!
//! `cargo bench --bench seal` (scripts/bench.sh runs it beside
//! `openssl speed -evp aes-256-gcm`). Not a timed test: it prints figures.
//!
//! Figures are MB/s of plaintext (1 MB = 10^6 bytes, as openssl reports).
//! "stream" excludes the per-file key setup (Argon2id for a passphrase, done
//! once in `Encryptor::new` / when the header is pushed), which is reported
//! separately; "one call" is `seal_to_vec` / `open_to_vec` end to end.
//!
//! Environment: `COFFER_BENCH_MIB` (buffer size, default 256),
//! `COFFER_BENCH_ROUNDS` (default 5; the median is printed).

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

/// Seals `plain` with the push API; returns (sealed, time of key setup, time of push+finish).
fn seal_stream(plain: &[u8], options: &SealOptions) -> (Vec<u8>, Duration, Duration) {
    let t0 = Instant::now();
    let mut enc = Encryptor::new(&[Recipient::passphrase(PASSPHRASE)], options).expect("encryptor");
    let header = enc.take_header().expect("header");
    let setup = t0.elapsed();
    let t1 = Instant::now();
    let mut out = Vec::with_capacity(header.len() + plain.len() + plain.len() / 4096 + 64);
    out.extend_from_slice(&header);
    out.extend_from_slice(&enc.push(plain).expect("push"));
    out.extend_from_slice(&enc.finish().expect("finish"));
    (out, setup, t1.elapsed())
}

/// Opens with the push API; returns (plaintext, time of header+KDF, time of the body).
fn open_stream(sealed: &[u8], threads: usize) -> (Vec<u8>, Duration, Duration) {
    let header_len = seal::inspect(sealed, &OpenLimits::default()).expect("inspect").header_len;
    let t0 = Instant::now();
    let mut dec = Decryptor::new(&[Key::passphrase(PASSPHRASE)], OpenLimits::default());
    dec.set_threads(threads);
    let head = dec.push(&sealed[..header_len]).expect("header");
    assert!(head.is_empty());
    let setup = t0.elapsed();
    let t1 = Instant::now();
    let mut out = dec.push(&sealed[header_len..]).expect("push");
    out.extend_from_slice(&dec.finish().expect("finish"));
    (out, setup, t1.elapsed())
}

fn main() {
    // `cargo bench` passes `--bench`; ignore arguments.
    let mib = env_usize("COFFER_BENCH_MIB", 256);
    let rounds = env_usize("COFFER_BENCH_ROUNDS", 5).max(1);
    let len = mib << 20;
    let plain = data(len);
    let threads_default = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
    println!("seal/open in memory: {mib} MiB buffer, 1 MiB segments, {rounds} rounds (median), {threads_default} worker threads by default");

    for (label, threads) in [("default threads", 0usize), ("1 thread", 1)] {
        let options = SealOptions { threads, ..SealOptions::default() };
        let (mut seal_t, mut open_t, mut seal_setup, mut open_setup, mut seal_one, mut open_one) = (vec![], vec![], vec![], vec![], vec![], vec![]);
        for _ in 0..rounds {
            let (sealed, setup, t) = seal_stream(&plain, &options);
            seal_setup.push(setup);
            seal_t.push(t);
            let (opened, setup, t) = open_stream(&sealed, threads);
            assert!(opened == plain, "round trip failed");
            open_setup.push(setup);
            open_t.push(t);
            drop(opened);
            if threads == 0 {
                let t = Instant::now();
                let sealed = seal::seal_to_vec(&plain, &[Recipient::passphrase(PASSPHRASE)], &options).expect("seal_to_vec");
                seal_one.push(t.elapsed());
                let t = Instant::now();
                black_box(seal::open_to_vec(&sealed, &[Key::passphrase(PASSPHRASE)], &OpenLimits::default()).expect("open_to_vec"));
                open_one.push(t.elapsed());
            }
        }
        let (s, o) = (median(seal_t), median(open_t));
        // Machine-readable lines first (scripts/bench.sh greps them), then prose.
        let tag = if threads == 0 { "default" } else { "1thread" };
        println!("RESULT seal_{tag}_mbps {:.0}", mbps(len, s));
        println!("RESULT open_{tag}_mbps {:.0}", mbps(len, o));
        println!(
            "  {label:>15}: seal stream {:>6.0} MB/s, open stream {:>6.0} MB/s (key setup: seal {:.0} ms, open {:.0} ms)",
            mbps(len, s),
            mbps(len, o),
            median(seal_setup).as_secs_f64() * 1e3,
            median(open_setup).as_secs_f64() * 1e3
        );
        if threads == 0 {
            let (s1, o1) = (median(seal_one), median(open_one));
            println!("RESULT seal_to_vec_mbps {:.0}", mbps(len, s1));
            println!("RESULT open_to_vec_mbps {:.0}", mbps(len, o1));
            println!("  {:>15}: seal_to_vec {:>6.0} MB/s, open_to_vec {:>6.0} MB/s (end to end, Argon2id included)", "one call", mbps(len, s1), mbps(len, o1));
        }
    }
}
