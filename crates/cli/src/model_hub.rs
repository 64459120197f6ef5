//! `llama-stack model download` and `llama-stack model list`: what they print.

use std::process::ExitCode;

use llama_stack_provider_inference_candle::hub::{
    self, DownloadOptions, LocalInventory, human_size,
};

pub fn download(options: DownloadOptions) -> anyhow::Result<ExitCode> {
    let custom_cache = options.hf_cache_dir.is_some();
    let done = hub::download(&options).map_err(|e| anyhow::anyhow!("{e}"))?;
    let fetched: u64 = done
        .files
        .iter()
        .filter(|f| f.fetched)
        .map(|f| f.bytes.saturating_sub(f.resumed_from))
        .sum();
    println!(
        "{} (revision {}, commit {}) from {}",
        done.repo_id, done.revision, done.commit, done.endpoint
    );
    let width = done.files.iter().map(|f| f.name.len()).max().unwrap_or(0);
    for file in &done.files {
        let how = match (file.fetched, file.resumed_from) {
            (false, _) => "already in the cache".to_string(),
            (true, 0) => "downloaded".to_string(),
            (true, kept) => format!("resumed after {}", human_size(kept)),
        };
        println!(
            "  {:width$}  {:>10}  {how}",
            file.name,
            human_size(file.bytes)
        );
    }
    println!(
        "{} fetched, {} files in {}",
        human_size(fetched),
        done.files.len(),
        done.snapshot.display()
    );
    match (&done.format, &done.model_location) {
        (Ok(format), Some(_)) if done.found_by_id => {
            let cache = if custom_cache {
                format!(
                    " and hf_cache_dir: {} (or HF_HUB_CACHE)",
                    done.cache_dir.display()
                )
            } else {
                String::new()
            };
            println!(
                "Format: {format}. The server finds it by id: register model_id {} on inline::candle with model_path empty{cache}, e.g. INFERENCE_MODEL={} llama-stack run local",
                done.repo_id, done.repo_id
            );
        }
        (Ok(format), Some(location)) => println!(
            "Format: {format}. Serve it with model_path: {}",
            location.display()
        ),
        (Ok(format), None) => println!("Format: {format}."),
        (Err(problem), _) => {
            println!("Note: inline::candle cannot serve these files as they are: {problem}")
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn list(hf_cache_dir: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let inventory = hub::list_local(hf_cache_dir);
    if json {
        println!("{}", serde_json::to_string_pretty(&inventory)?);
        return Ok(ExitCode::SUCCESS);
    }
    if inventory.models.is_empty() {
        println!(
            "No models in the Hugging Face cache at {} or in {}.",
            inventory.hf_cache.display(),
            inventory.checkpoints_dir.display()
        );
        println!(
            "Download one with `llama-stack model download <repo-id>` (e.g. meta-llama/Llama-3.2-1B-Instruct; gated models need HF_TOKEN), or write a test model with `llama-stack model create-test <dir>`."
        );
        return Ok(ExitCode::SUCCESS);
    }
    print_table(&inventory);
    Ok(ExitCode::SUCCESS)
}

fn print_table(inventory: &LocalInventory) {
    let rows: Vec<[String; 5]> = inventory
        .models
        .iter()
        .map(|m| {
            let format = match &m.precision {
                Some(p) => format!("{} {p}", m.format),
                None => m.format.to_string(),
            };
            let revision = m
                .revision
                .as_deref()
                .map_or("-".to_string(), |r| r.chars().take(10).collect());
            [
                m.id.clone(),
                format,
                human_size(m.size_bytes),
                revision,
                m.path.display().to_string(),
            ]
        })
        .collect();
    let header = ["MODEL", "FORMAT", "SIZE", "REVISION", "PATH"];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 5]| {
        let [id, format, size, revision, path] = cells;
        println!(
            "{id:w0$}  {format:w1$}  {size:>w2$}  {revision:w3$}  {path}",
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3],
        );
    };
    line(header);
    for row in &rows {
        line([&row[0], &row[1], &row[2], &row[3], &row[4]]);
    }
    let problems: Vec<_> = inventory
        .models
        .iter()
        .filter_map(|m| Some((m, m.problem.as_ref()?)))
        .collect();
    if !problems.is_empty() {
        println!();
        for (model, problem) in problems {
            println!(
                "not servable: {} ({}): {problem}",
                model.id,
                model.path.display()
            );
        }
    }
    println!();
    println!(
        "Searched the Hugging Face cache at {} and {}.",
        inventory.hf_cache.display(),
        inventory.checkpoints_dir.display()
    );
}
