//! Transfer progress bars: one per blob, on stderr, only when stdout is a terminal and
//! `--quiet` was not given.

use std::io::IsTerminal as _;
use std::sync::Arc;

use agent_registry_client::Progress;
use agent_registry_images::{Blob, TransferProgress};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::output::short_id;

pub struct Bars {
    multi: MultiProgress,
}

impl Bars {
    pub fn new(quiet: bool) -> Bars {
        let target = if quiet || !std::io::stdout().is_terminal() {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        Bars {
            multi: MultiProgress::with_draw_target(target),
        }
    }

    /// A message above the bars (or nothing, when they are hidden).
    pub fn println(&self, msg: &str) {
        let _ = self.multi.println(msg);
    }
}

struct Bar(ProgressBar);

impl Progress for Bar {
    fn set_position(&self, bytes: u64) {
        self.0.set_position(bytes);
    }
    fn advance(&self, bytes: u64) {
        self.0.inc(bytes);
    }
}

impl TransferProgress for Bars {
    fn blob(&self, blob: &Blob) -> Arc<dyn Progress> {
        let bar = self.multi.add(ProgressBar::new(blob.size));
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix(short_id(&blob.digest));
        Arc::new(Bar(bar))
    }

    fn blob_done(&self, blob: &Blob, how: &str) {
        self.println(&format!("{}: {how}", short_id(&blob.digest)));
    }
}
