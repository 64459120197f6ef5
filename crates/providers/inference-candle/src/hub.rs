//! Getting models onto this machine: downloads from the Hugging Face Hub into the standard
//! Hugging Face cache (where [`crate::model_files`] finds a model by its repository id), and the
//! inventory of models already here.
//!
//! Transfers go through `hf-hub`, so the cache layout (`models--org--name/blobs`, `snapshots`,
//! `refs`) and the resumable `.part` files are the ones every Hugging Face tool shares.

mod local;
mod select;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use hf_hub::api::Progress;
use hf_hub::api::sync::{ApiBuilder, ApiError, ApiRepo};
use hf_hub::{Repo, RepoType};
use indicatif::{ProgressBar, ProgressStyle};
use llama_stack_core::{Error, ErrorKind, Result};

pub use local::{LocalInventory, LocalModel, list_local};
pub use select::human_size;
use select::{RemoteFile, select_files};

/// The public Hub; `HF_ENDPOINT` replaces it (mirrors, and the tests' stand-in server).
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Transient failures in the middle of a file are retried from where the transfer stopped.
const RETRIES: usize = 3;

/// What `llama-stack model download` asks for.
#[derive(Debug, Clone)]
pub struct DownloadOptions {
    /// `owner/name` on the Hub.
    pub repo_id: String,
    /// Branch, tag or commit.
    pub revision: String,
    /// Globs choosing the files; empty picks the files of the layout the repository offers.
    pub include: Vec<String>,
    /// The cache to fill; `None` is the one the server searches by default.
    pub hf_cache_dir: Option<String>,
}

/// One file of a finished download.
#[derive(Debug, Clone)]
pub struct FileOutcome {
    pub name: String,
    pub bytes: u64,
    /// False when the file was already complete in the cache and nothing was transferred.
    pub fetched: bool,
    /// Bytes a previous, interrupted run had already stored (`.part`), which were kept.
    pub resumed_from: u64,
}

/// Where a download landed and what it holds.
#[derive(Debug, Clone)]
pub struct Downloaded {
    pub repo_id: String,
    pub revision: String,
    pub commit: String,
    pub endpoint: String,
    pub cache_dir: PathBuf,
    pub snapshot: PathBuf,
    pub files: Vec<FileOutcome>,
    /// The directory or file `inline::candle` would load, when it recognises one.
    pub model_location: Option<PathBuf>,
    /// Whether the server, with `model_path` empty, finds this snapshot by the repository id.
    pub found_by_id: bool,
    /// The layout found (`safetensors`, `gguf`, `meta`) or why the files cannot be served.
    pub format: std::result::Result<&'static str, String>,
}

/// The repository, revision and server a request is about, for error messages.
struct Target<'a> {
    endpoint: &'a str,
    repo_id: &'a str,
    revision: &'a str,
    authenticated: bool,
}

/// The Hub endpoint: `HF_ENDPOINT`, else the public Hub.
pub fn endpoint() -> String {
    match std::env::var("HF_ENDPOINT") {
        Ok(url) if !url.trim().is_empty() => url.trim().trim_end_matches('/').to_string(),
        _ => DEFAULT_ENDPOINT.to_string(),
    }
}

/// The access token, looked up as the Hugging Face tools do: `HF_TOKEN`, the legacy
/// `HUGGING_FACE_HUB_TOKEN`, then the file `huggingface-cli login` writes.
fn token() -> Option<String> {
    for var in ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"] {
        if let Ok(value) = std::env::var(var)
            && !value.trim().is_empty()
        {
            return Some(value.trim().to_string());
        }
    }
    let path = match std::env::var_os("HF_TOKEN_PATH") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => match std::env::var_os("HF_HOME") {
            Some(home) if !home.is_empty() => PathBuf::from(home).join("token"),
            _ => PathBuf::from(std::env::var_os("HOME")?).join(".cache/huggingface/token"),
        },
    };
    let text = std::fs::read_to_string(path).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

