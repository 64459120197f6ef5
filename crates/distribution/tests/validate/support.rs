//! Helpers shared by the test modules.

use std::path::{Path, PathBuf};

use llama_stack_distribution::{ConfigErrors, EnvMap, Problem};

pub fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn repo_dir() -> PathBuf {
    crate_dir().join("../..")
}

pub fn fixture(name: &str) -> PathBuf {
    crate_dir().join("tests/fixtures").join(name)
}

pub fn env(pairs: &[(&str, &str)]) -> EnvMap {
    let mut env: EnvMap = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    env.entry("HOME".into())
        .or_insert_with(|| "/home/tester".into());
    env
}

/// The problem at `path`, failing with the whole report when there is none.
pub fn problem_at<'a>(errors: &'a ConfigErrors, path: &str) -> &'a Problem {
    errors
        .problems
        .iter()
        .find(|p| p.path == path)
        .unwrap_or_else(|| panic!("no problem reported at `{path}`; got:\n{errors}"))
}

/// Asserts a problem at `path` whose message contains every one of `needles`.
pub fn expect(errors: &ConfigErrors, path: &str, needles: &[&str]) -> Problem {
    let problem = problem_at(errors, path);
    for needle in needles {
        assert!(
            problem.message.contains(needle),
            "problem at `{path}` should mention `{needle}`: {problem}\nall:\n{errors}"
        );
    }
    problem.clone()
}
