//! Scan throughput over a few MB of realistic code, mostly safe or dense with findings, as one
//! text and as chat-sized messages.
//!
//! `cargo bench -p llama-stack-provider-safety-code-scanner`

// The bench reads only the snippets, not what the tests expect of them.
#[allow(dead_code)]
#[path = "../tests/it/corpus/mod.rs"]
mod corpus;

use std::hint::black_box;
use std::time::{Duration, Instant};

use llama_stack_provider_safety_code_scanner::Scanner;

/// Repeats of each measurement; the fastest is reported, as the least disturbed by other load.
const ROUNDS: usize = 5;

/// `target` bytes of snippets, cycling through `snippets`; each `insecure_every`-th snippet
/// (when set) comes from `insecure` instead.
fn build_text(
    target: usize,
    snippets: &[&str],
    insecure: &[&str],
    insecure_every: Option<usize>,
) -> Vec<String> {
    let mut parts = Vec::new();
    let mut size = 0;
    let mut index = 0;
    while size < target {
        let part = match insecure_every {
            Some(every) if index % every == every - 1 => insecure[(index / every) % insecure.len()],
            _ => snippets[index % snippets.len()],
        };
        // A varying identifier keeps the text from being one period repeated.
        let part = format!("# snippet {index}\n{part}");
        size += part.len() + 1;
        parts.push(part);
        index += 1;
    }
    parts
}

fn fastest(mut run: impl FnMut() -> usize) -> (Duration, usize) {
    let mut best = Duration::MAX;
    let mut findings = 0;
    for _ in 0..ROUNDS {
        let started = Instant::now();
        findings = black_box(run());
        best = best.min(started.elapsed());
    }
    (best, findings)
}

fn main() {
    let scanner = Scanner::new(&[]).expect("built-in rules load");
    let safe: Vec<&str> = corpus::SAFE.iter().map(|c| c.code).collect();
    let insecure: Vec<&str> = corpus::INSECURE.iter().map(|c| c.code).collect();

    // Warm the lazily built automata before timing.
    scanner.scan(&insecure.join("\n"));

    let cases = [
        (
            "mostly safe (1 insecure snippet in 200)",
            build_text(4 << 20, &safe, &insecure, Some(200)),
        ),
        (
            "dense with findings (insecure only)",
            build_text(2 << 20, &insecure, &insecure, None),
        ),
    ];

    println!("| input | form | size | scans | time | throughput | findings |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    for (name, parts) in &cases {
        let whole = parts.join("\n");
        let bytes = whole.len();
        let (elapsed, findings) = fastest(|| scanner.scan(&whole).len());
        row(name, "one text", bytes, 1, elapsed, findings);

        let (elapsed, findings) =
            fastest(|| parts.iter().map(|p| scanner.scan(p).len()).sum::<usize>());
        row(
            name,
            "one message per snippet",
            bytes,
            parts.len(),
            elapsed,
            findings,
        );
    }
}

fn row(name: &str, form: &str, bytes: usize, scans: usize, elapsed: Duration, findings: usize) {
    let seconds = elapsed.as_secs_f64();
    println!(
        "| {name} | {form} | {:.1} MB | {scans} | {:.1} ms | {:.0} KB/s | {findings} |",
        bytes as f64 / 1e6,
        seconds * 1e3,
        bytes as f64 / 1024.0 / seconds,
    );
}
