//! The models already on this machine: the Hugging Face cache and Meta's checkpoint folder.

use std::path::{Path, PathBuf};

use serde::Serialize;

/// Everything `llama-stack model list` shows, and where it looked.
#[derive(Debug, Clone, Serialize)]
pub struct LocalInventory {
    pub hf_cache: PathBuf,
    /// Where Meta's `llama model download` puts checkpoints (`~/.llama/checkpoints`).
    pub checkpoints_dir: PathBuf,
    pub models: Vec<LocalModel>,
}

/// One model found on disk.
#[derive(Debug, Clone, Serialize)]
pub struct LocalModel {
    /// The repository id for the Hugging Face cache (what the server looks up), the folder
    /// name for Meta checkpoints.
    pub id: String,
    /// `hf-cache` or `llama-checkpoints`.
    pub source: &'static str,
    /// The snapshot's commit, for the Hugging Face cache.
    pub revision: Option<String>,
    /// `safetensors`, `gguf`, `meta` or `unknown`.
    pub format: &'static str,
    /// The weights' precision: the GGUF quantization (`Q4_K_M`, `Q8_0`, ...) or the
    /// safetensors `torch_dtype`.
    pub precision: Option<String>,
    pub size_bytes: u64,
    /// The folder or GGUF file to set as `model_path`.
    pub path: PathBuf,
    /// Why `inline::candle` cannot serve it as it is, when it cannot.
    pub problem: Option<String>,
}

/// Meta's checkpoint folder: `$LLAMA_STACK_CONFIG_DIR/checkpoints`, else
/// `~/.llama/checkpoints`.
pub fn checkpoints_dir() -> PathBuf {
    let base = match std::env::var_os("LLAMA_STACK_CONFIG_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default()
            .join(".llama"),
    };
    base.join("checkpoints")
}

/// Lists the models in the Hugging Face cache the server searches (or `hf_cache_dir`) and in
/// Meta's checkpoint folder. Unreadable entries are skipped: the list is a best effort view.
pub fn list_local(hf_cache_dir: Option<&str>) -> LocalInventory {
    let hf_cache = crate::model_files::hf_cache(hf_cache_dir).path().clone();
    let checkpoints_dir = checkpoints_dir();
    let mut models = Vec::new();
    for (name, repo_dir) in sorted_dirs(&hf_cache) {
        let Some(id) = name.strip_prefix("models--") else {
            continue;
        };
        let id = id.replace("--", "/");
        let Some((commit, snapshot)) = current_snapshot(&repo_dir) else {
            continue;
        };
        models.extend(describe(&id, "hf-cache", Some(commit), &snapshot));
    }
    for (name, dir) in sorted_dirs(&checkpoints_dir) {
        models.extend(describe(&name, "llama-checkpoints", None, &dir));
    }
    LocalInventory {
        hf_cache,
        checkpoints_dir,
        models,
    }
}

fn sorted_dirs(parent: &Path) -> Vec<(String, PathBuf)> {
    let mut dirs: Vec<(String, PathBuf)> = std::fs::read_dir(parent)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    dirs.sort();
    dirs
}

/// The snapshot `refs/main` names, else the most recently written one.
fn current_snapshot(repo_dir: &Path) -> Option<(String, PathBuf)> {
    let snapshots = repo_dir.join("snapshots");
    if let Ok(commit) = std::fs::read_to_string(repo_dir.join("refs").join("main")) {
        let dir = snapshots.join(commit.trim());
        if dir.is_dir() {
            return Some((commit.trim().to_string(), dir));
        }
    }
    sorted_dirs(&snapshots)
        .into_iter()
        .max_by_key(|(_, dir)| dir.metadata().and_then(|m| m.modified()).ok())
}

/// One entry per model in `dir`; a folder holding several GGUF files gives one per file, since
/// each is served on its own.
fn describe(
    id: &str,
    source: &'static str,
    revision: Option<String>,
    dir: &Path,
) -> Vec<LocalModel> {
    let entry = |format, precision, size_bytes, path: PathBuf, problem| LocalModel {
        id: id.to_string(),
        source,
        revision: revision.clone(),
        format,
        precision,
        size_bytes,
        path,
        problem,
    };
    let ggufs: Vec<PathBuf> = files_under(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "gguf"))
        .collect();
    if ggufs.len() > 1 {
        return ggufs
            .into_iter()
            .map(|file| {
                let size = file.metadata().map_or(0, |m| m.len());
                let problem = problem_of(&file);
                entry("gguf", gguf_precision(&file), size, file, problem)
            })
            .collect();
    }
    let size = files_under(dir)
        .iter()
        .filter_map(|p| p.metadata().ok())
        .map(|m| m.len())
        .sum();
    // Meta's layout also ships inside Hugging Face repositories, under original/.
    let original = dir.join("original");
    let model_dir = if !dir.join("config.json").is_file()
        && !dir.join("params.json").is_file()
        && original.join("params.json").is_file()
    {
        original
    } else {
        dir.to_path_buf()
    };
    let (format, precision, path) =
        if model_dir.join("config.json").is_file() && has_extension(&model_dir, "safetensors") {
            ("safetensors", torch_dtype(&model_dir), model_dir.clone())
        } else if let [file] = ggufs.as_slice() {
            ("gguf", gguf_precision(file), file.clone())
        } else if model_dir.join("params.json").is_file() && has_extension(&model_dir, "pth") {
            ("meta", None, model_dir.clone())
        } else {
            ("unknown", None, model_dir.clone())
        };
    let problem = problem_of(&path);
    vec![entry(format, precision, size, path, problem)]
}

