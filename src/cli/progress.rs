//! Progress on stderr: one bar per running build and an overall bar when stderr is a
//! terminal; plain lines otherwise; nothing with --quiet.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::build::Reporter;
use crate::drv::DrvHash;
use crate::recipe::{Platform, RecipeName};

/// Draws build events.
pub struct Progress {
    multi: Option<MultiProgress>,
    overall: OnceLock<ProgressBar>,
    bars: Mutex<BTreeMap<DrvHash, (ProgressBar, String)>>,
    quiet: bool,
}

impl Progress {
    /// Bars when stderr is a terminal, plain lines otherwise, nothing when `quiet`.
    pub fn new(quiet: bool) -> Self {
        let fancy = !quiet && std::io::stderr().is_terminal();
        let multi = fancy.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Self {
            multi,
            overall: OnceLock::new(),
            bars: Mutex::new(BTreeMap::new()),
            quiet,
        }
    }

    fn line(&self, text: &str) {
        if self.quiet {
            return;
        }
        match &self.multi {
            Some(multi) => multi.suspend(|| eprintln!("{text}")),
            None => eprintln!("{text}"),
        }
    }
}

impl Reporter for Progress {
    fn start(&self, to_build: usize) {
        if to_build == 0 {
            return;
        }
        self.line(&format!("azb: {to_build} derivation(s) to build"));
        if let Some(multi) = &self.multi {
            let bar = multi.add(ProgressBar::new(to_build as u64));
            bar.set_style(
                ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} {elapsed}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            bar.set_prefix("overall");
            let _ = self.overall.set(bar);
        }
    }

    fn substituted(&self, name: &RecipeName, platform: Platform, url: &str) {
        self.line(&format!("   substituted {name} ({platform}) from {url}"));
    }

    fn fetching(&self, name: &RecipeName, url: &str) {
        self.line(&format!("   fetching {name} from {url}"));
    }

    fn build_started(&self, drv: &DrvHash, name: &RecipeName, platform: Platform) {
        let label = format!("{name} ({platform})");
        match &self.multi {
            Some(multi) => {
                let bar = multi.insert_from_back(1, ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("{spinner} {prefix} {msg} {elapsed}")
                        .expect("valid template"),
                );
                bar.set_prefix(label.clone());
                bar.enable_steady_tick(Duration::from_millis(120));
                self.bars
                    .lock()
                    .expect("progress lock")
                    .insert(*drv, (bar, label));
            }
            None => {
                self.line(&format!("   building {label} [{}]", drv.short()));
                self.bars
                    .lock()
                    .expect("progress lock")
                    .insert(*drv, (ProgressBar::hidden(), label));
            }
        }
    }

    fn build_step(&self, drv: &DrvHash, step: &str) {
        if let Some((bar, _)) = self.bars.lock().expect("progress lock").get(drv) {
            bar.set_message(step.to_owned());
        }
    }

    fn build_finished(&self, drv: &DrvHash, ok: bool, elapsed: Duration) {
        let Some((bar, label)) = self.bars.lock().expect("progress lock").remove(drv) else {
            return;
        };
        bar.finish_and_clear();
        if let Some(multi) = &self.multi {
            multi.remove(&bar);
        }
        if let Some(overall) = self.overall.get() {
            overall.inc(1);
        }
        let verb = if ok { "built" } else { "FAILED" };
        self.line(&format!(
            "   {verb} {label} in {:.1}s",
            elapsed.as_secs_f64()
        ));
    }

    fn warn(&self, message: &str) {
        self.line(&format!("warning: {message}"));
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(overall) = self.overall.get() {
            overall.finish_and_clear();
        }
    }
}
