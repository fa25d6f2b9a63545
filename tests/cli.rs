//! The `coffer` binary, run as a user would.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn coffer(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_coffer"));
    cmd.args(args).env_remove("COFFER_PASSPHRASE").stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn ok(out: Output) -> Output {
    assert!(out.status.success(), "failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

fn fails_with(out: Output, code: &str) {
    assert!(!out.status.success(), "unexpected success");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("error[{code}]")), "expected {code}, got: {stderr}");
}

const PW: [(&str, &str); 1] = [("COFFER_PASSPHRASE", "a long test passphrase")];

fn sample(dir: &Path) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/sample");
    fs::create_dir_all(dir).unwrap();
    for entry in fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn full_round_trip_gives_identical_bytes() {
    let t = tempfile::tempdir().unwrap();
    let (src, b, s, o, restored, again) =
        (t.path().join("src"), t.path().join("b.cfb"), t.path().join("b.cfs"), t.path().join("o.cfb"), t.path().join("restored"), t.path().join("again.cfb"));
    sample(&src);
    let out = ok(coffer(&["bundle", p(&src), "-o", p(&b), "--json"], &[]));
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["collections"].as_array().unwrap().len(), 2);
    ok(coffer(&["seal", p(&b), "-o", p(&s), "--metadata", r#"{"backup":"t1"}"#], &PW));
    let info: Value = serde_json::from_slice(&ok(coffer(&["inspect", p(&s), "--json"], &[])).stdout).unwrap();
    assert_eq!(info["format"], "coffer-sealed");
    assert_eq!(info["metadata"]["backup"], "t1");
    assert_eq!(info["recipients"][0]["kind"], "passphrase");
    let unlocked: Value = serde_json::from_slice(&ok(coffer(&["inspect", p(&s), "--unlock", "--json"], &PW)).stdout).unwrap();
    assert_eq!(unlocked["toc"]["digest"], summary["digest"]);
    fails_with(coffer(&["inspect", p(&s), "--unlock"], &[("COFFER_PASSPHRASE", "nope")]), "WRONG_KEY");
    let verified: Value = serde_json::from_slice(&ok(coffer(&["verify", p(&s), "--json"], &PW)).stdout).unwrap();
    assert_eq!(verified["digest"], summary["digest"]);
    ok(coffer(&["open", p(&s), "-o", p(&o)], &PW));
    assert_eq!(fs::read(&o).unwrap(), fs::read(&b).unwrap());
    ok(coffer(&["unbundle", p(&s), "-o", p(&restored)], &PW));
    // The sample's history puts a document the directory holds: bundle format
    // 2 stores that put without it, and unbundle writes it so in history.json.
    let history: Value = serde_json::from_slice(&fs::read(restored.join("history.json")).unwrap()).unwrap();
    assert_eq!(history["commits"][0]["changes"][0], serde_json::json!({"collection": "docs", "id": "a", "op": "put"}));
    ok(coffer(&["bundle", p(&restored), "-o", p(&again)], &[]));
    assert_eq!(fs::read(&again).unwrap(), fs::read(&b).unwrap());
    // dir -> bundle -> dir -> bundle: the same bytes again.
    let (restored2, again2) = (t.path().join("restored2"), t.path().join("again2.cfb"));
    ok(coffer(&["unbundle", p(&again), "-o", p(&restored2)], &[]));
    ok(coffer(&["bundle", p(&restored2), "-o", p(&again2)], &[]));
    assert_eq!(fs::read(&again2).unwrap(), fs::read(&b).unwrap());
    // A put without document of a document the directory lacks is refused.
    let mut bad = history.clone();
    bad["commits"][0]["changes"][0]["id"] = "zz".into();
    fs::write(restored2.join("history.json"), serde_json::to_vec(&bad).unwrap()).unwrap();
    fails_with(coffer(&["bundle", p(&restored2), "-o", p(&t.path().join("bad.cfb"))], &[]), "INVALID_INPUT");
    let toc: Value = serde_json::from_slice(&ok(coffer(&["inspect", p(&b), "--json"], &[])).stdout).unwrap();
    assert_eq!(toc["toc"]["digest"], summary["digest"]);
}

#[test]
fn failed_open_leaves_nothing_behind() {
    let t = tempfile::tempdir().unwrap();
    let (input, sealed, out) = (t.path().join("in.bin"), t.path().join("in.cfs"), t.path().join("out.bin"));
    fs::write(&input, vec![7u8; 3 << 20]).unwrap();
    ok(coffer(&["seal", p(&input), "-o", p(&sealed)], &PW));
    fails_with(coffer(&["open", p(&sealed), "-o", p(&out)], &[("COFFER_PASSPHRASE", "wrong")]), "WRONG_KEY");
    assert!(!out.exists());
    let bytes = fs::read(&sealed).unwrap();
    fs::write(&sealed, &bytes[..bytes.len() - 100]).unwrap();
    fails_with(coffer(&["open", p(&sealed), "-o", p(&out)], &PW), "CORRUPT");
    assert!(!out.exists());
    let mut flipped = bytes.clone();
    flipped[bytes.len() / 2] ^= 1;
    fs::write(&sealed, &flipped).unwrap();
    fails_with(coffer(&["open", p(&sealed), "-o", p(&out)], &PW), "CORRUPT");
    fails_with(coffer(&["verify", p(&sealed)], &PW), "CORRUPT");
    assert!(!out.exists());
    let names: Vec<_> = fs::read_dir(t.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert!(names.iter().all(|n| !n.contains("partial")), "{names:?}");
}

#[test]
fn public_keys_and_identities() {
    let t = tempfile::tempdir().unwrap();
    let (id, other, input, sealed, out) = (t.path().join("id"), t.path().join("other"), t.path().join("in"), t.path().join("in.cfs"), t.path().join("out"));
    let public = String::from_utf8(ok(coffer(&["keygen", "-o", p(&id)], &[])).stdout).unwrap().trim().to_string();
    assert!(public.starts_with("coffer1"));
    ok(coffer(&["keygen", "-o", p(&other)], &[]));
    fails_with(coffer(&["keygen", "-o", p(&id)], &[]), "IO");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(fs::metadata(&id).unwrap().permissions().mode() & 0o777, 0o600);
    }
    fs::write(&input, b"for the server's eyes only").unwrap();
    ok(coffer(&["seal", p(&input), "-o", p(&sealed), "-r", &public], &[]));
    ok(coffer(&["open", p(&sealed), "-o", p(&out), "-i", p(&id)], &[]));
    assert_eq!(fs::read(&out).unwrap(), b"for the server's eyes only");
    fails_with(coffer(&["open", p(&sealed), "-o", p(&t.path().join("x")), "-i", p(&other)], &[]), "WRONG_KEY");
    fails_with(coffer(&["open", p(&sealed), "-o", p(&t.path().join("x"))], &PW), "WRONG_KEY");
    fails_with(coffer(&["seal", p(&input), "-o", p(&t.path().join("y")), "-r", "coffer1notakey"], &[]), "INVALID_INPUT");
}

#[test]
fn stdin_stdout_and_passphrase_file() {
    let t = tempfile::tempdir().unwrap();
    let pw = t.path().join("pw");
    fs::write(&pw, "from a file\n").unwrap();
    let data = vec![42u8; 2_500_000];
    let run = |args: &[&str], input: &[u8]| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_coffer"))
            .args(args)
            .env_remove("COFFER_PASSPHRASE")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let input = input.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        out
    };
    let sealed = ok(run(&["seal", "-", "-o", "-", "--passphrase-file", p(&pw)], &data)).stdout;
    assert!(sealed.starts_with(b"\x89CFS"));
    let opened = ok(run(&["open", "-", "-o", "-", "--passphrase-file", p(&pw)], &sealed)).stdout;
    assert_eq!(opened, data);
    let info: Value = serde_json::from_slice(&ok(run(&["inspect", "-", "--json"], &sealed)).stdout).unwrap();
    assert_eq!(info["segment_size"], 1 << 20);
}

#[test]
fn bad_input_gets_a_clear_code() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("d");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("docs.json"), "[{\"id\": 1,}]").unwrap();
    fails_with(coffer(&["bundle", p(&dir), "-o", p(&t.path().join("b"))], &[]), "INVALID_INPUT");
    fs::write(dir.join("docs.json"), "[{\"id\":\"a\",\"v\":1},{\"id\":\"a\",\"v\":2}]").unwrap();
    fails_with(coffer(&["bundle", p(&dir), "-o", p(&t.path().join("b"))], &[]), "INVALID_INPUT");
    fs::remove_file(dir.join("docs.json")).unwrap();
    fs::write(dir.join("bad name.json"), "[]").unwrap();
    fails_with(coffer(&["bundle", p(&dir), "-o", p(&t.path().join("b"))], &[]), "INVALID_INPUT");
    assert!(!t.path().join("b").exists());
    let junk = t.path().join("junk");
    fs::write(&junk, b"just some text, long enough to look like a header").unwrap();
    fails_with(coffer(&["inspect", p(&junk)], &[]), "NOT_A_BUNDLE");
    fails_with(coffer(&["open", p(&junk), "-o", p(&t.path().join("o"))], &PW), "NOT_A_BUNDLE");
    let json = coffer(&["inspect", p(&junk), "--json"], &[]);
    let err: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(err["error"]["code"], "NOT_A_BUNDLE");
    fails_with(coffer(&["seal", p(&junk), "-o", p(&t.path().join("s"))], &[]), "INVALID_INPUT");
}
