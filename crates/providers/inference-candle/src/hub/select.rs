//! Which files of a Hub repository a download fetches.

use llama_stack_core::{Error, Result};

/// One file of a repository, as the Hub's model-info route lists it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RemoteFile {
    /// Path inside the repository, `/`-separated.
    pub name: String,
    /// Size in bytes, when the listing carried it (`?blobs=true`).
    pub size: Option<u64>,
    /// The name the file's blob gets in the cache: the LFS sha256 or the git blob id, which is
    /// what the Hub sends as the file's etag.
    pub blob: Option<String>,
}

/// The small files of the Hugging Face layout that a Llama model needs besides its weights.
const HF_FILES: &[&str] = &[
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "model.safetensors.index.json",
];

/// Listing every file of a big repository in an error would drown the message.
const LISTED_FILES: usize = 40;

/// Picks the files to fetch: those matching `include` when given, else the files of the
/// first layout the repository offers that `inline::candle` reads.
pub(crate) fn select_files<'a>(
    repo_id: &str,
    files: &'a [RemoteFile],
    include: &[String],
) -> Result<Vec<&'a RemoteFile>> {
    if !include.is_empty() {
        let picked: Vec<&RemoteFile> = files
            .iter()
            .filter(|f| include.iter().any(|g| glob_match(g, &f.name)))
            .collect();
        if picked.is_empty() {
            return Err(Error::invalid(format!(
                "no file of {repo_id} matches --include {}; the repository holds: {}",
                include
                    .iter()
                    .map(|g| format!("'{g}'"))
                    .collect::<Vec<_>>()
                    .join(" "),
                listing(files)
            )));
        }
        return Ok(picked);
    }
    let top_level = |f: &&RemoteFile| !f.name.contains('/');
    let has = |name: &str| files.iter().any(|f| f.name == name);
    let safetensors = files
        .iter()
        .filter(top_level)
        .any(|f| f.name.ends_with(".safetensors"));
    if has("config.json") && safetensors {
        return Ok(files
            .iter()
            .filter(top_level)
            .filter(|f| HF_FILES.contains(&f.name.as_str()) || f.name.ends_with(".safetensors"))
            .collect());
    }
    let ggufs: Vec<&RemoteFile> = files.iter().filter(|f| f.name.ends_with(".gguf")).collect();
    match ggufs.as_slice() {
        [one] => return Ok(vec![*one]),
        [] => {}
        many => {
            let names = many
                .iter()
                .map(|f| match f.size {
                    Some(size) => format!("{} ({})", f.name, human_size(size)),
                    None => f.name.clone(),
                })
                .collect::<Vec<_>>()
                .join(", ");
            let example = many
                .iter()
                .find_map(|f| quant_suffix(&f.name))
                .unwrap_or("Q4_K_M");
            return Err(Error::invalid(format!(
                "{repo_id} holds {} GGUF files; choose one with --include, e.g. --include '*{example}.gguf' (Q8_0 and Q4_0 run fastest in inline::candle). Files: {names}",
                many.len()
            )));
        }
    }
    if has("params.json") && has("consolidated.00.pth") {
        return Ok(files
            .iter()
            .filter(top_level)
            .filter(|f| {
                f.name == "params.json"
                    || f.name == "tokenizer.model"
                    || (f.name.starts_with("consolidated.") && f.name.ends_with(".pth"))
            })
            .collect());
    }
    if has("original/params.json") {
        return Err(Error::invalid(format!(
            "{repo_id} holds Meta's original checkpoint under original/ but no Hugging Face weights; fetch it with --include 'original/*'"
        )));
    }
    Err(Error::invalid(format!(
        "{repo_id} holds no layout inline::candle reads (config.json with *.safetensors, a .gguf file, or params.json with consolidated.00.pth); choose files with --include. The repository holds: {}",
        listing(files)
    )))
}

fn listing(files: &[RemoteFile]) -> String {
    let mut names: Vec<&str> = files
        .iter()
        .take(LISTED_FILES)
        .map(|f| f.name.as_str())
        .collect();
    if files.len() > LISTED_FILES {
        names.push("...");
    }
    if names.is_empty() {
        return "no files".into();
    }
    names.join(", ")
}

/// `Llama-3.2-1B-Instruct-Q4_K_M.gguf` → `Q4_K_M`: the quant tag llama.cpp's naming puts last.
fn quant_suffix(name: &str) -> Option<&str> {
    let stem = name.strip_suffix(".gguf")?;
    let tag = stem.rsplit(['-', '.']).next()?;
    let upper = tag.to_ascii_uppercase();
    (upper.starts_with('Q') || upper.starts_with("IQ") || upper == "F16" || upper == "BF16")
        .then_some(tag)
}