/// Fetches a model into the Hugging Face cache. Files already complete in the cache are not
/// transferred again, and a file an earlier run left half-done continues from its `.part`.
pub fn download(options: &DownloadOptions) -> Result<Downloaded> {
    check_repo_id(&options.repo_id)?;
    if std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| !v.is_empty() && v != "0") {
        return Err(Error::invalid(
            "HF_HUB_OFFLINE is set, so the Hub is not contacted; unset it to download",
        ));
    }
    let cache_dir = options
        .hf_cache_dir
        .as_deref()
        .filter(|d| !d.trim().is_empty())
        .map(|d| std::path::absolute(d).unwrap_or_else(|_| PathBuf::from(d)));
    let cache = crate::model_files::hf_cache(cache_dir.as_deref().and_then(Path::to_str));
    let endpoint = endpoint();
    let token = token();
    let target = Target {
        endpoint: &endpoint,
        repo_id: &options.repo_id,
        revision: &options.revision,
        authenticated: token.is_some(),
    };
    let api = ApiBuilder::from_cache(cache.clone())
        .with_endpoint(endpoint.clone())
        .with_token(token)
        .with_progress(false)
        .with_retries(RETRIES)
        .with_user_agent("llama-stack-rs", env!("CARGO_PKG_VERSION"))
        .build()
        .map_err(|e| api_error(e, &target, None))?;
    let repo = api.repo(Repo::with_revision(
        options.repo_id.clone(),
        RepoType::Model,
        options.revision.clone(),
    ));
    let (commit, remote) = repo_files(&repo, &target)?;
    let chosen = select_files(&options.repo_id, &remote, &options.include)?;

    let repo_dir = cache
        .path()
        .join(format!("models--{}", options.repo_id.replace('/', "--")));
    let snapshot = repo_dir.join("snapshots").join(&commit);
    let show_bars = std::io::stderr().is_terminal();
    let mut files = Vec::with_capacity(chosen.len());
    for file in chosen {
        files.push(fetch_file(
            &repo, &repo_dir, &snapshot, file, show_bars, &target,
        )?);
    }
    // hf-hub writes the ref with each transferred file; a run that found everything in place
    // transfers nothing, and the branch must still name this snapshot.
    write_ref(&repo_dir, &options.revision, &commit)?;

    let (model_location, format, at_root) = servable(&snapshot);
    let found_by_id = at_root
        && crate::model_files::cached_snapshot(&cache, &options.repo_id).as_deref()
            == Some(snapshot.as_path());
    Ok(Downloaded {
        repo_id: options.repo_id.clone(),
        revision: options.revision.clone(),
        commit,
        endpoint,
        cache_dir: cache.path().clone(),
        snapshot,
        files,
        model_location,
        found_by_id,
        format,
    })
}

