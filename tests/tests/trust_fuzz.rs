//! The fuzz targets' entry points (`fuzz/fuzz_targets/*.rs`), run as plain tests over seeds and
//! tens of thousands of deterministic mutations, so CI exercises them on stable without
//! libFuzzer. A panic anywhere fails the test; each input must also finish quickly.

use srediag::plugins::trust::manifest::fuzz_one;
use std::path::Path;
use std::time::{Duration, Instant};

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Tokens that stress a YAML parser.
const TOKENS: [&[u8]; 22] = [
    b"&a ",
    b"*a",
    b"!!binary ",
    b"!tag ",
    b"? ",
    b": ",
    b"- ",
    b"[",
    b"]",
    b"{",
    b"}",
    b"\n  ",
    b"\n---\n",
    b"'",
    b"\"",
    b"\\u0000",
    b"..",
    b"/",
    b"~",
    b"<<: *a\n",
    b"0x",
    b"\t",
];

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(6) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 => v.truncate(at),
            2 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                v.splice(at..at, t.iter().copied());
            }
            3 if !v.is_empty() => {
                let end = (at + rng.below(64)).min(v.len());
                let chunk = v[at.min(end)..end].to_vec();
                let to = rng.below(v.len() + 1);
                v.splice(to..to, chunk);
            }
            4 if at < v.len() => {
                let end = (at + rng.below(32)).min(v.len());
                v.drain(at..end);
            }
            _ => v.insert(at.min(v.len()), rng.next() as u8),
        }
    }
    v
}

fn seeds(dir: &Path) -> Vec<Vec<u8>> {
    let mut s: Vec<_> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| std::fs::read(e.ok()?.path()).ok())
                .collect()
        })
        .unwrap_or_default();
    assert!(!s.is_empty(), "no seeds in {}", dir.display());
    s.sort();
    s
}

#[test]
fn manifest_parser_survives_mutations() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/manifest");
    let seeds = seeds(&corpus);
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut slowest = Duration::ZERO;
    let (mut parsed, mut total) = (0, 0);
    for seed in &seeds {
        fuzz_one(seed);
    }
    for _ in 0..30_000 {
        let seed = &seeds[rng.below(seeds.len())];
        let input = mutate(&mut rng, seed);
        let t = Instant::now();
        fuzz_one(&input);
        slowest = slowest.max(t.elapsed());
        total += 1;
        if srediag::plugins::trust::manifest::Manifest::parse(&input).is_ok() {
            parsed += 1;
        }
    }
    println!("{total} mutated manifests, {parsed} still valid, slowest {slowest:?}");
    assert!(
        parsed > 0,
        "mutations never kept a manifest valid: the seeds are broken"
    );
    assert!(
        slowest < Duration::from_secs(1),
        "an input took {slowest:?}"
    );
}

#[test]
fn sigstore_bundle_parser_survives_mutations() {
    use srediag::plugins::trust::sigstore::{TrustedRoot, fuzz_one_with};
    let base =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata/sigstore-conformance");
    if !base.is_dir() {
        assert!(
            std::env::var("CI").is_err(),
            "conformance corpus missing in CI"
        );
        eprintln!("skipping: {} not found", base.display());
        return;
    }
    let root =
        TrustedRoot::from_json(&std::fs::read(base.join("trusted_root.public-good.json")).unwrap())
            .unwrap();
    let seeds: Vec<Vec<u8>> = [
        "happy-path-v0.1",
        "happy-path-v0.3",
        "happy-path-intoto-in-dsse-v3",
        "managed-key-happy-path",
    ]
    .iter()
    .map(|c| {
        std::fs::read(
            base.join("bundle-verify")
                .join(c)
                .join("bundle.sigstore.json"),
        )
        .unwrap()
    })
    .collect();
    let mut rng = Rng(0x5eed_1234_abcd_0002);
    for _ in 0..3_000 {
        let seed = &seeds[rng.below(seeds.len())];
        fuzz_one_with(&mutate(&mut rng, seed), Some(&root));
        fuzz_one_with(&mutate(&mut rng, seed), None);
    }
}