/// Shell-style matching as `huggingface-cli --include` does it (Python's fnmatch): `*` matches
/// any run of characters, `/` included, and `?` any one character.
pub(crate) fn glob_match(pattern: &str, name: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let name: Vec<char> = name.chars().collect();
    let (mut p, mut n) = (0, 0);
    // Where the last `*` was and how much of the name it has swallowed, for backtracking.
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == '?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((star_p, star_n)) => {
                    p = star_p + 1;
                    n = star_n + 1;
                    star = Some((star_p, star_n + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// Bytes in binary units, as `ls -h` and the Hub's file lists show them.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(names: &[&str]) -> Vec<RemoteFile> {
        names
            .iter()
            .map(|n| RemoteFile {
                name: n.to_string(),
                size: Some(1000),
                blob: None,
            })
            .collect()
    }

    fn picked(files: &[RemoteFile], include: &[&str]) -> Result<Vec<String>> {
        let include: Vec<String> = include.iter().map(|s| s.to_string()).collect();
        select_files("org/model", files, &include)
            .map(|v| v.into_iter().map(|f| f.name.clone()).collect())
    }

    #[test]
    fn glob_is_fnmatch() {
        assert!(glob_match("*.safetensors", "model.safetensors"));
        assert!(glob_match("*.safetensors", "original/x.safetensors"));
        assert!(glob_match("original/*", "original/params.json"));
        assert!(glob_match(
            "*Q4_K_M.gguf",
            "Llama-3.2-1B-Instruct-Q4_K_M.gguf"
        ));
        assert!(glob_match(
            "model-0000?-of-00002.safetensors",
            "model-00001-of-00002.safetensors"
        ));
        assert!(glob_match("*", ""));
        assert!(glob_match("a*b*c", "a-b-b-c"));
        assert!(!glob_match("*.json", "model.safetensors"));
        assert!(!glob_match("original/*", "config.json"));
        assert!(!glob_match("a*b*c", "a-b-b-d"));
        assert!(!glob_match("?", ""));
    }

    #[test]
    fn hugging_face_layout_takes_config_tokenizer_and_weights_only() {
        let files = repo(&[
            ".gitattributes",
            "LICENSE.txt",
            "README.md",
            "config.json",
            "generation_config.json",
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors",
            "model.safetensors.index.json",
            "original/consolidated.00.pth",
            "original/params.json",
            "original/tokenizer.model",
            "special_tokens_map.json",
            "tokenizer.json",
            "tokenizer_config.json",
        ]);
        assert_eq!(
            picked(&files, &[]).unwrap(),
            [
                "config.json",
                "generation_config.json",
                "model-00001-of-00002.safetensors",
                "model-00002-of-00002.safetensors",
                "model.safetensors.index.json",
                "special_tokens_map.json",
                "tokenizer.json",
                "tokenizer_config.json",
            ]
        );
        assert_eq!(
            picked(&files, &["original/*"]).unwrap(),
            [
                "original/consolidated.00.pth",
                "original/params.json",
                "original/tokenizer.model"
            ]
        );
    }

    #[test]
    fn one_gguf_is_taken_and_several_need_a_choice() {
        let one = repo(&["README.md", "model.gguf", "tokenizer.json"]);
        assert_eq!(picked(&one, &[]).unwrap(), ["model.gguf"]);

        let many = repo(&[
            "Llama-3.2-1B-Instruct-Q4_K_M.gguf",
            "Llama-3.2-1B-Instruct-Q8_0.gguf",
            "README.md",
        ]);
        let err = picked(&many, &[]).unwrap_err().to_string();
        assert!(err.contains("2 GGUF files"), "{err}");
        assert!(err.contains("--include '*Q4_K_M.gguf'"), "{err}");
        assert!(
            err.contains("Llama-3.2-1B-Instruct-Q8_0.gguf (1000 B)"),
            "{err}"
        );
        assert_eq!(
            picked(&many, &["*Q8_0.gguf"]).unwrap(),
            ["Llama-3.2-1B-Instruct-Q8_0.gguf"]
        );
    }

    #[test]
    fn meta_layouts() {
        let root = repo(&[
            "consolidated.00.pth",
            "params.json",
            "tokenizer.model",
            "LICENSE",
        ]);
        assert_eq!(
            picked(&root, &[]).unwrap(),
            ["consolidated.00.pth", "params.json", "tokenizer.model"]
        );
        let original = repo(&["original/params.json", "original/consolidated.00.pth"]);
        let err = picked(&original, &[]).unwrap_err().to_string();
        assert!(err.contains("--include 'original/*'"), "{err}");
    }

    #[test]
    fn unknown_layouts_and_unmatched_globs_list_the_files() {
        let files = repo(&["pytorch_model.bin", "config.json"]);
        let err = picked(&files, &[]).unwrap_err().to_string();
        assert!(
            err.contains("--include") && err.contains("pytorch_model.bin"),
            "{err}"
        );
        let err = picked(&files, &["*.gguf"]).unwrap_err().to_string();
        assert!(
            err.contains("'*.gguf'") && err.contains("config.json"),
            "{err}"
        );
    }

    #[test]
    fn quant_tags_and_sizes() {
        assert_eq!(
            quant_suffix("Llama-3.2-1B-Instruct-Q4_K_M.gguf"),
            Some("Q4_K_M")
        );
        assert_eq!(
            quant_suffix("llama-3.2-1b-instruct.q8_0.gguf"),
            Some("q8_0")
        );
        assert_eq!(quant_suffix("model.gguf"), None);
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(5 * 1024 * 1024 * 1024), "5.0 GiB");
    }
}