fn check_repo_id(repo_id: &str) -> Result<()> {
    let valid_part = |s: &str| {
        !s.is_empty()
            && s != "."
            && s != ".."
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    let parts: Vec<&str> = repo_id.split('/').collect();
    if parts.len() <= 2 && parts.iter().all(|p| valid_part(p)) {
        return Ok(());
    }
    Err(Error::invalid(format!(
        "`{repo_id}` is not a Hugging Face repository id; use owner/name, e.g. meta-llama/Llama-3.2-1B-Instruct"
    )))
}

/// The commit the revision points at and the repository's files, with sizes.
fn repo_files(repo: &ApiRepo, target: &Target) -> Result<(String, Vec<RemoteFile>)> {
    let response = repo
        .info_request()
        .query("blobs", "true")
        .call()
        .map_err(|e| api_error(ApiError::from(Box::new(e)), target, None))?;
    let info: serde_json::Value = response.into_json().map_err(|e| {
        Error::new(
            ErrorKind::Upstream,
            format!(
                "{} answered the model info of {} with something that is not JSON ({e}); check HF_ENDPOINT",
                target.endpoint, target.repo_id
            ),
        )
    })?;
    parse_info(&info).ok_or_else(|| {
        Error::new(
            ErrorKind::Upstream,
            format!(
                "{} answered the model info of {} without `sha` and `siblings`; check HF_ENDPOINT",
                target.endpoint, target.repo_id
            ),
        )
    })
}

fn parse_info(info: &serde_json::Value) -> Option<(String, Vec<RemoteFile>)> {
    let commit = info.get("sha")?.as_str()?.to_string();
    let files = info
        .get("siblings")?
        .as_array()?
        .iter()
        .filter_map(|s| {
            let lfs = s.get("lfs");
            Some(RemoteFile {
                name: s.get("rfilename")?.as_str()?.to_string(),
                size: s
                    .get("size")
                    .and_then(|v| v.as_u64())
                    .or_else(|| lfs?.get("size")?.as_u64()),
                blob: lfs
                    .and_then(|l| l.get("sha256"))
                    .or_else(|| s.get("blobId"))
                    .and_then(|v| v.as_str())
                    .map(str::to_string),
            })
        })
        .collect();
    Some((commit, files))
}

fn fetch_file(
    repo: &ApiRepo,
    repo_dir: &Path,
    snapshot: &Path,
    file: &RemoteFile,
    show_bars: bool,
    target: &Target,
) -> Result<FileOutcome> {
    let pointer = snapshot.join(&file.name);
    // `exists` follows the snapshot's symlink, so a pointer whose blob is gone is refetched.
    if let Ok(meta) = std::fs::metadata(&pointer)
        && file.size.is_none_or(|size| size == meta.len())
    {
        return Ok(FileOutcome {
            name: file.name.clone(),
            bytes: meta.len(),
            fetched: false,
            resumed_from: 0,
        });
    }
    let part = file
        .blob
        .as_ref()
        .map(|blob| repo_dir.join("blobs").join(format!("{blob}.part")));
    let mut resumed_from = part
        .as_ref()
        .and_then(|p| std::fs::metadata(p).ok())
        .map_or(0, |m| m.len());
    // A part as long as the file was interrupted between its last byte and its rename; asking
    // the Hub for the bytes after its end gets 416, so that file starts over.
    if let (Some(part), Some(size)) = (&part, file.size)
        && resumed_from > 0
        && resumed_from >= size
    {
        tracing::warn!(file = %file.name, part = %part.display(), "Discarding a partial download as long as the file");
        let _ = std::fs::remove_file(part);
        resumed_from = 0;
    }
    let progress = FileProgress::new(&file.name, show_bars, resumed_from);
    // hf-hub asserts on a few server answers it does not expect; one odd reply must end this
    // command with an error, not a panic trace.
    let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        repo.download_with_progress(&file.name, progress)
    }));
    let path = match attempt {
        Ok(Ok(path)) => path,
        Ok(Err(err)) => return Err(api_error(err, target, Some(&file.name))),
        Err(_) => {
            return Err(Error::new(
                ErrorKind::Upstream,
                format!(
                    "downloading {} from {} failed on an unexpected answer; run the command again (complete files are kept)",
                    file.name, target.endpoint
                ),
            ));
        }
    };
    let bytes = std::fs::metadata(&path).map_or(0, |m| m.len());
    if let Some(size) = file.size
        && size != bytes
    {
        return Err(Error::new(
            ErrorKind::Upstream,
            format!(
                "{} arrived with {bytes} bytes but the Hub lists {size}; delete {} and download again",
                file.name,
                path.display()
            ),
        ));
    }
    if !path.starts_with(snapshot) {
        tracing::warn!(
            file = %file.name,
            path = %path.display(),
            "The revision moved to another commit during the download"
        );
    }
    Ok(FileOutcome {
        name: file.name.clone(),
        bytes,
        fetched: true,
        resumed_from,
    })
}

