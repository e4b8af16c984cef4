//! Replays the AFL++ corpora (`fuzz/corpus/<target>/`) through the fuzz
//! harness, plus a short bounded run of random mutations of them, so the
//! fuzzers' invariants hold in the normal test suite without AFL.

#[path = "../fuzz/harness.rs"]
mod harness;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 2] = [("render", harness::render), ("config", harness::config)];

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("directory entry").path();
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (path, bytes)
        })
        .collect();
    files.sort();
    files
}

/// Runs `input` through `target`, returning the panic message if it panics.
fn run(target: Target, input: &[u8]) -> Result<(), String> {
    catch_unwind(AssertUnwindSafe(|| target(input))).map_err(|payload| {
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "non-string panic".into())
    })
}

#[test]
fn every_corpus_file_keeps_the_invariants() {
    let mut failures = Vec::new();
    for (name, target) in TARGETS {
        let files = corpus(name);
        assert!(
            files.len() >= 5,
            "fuzz/corpus/{name} holds {} files",
            files.len()
        );
        for (path, bytes) in files {
            if let Err(msg) = run(target, &bytes) {
                failures.push(format!("{}: {msg}", path.display()));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// One random mutation: flip, insert, delete, splice or insert a token.
fn mutate(rng: &mut StdRng, input: &mut Vec<u8>, other: &[u8]) {
    const TOKENS: &[&[u8]] = &[
        b": ",
        b"#",
        b"---",
        b"...",
        b"&a ",
        b"*a",
        b"!!str ",
        b"\"",
        b"'",
        b"\\",
        b"\n",
        b"\n  ",
        b"\n- ",
        b"\t",
        b"{",
        b"}",
        b"[",
        b"]",
        b",",
        b"|",
        b">",
        b"\0",
        b"\xff",
        b"{{",
        b"}}",
        b"\r\n",
        "é".as_bytes(),
        b"? ",
        b"%YAML 1.2\n",
        b"null",
        b"-0",
        b"1e3",
    ];
    let at = if input.is_empty() {
        0
    } else {
        rng.random_range(0..=input.len())
    };
    match rng.random_range(0..5) {
        0 if at < input.len() => input[at] ^= 1 << rng.random_range(0..8),
        1 => input.insert(at, rng.random()),
        2 if at < input.len() => {
            let end = rng.random_range(at..=input.len().min(at + 8));
            input.drain(at..end);
        }
        3 if !other.is_empty() => {
            let from = rng.random_range(0..other.len());
            let to = rng.random_range(from..=other.len().min(from + 32));
            input.splice(at..at, other[from..to].iter().copied());
        }
        _ => {
            let token = TOKENS[rng.random_range(0..TOKENS.len())];
            input.splice(at..at, token.iter().copied());
        }
    }
}

/// A few seconds of random mutations of the corpus, seeded so a failure
/// reproduces (the seed is printed; set FUZZ_SEED to replay one).
#[test]
fn bounded_random_mutations_keep_the_invariants() {
    let seed = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    println!("FUZZ_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let budget = Duration::from_secs(3);
    for (name, target) in TARGETS {
        let files: Vec<Vec<u8>> = corpus(name).into_iter().map(|(_, b)| b).collect();
        let start = Instant::now();
        let mut runs = 0;
        while start.elapsed() < budget && runs < 20_000 {
            let mut input = files[rng.random_range(0..files.len())].clone();
            let other = &files[rng.random_range(0..files.len())];
            for _ in 0..rng.random_range(1..6) {
                mutate(&mut rng, &mut input, other);
            }
            if let Err(msg) = run(target, &input) {
                panic!("{name} target, FUZZ_SEED={seed}, input {input:?}: {msg}");
            }
            runs += 1;
        }
        println!("{name}: {runs} random inputs");
    }
}