fn problem_of(path: &Path) -> Option<String> {
    crate::model_files::inspect(path)
        .err()
        .map(|e| e.to_string())
}

fn has_extension(dir: &Path, extension: &str) -> bool {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| e.path().extension().is_some_and(|x| x == extension))
}

/// Every file below `dir`, following the cache's symlinks to their blobs.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.is_file() {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn torch_dtype(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("config.json")).ok()?;
    let config: serde_json::Value = serde_json::from_str(&text).ok()?;
    let dtype = config.get("torch_dtype")?.as_str()?;
    Some(
        match dtype {
            "float32" => "f32",
            "bfloat16" => "bf16",
            "float16" => "f16",
            other => other,
        }
        .to_string(),
    )
}

/// The quantization of a GGUF file: its `general.file_type`, else its most common tensor type.
fn gguf_precision(path: &Path) -> Option<String> {
    let content = crate::llama::load::read_gguf(path).ok()?;
    let file_type = content
        .metadata
        .get("general.file_type")
        .and_then(|v| v.to_u32().ok())
        .and_then(ftype_name);
    if let Some(name) = file_type {
        return Some(name.to_string());
    }
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for info in content.tensor_infos.values() {
        *counts.entry(format!("{:?}", info.ggml_dtype)).or_default() += 1;
    }
    counts
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .map(|(name, _)| name.to_uppercase())
}

/// llama.cpp's `llama_ftype` names, the tag quantized files are known by.
fn ftype_name(file_type: u32) -> Option<&'static str> {
    Some(match file_type {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        19 => "IQ2_XXS",
        20 => "IQ2_XS",
        21 => "Q2_K_S",
        22 => "IQ3_XS",
        23 => "IQ3_XXS",
        24 => "IQ1_S",
        25 => "IQ4_NL",
        26 => "IQ3_S",
        27 => "IQ3_M",
        28 => "IQ2_S",
        29 => "IQ2_M",
        30 => "IQ4_XS",
        31 => "IQ1_M",
        32 => "BF16",
        36 => "TQ1_0",
        37 => "TQ2_0",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn cache_repos_are_listed_by_id_with_their_current_snapshot() {
        let cache = tempfile::tempdir().unwrap();
        let repo = cache.path().join("models--org--tiny");
        write(&repo.join("refs/main"), "abc123");
        write(&repo.join("snapshots/abc123/README.md"), "hello");
        write(&repo.join("snapshots/old/README.md"), "x");
        std::fs::create_dir_all(cache.path().join("datasets--org--data")).unwrap();

        let inventory = list_local(cache.path().to_str());
        assert_eq!(inventory.models.len(), 1, "{inventory:?}");
        let model = &inventory.models[0];
        assert_eq!(model.id, "org/tiny");
        assert_eq!(model.source, "hf-cache");
        assert_eq!(model.revision.as_deref(), Some("abc123"));
        assert_eq!(model.format, "unknown");
        assert_eq!(model.size_bytes, 5);
        assert!(model.problem.is_some());
    }

    #[test]
    fn meta_layout_is_recognised_at_the_root_and_under_original() {
        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join("a/params.json"), "{}");
        write(&dir.path().join("a/consolidated.00.pth"), "");
        write(&dir.path().join("b/original/params.json"), "{}");
        write(&dir.path().join("b/original/consolidated.00.pth"), "");
        let a = describe("a", "llama-checkpoints", None, &dir.path().join("a"));
        assert_eq!(a[0].format, "meta");
        let b = describe("b", "hf-cache", None, &dir.path().join("b"));
        assert_eq!(b[0].format, "meta");
        assert_eq!(b[0].path, dir.path().join("b/original"));
    }

    #[test]
    fn file_types_have_llama_cpp_names() {
        assert_eq!(ftype_name(15), Some("Q4_K_M"));
        assert_eq!(ftype_name(7), Some("Q8_0"));
        assert_eq!(ftype_name(4), None);
    }
}