fn write_ref(repo_dir: &Path, revision: &str, commit: &str) -> Result<()> {
    // A commit id is its own ref; the Hugging Face tools write no file for it.
    if revision == commit {
        return Ok(());
    }
    let path = repo_dir.join("refs").join(revision);
    let written = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(&path, commit));
    written.map_err(|e| Error::internal(format!("cannot write {}: {e}", path.display())))
}

/// What `inline::candle` would load from a snapshot: its root, or Meta's `original/` folder.
/// The flag says whether it is the root, which is all a lookup by repository id reads.
fn servable(
    snapshot: &Path,
) -> (
    Option<PathBuf>,
    std::result::Result<&'static str, String>,
    bool,
) {
    let root = crate::model_files::inspect(snapshot);
    let original = snapshot.join("original");
    if root.is_err() && original.join("params.json").is_file() {
        return match crate::model_files::inspect(&original) {
            Ok(files) => (Some(original), Ok(files.weights.format()), false),
            Err(e) => (None, Err(e.to_string()), false),
        };
    }
    match root {
        Ok(files) => (Some(files.location), Ok(files.weights.format()), true),
        Err(e) => (None, Err(e.to_string()), false),
    }
}

fn api_error(err: ApiError, target: &Target, file: Option<&str>) -> Error {
    let what = file.unwrap_or("the model info");
    match err {
        // The HTTP client's error type is hf-hub's dependency, reached only through this
        // variant: take what is needed from it here.
        ApiError::RequestError(err) => {
            let detail = err.to_string();
            match err.into_response() {
                Some(response) => {
                    let code = response.header("x-error-code").unwrap_or_default();
                    status_error(response.status(), code, target, file)
                }
                None => unreachable_hub(target.endpoint, &detail),
            }
        }
        ApiError::TooManyRetries(inner) => api_error(*inner, target, file),
        ApiError::MissingHeader(header) | ApiError::InvalidHeader(header) => Error::new(
            ErrorKind::Upstream,
            format!(
                "{} answered {what} of {} without a valid `{header}` header, so it does not behave like the Hugging Face Hub; check HF_ENDPOINT",
                target.endpoint, target.repo_id
            ),
        ),
        ApiError::ParseIntError(_) => Error::new(
            ErrorKind::Upstream,
            format!(
                "{} answered {what} with an unreadable Content-Range; check HF_ENDPOINT",
                target.endpoint
            ),
        ),
        ApiError::IoError(e) => Error::new(
            ErrorKind::Upstream,
            format!(
                "downloading {what} of {} stopped: {e}. Run the same command again: complete files are kept and this one resumes where it stopped",
                target.repo_id
            ),
        )
        .set_temporary(true),
        ApiError::InvalidResume => Error::invalid(format!(
            "the partial download of {what} (a .part file under the repository's blobs/ folder in the cache) is longer than the file; delete it and run again"
        )),
        ApiError::LockAcquisition(lock) => Error::new(
            ErrorKind::Conflict,
            format!(
                "another download of {what} holds {}; wait for it to finish, or delete that lock file if none is running",
                lock.display()
            ),
        ),
        #[allow(unreachable_patterns)]
        other => Error::new(ErrorKind::Upstream, format!("downloading {what}: {other}")),
    }
}

