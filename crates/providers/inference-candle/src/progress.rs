//! Model-load progress: a bar on a terminal, a few log lines otherwise.

use std::io::IsTerminal;
use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};

pub(crate) struct LoadProgress {
    bar: Option<ProgressBar>,
    name: String,
    logged_quarter: usize,
}

impl LoadProgress {
    pub fn new(location: &Path) -> Self {
        let name = location
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| location.display().to_string());
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "loading {msg} [{bar:30}] {pos}/{len} layers {elapsed}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_message(name.clone());
            bar
        });
        LoadProgress {
            bar,
            name,
            logged_quarter: 0,
        }
    }

    pub fn update(&mut self, done: usize, total: usize) {
        match &self.bar {
            Some(bar) => {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
                if done >= total {
                    bar.finish_and_clear();
                }
            }
            None => {
                let quarter = (done * 4).checked_div(total).unwrap_or(4);
                if quarter > self.logged_quarter && quarter < 4 {
                    self.logged_quarter = quarter;
                    tracing::info!(model = %self.name, percent = quarter * 25, "Loading model");
                }
            }
        }
    }
}
