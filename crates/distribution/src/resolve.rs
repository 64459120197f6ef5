//! Turning `llama-stack run <arg>` into a run.yaml path.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Names a folder holding distribution folders (`<dir>/<name>/run.yaml`).
pub const DISTRIBUTIONS_DIR_VAR: &str = "LLAMA_STACK_DISTRIBUTIONS_DIR";

/// Resolves a run config argument: a path to an existing file (or to a folder holding a
/// `run.yaml`), or a distribution name. A name is looked up as `<name>/run.yaml` in
/// `./distributions`, then in `$LLAMA_STACK_DISTRIBUTIONS_DIR`, then in `distributions/` next to
/// each ancestor of the executable (so `target/debug/llama-stack run local` works from anywhere
/// inside the repository). The error lists the distribution names that were found.
pub fn resolve_run_config(arg: &str) -> Result<PathBuf, String> {
    resolve_in(arg, &search_dirs())
}

/// The distribution names available in the search folders of [`resolve_run_config`].
pub fn distribution_names() -> Vec<String> {
    names_in(&search_dirs())
}

fn search_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        dirs.push(cwd.join("distributions"));
    }
    if let Some(dir) = std::env::var_os(DISTRIBUTIONS_DIR_VAR).filter(|d| !d.is_empty()) {
        dirs.push(PathBuf::from(dir));
    }
    if let Ok(exe) = std::env::current_exe() {
        dirs.extend(exe.ancestors().skip(1).map(|a| a.join("distributions")));
    }
    let mut seen = BTreeSet::new();
    dirs.retain(|d| seen.insert(d.clone()));
    dirs
}

fn resolve_in(arg: &str, dirs: &[PathBuf]) -> Result<PathBuf, String> {
    let path = Path::new(arg);
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    if path.is_dir() && path.join("run.yaml").is_file() {
        return Ok(path.join("run.yaml"));
    }
    let looks_like_path = arg.contains(['/', '\\'])
        || arg.ends_with(".yaml")
        || arg.ends_with(".yml")
        || arg.starts_with('.');
    if looks_like_path || arg.is_empty() {
        return Err(format!("run config `{arg}` does not exist"));
    }
    for dir in dirs {
        let candidate = dir.join(arg).join("run.yaml");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    let names = names_in(dirs);
    Err(format!(
        "`{arg}` is neither a file nor a known distribution; available distributions: {} (set {DISTRIBUTIONS_DIR_VAR} to add a folder of distributions)",
        if names.is_empty() {
            "(none found)".to_string()
        } else {
            names.join(", ")
        }
    ))
}

fn names_in(dirs: &[PathBuf]) -> Vec<String> {
    let mut names = BTreeSet::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.path().join("run.yaml").is_file()
                && let Some(name) = entry.file_name().to_str()
            {
                names.insert(name.to_string());
            }
        }
    }
    names.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn distribution(root: &Path, name: &str) -> PathBuf {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("run.yaml");
        std::fs::write(&file, "version: 2\n").unwrap();
        file
    }

    #[test]
    fn resolves_files_folders_and_names() {
        let first = tempfile::tempdir().unwrap();
        let second = tempfile::tempdir().unwrap();
        let local = distribution(first.path(), "local");
        let other = distribution(second.path(), "other");
        let shadowed = distribution(second.path(), "local");
        let dirs = [first.path().to_path_buf(), second.path().to_path_buf()];

        let arg = local.to_str().unwrap();
        assert_eq!(resolve_in(arg, &dirs).unwrap(), local);
        let folder = first.path().join("local");
        assert_eq!(resolve_in(folder.to_str().unwrap(), &dirs).unwrap(), local);
        assert_eq!(resolve_in("local", &dirs).unwrap(), local);
        assert_ne!(resolve_in("local", &dirs).unwrap(), shadowed);
        assert_eq!(resolve_in("other", &dirs).unwrap(), other);
    }

    #[test]
    fn unknown_names_list_the_available_ones() {
        let root = tempfile::tempdir().unwrap();
        distribution(root.path(), "local");
        distribution(root.path(), "gpu");
        std::fs::create_dir_all(root.path().join("not-a-distribution")).unwrap();
        let err = resolve_in("nope", &[root.path().to_path_buf()]).unwrap_err();
        assert!(
            err.contains("available distributions: gpu, local ("),
            "{err}"
        );
        let err = resolve_in("missing/run.yaml", &[root.path().to_path_buf()]).unwrap_err();
        assert!(err.contains("does not exist"), "{err}");
    }

    #[test]
    fn finds_the_repository_distributions() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../distributions");
        let names = names_in(&[repo]);
        assert!(names.contains(&"local".to_string()), "{names:?}");
        let exe_dir = std::env::current_exe()
            .unwrap()
            .parent()
            .unwrap()
            .join("distributions");
        assert!(search_dirs().contains(&exe_dir));
    }
}