/// Turns an HTTP error status into what the user should do about it.
fn status_error(status: u16, code: &str, target: &Target, file: Option<&str>) -> Error {
    let repo = target.repo_id;
    let page = format!("{}/{repo}", target.endpoint);
    let tokens = format!("{}/settings/tokens", target.endpoint);
    match status {
        401 if target.authenticated => Error::new(
            ErrorKind::Unauthorized,
            format!(
                "the Hub refused the token for {repo} (401): HF_TOKEN is invalid or expired, or the repository is private and not shared with you. Create a read token at {tokens}"
            ),
        ),
        401 => Error::new(
            ErrorKind::Unauthorized,
            format!(
                "{repo} needs authentication (401): it is a gated or private repository (or does not exist). Accept the license on {page} and set HF_TOKEN to a read token from {tokens}"
            ),
        ),
        403 => Error::new(
            ErrorKind::Forbidden,
            format!(
                "access to {repo} is refused (403): it is a gated repository and this token has no access to it yet. Accept the license on {page} (approval can take a while), and check that HF_TOKEN belongs to that account (fine-grained tokens need read access to public gated repositories)"
            ),
        ),
        404 if code == "RevisionNotFound" => Error::not_found(format!(
            "{repo} has no revision `{}` (404); use a branch, tag or commit of {page}",
            target.revision
        )),
        404 if code == "EntryNotFound" => Error::not_found(format!(
            "{repo} at `{}` has no file {} (404)",
            target.revision,
            file.unwrap_or("?")
        )),
        404 => Error::not_found(format!(
            "no repository {repo} on {} (404): check the id (owner/name, e.g. meta-llama/Llama-3.2-1B-Instruct)",
            target.endpoint
        )),
        416 => Error::invalid(format!(
            "{} refused to resume {} (416): the partial download in the cache does not fit the file; delete the repository's blobs/*.part files and run again",
            target.endpoint,
            file.unwrap_or("the download")
        )),
        429 => Error::new(
            ErrorKind::RateLimited,
            "the Hub is rate limiting requests (429); wait a minute and run again",
        ),
        _ => Error::new(
            ErrorKind::Upstream,
            format!(
                "{} answered {status} for {}; try again later",
                target.endpoint,
                file.unwrap_or("the model info")
            ),
        )
        .set_temporary(status >= 500),
    }
}

fn unreachable_hub(endpoint: &str, detail: &str) -> Error {
    Error::new(
        ErrorKind::Upstream,
        format!(
            "the Hugging Face Hub at {endpoint} is unreachable ({detail}). Without access, copy the model in by hand: put a Hugging Face model folder (config.json, *.safetensors, tokenizer.json), a .gguf file, or a Meta checkpoint folder (params.json, consolidated.00.pth, tokenizer.model) on this machine and set the provider's model_path (LLAMA_MODEL_PATH in the local distribution) to it; or point HF_ENDPOINT at a reachable mirror"
        ),
    )
    .set_temporary(true)
}

/// Files below this size arrive too fast for progress lines in a log to help.
const QUARTER_LOG_BYTES: u64 = 64 << 20;

/// Per-file progress: a bar on a terminal, a line per quarter in logs otherwise.
struct FileProgress {
    bar: Option<ProgressBar>,
    name: String,
    total: u64,
    done: u64,
    announced: bool,
    logged_quarter: u64,
    started: Instant,
    resumed_from: u64,
}

impl FileProgress {
    fn new(name: &str, show_bar: bool, resumed_from: u64) -> Self {
        let bar = show_bar.then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg:30!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_message(name.to_string());
            bar
        });
        FileProgress {
            bar,
            name: name.to_string(),
            total: 0,
            done: 0,
            announced: false,
            logged_quarter: 0,
            started: Instant::now(),
            resumed_from,
        }
    }
}

impl Progress for FileProgress {
    // hf-hub calls `init` again before each retry and then reports the bytes already stored.
    fn init(&mut self, size: usize, _filename: &str) {
        self.total = size as u64;
        self.done = 0;
        if let Some(bar) = &self.bar {
            bar.set_length(self.total);
            bar.set_position(0);
        } else if !self.announced {
            self.announced = true;
            tracing::info!(
                file = %self.name,
                bytes = self.total,
                resumed_from = self.resumed_from,
                "Downloading"
            );
        }
    }

    fn update(&mut self, size: usize) {
        self.done += size as u64;
        match &self.bar {
            Some(bar) => bar.set_position(self.done),
            None => {
                let quarter = if self.total < QUARTER_LOG_BYTES {
                    0
                } else {
                    self.done * 4 / self.total
                };
                if quarter > self.logged_quarter && quarter < 4 {
                    self.logged_quarter = quarter;
                    tracing::info!(file = %self.name, percent = quarter * 25, "Downloading");
                }
            }
        }
    }

    fn finish(&mut self) {
        match &self.bar {
            Some(bar) => bar.finish(),
            None => tracing::info!(
                file = %self.name,
                bytes = self.total,
                elapsed_ms = self.started.elapsed().as_millis() as u64,
                "Downloaded"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(authenticated: bool) -> Target<'static> {
        Target {
            endpoint: DEFAULT_ENDPOINT,
            repo_id: "meta-llama/Llama-3.2-1B-Instruct",
            revision: "main",
            authenticated,
        }
    }

    #[test]
    fn model_info_gives_commit_sizes_and_blob_names() {
        let info = serde_json::json!({
            "sha": "abc",
            "siblings": [
                {"rfilename": "config.json", "size": 10, "blobId": "git1"},
                {"rfilename": "model.safetensors", "blobId": "git2",
                 "lfs": {"sha256": "lfs2", "size": 20, "pointerSize": 134}},
                {"rfilename": "README.md"},
                {"size": 3}
            ]
        });
        let (commit, files) = parse_info(&info).unwrap();
        assert_eq!(commit, "abc");
        let summary: Vec<_> = files
            .iter()
            .map(|f| (f.name.as_str(), f.size, f.blob.as_deref()))
            .collect();
        assert_eq!(
            summary,
            [
                ("config.json", Some(10), Some("git1")),
                ("model.safetensors", Some(20), Some("lfs2")),
                ("README.md", None, None),
            ]
        );
        assert!(parse_info(&serde_json::json!({"siblings": []})).is_none());
    }

    #[test]
    fn statuses_say_what_to_do() {
        let anonymous = status_error(401, "GatedRepo", &target(false), None);
        assert_eq!(anonymous.kind(), ErrorKind::Unauthorized);
        let text = anonymous.to_string();
        assert!(
            text.contains("HF_TOKEN") && text.contains("license"),
            "{text}"
        );
        assert!(
            text.contains("https://huggingface.co/meta-llama/Llama-3.2-1B-Instruct"),
            "{text}"
        );
        let rejected = status_error(401, "", &target(true), None).to_string();
        assert!(rejected.contains("invalid or expired"), "{rejected}");
        let gated = status_error(403, "GatedRepo", &target(true), None);
        assert_eq!(gated.kind(), ErrorKind::Forbidden);
        assert!(gated.to_string().contains("Accept the license"));
        let missing = status_error(404, "RepoNotFound", &target(true), None);
        assert_eq!(missing.kind(), ErrorKind::NotFound);
        assert!(missing.to_string().contains("no repository"));
        let revision = status_error(404, "RevisionNotFound", &target(true), None).to_string();
        assert!(revision.contains("no revision `main`"), "{revision}");
        let file = status_error(404, "EntryNotFound", &target(true), Some("x.gguf")).to_string();
        assert!(file.contains("no file x.gguf"), "{file}");
        assert!(status_error(503, "", &target(true), None).is_temporary());
        let unreachable = unreachable_hub(DEFAULT_ENDPOINT, "Dns Failed").to_string();
        assert!(
            unreachable.contains("unreachable") && unreachable.contains("model_path"),
            "{unreachable}"
        );
    }

    #[test]
    fn repository_ids() {
        for ok in ["meta-llama/Llama-3.2-1B-Instruct", "gpt2", "org/name.v1_x"] {
            assert!(check_repo_id(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a/b/c",
            "../x",
            "org/",
            "org/na me",
            "https://huggingface.co/x",
        ] {
            assert!(check_repo_id(bad).is_err(), "{bad}");
        }
    }
}
