//! Progress on stderr: one bar per running build and per git fetch, and an overall bar,
//! when stderr is a terminal; plain lines otherwise; nothing with --quiet.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::build::Reporter;
use crate::drv::DrvHash;
use crate::fetch::{FetchObserver, Transfer};
use crate::recipe::{Platform, RecipeName};

/// The one set of bars on stderr, shared by the build display and the log writer, so a log
/// line is written above the bars instead of through them.
pub fn stderr_bars() -> MultiProgress {
    static BARS: OnceLock<MultiProgress> = OnceLock::new();
    BARS.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
        .clone()
}

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
        let multi = fancy.then(stderr_bars);
        Self {
            multi,
            overall: OnceLock::new(),
            bars: Mutex::new(BTreeMap::new()),
            quiet,
        }
    }

    fn line(&self, text: &str) {
        if !self.quiet {
            line(self.multi.as_ref(), text);
        }
    }
}

/// Writes a line on stderr, above the bars when there are any.
fn line(bars: Option<&MultiProgress>, text: &str) {
    match bars {
        Some(bars) => bars.suspend(|| eprintln!("{text}")),
        None => eprintln!("{text}"),
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

/// Draws git fetches: a bar per upstream on a terminal; otherwise a line every few seconds
/// of a long fetch and one when it ends.
pub struct FetchProgress {
    multi: Option<MultiProgress>,
    quiet: bool,
    fetches: Mutex<BTreeMap<String, (ProgressBar, Instant)>>,
}

/// How often a plain-line display reports a fetch that is still going.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

impl FetchProgress {
    /// Bars when stderr is a terminal, plain lines otherwise, nothing when `quiet`.
    pub fn new(quiet: bool) -> std::sync::Arc<Self> {
        let fancy = !quiet && std::io::stderr().is_terminal();
        std::sync::Arc::new(Self {
            multi: fancy.then(stderr_bars),
            quiet,
            fetches: Mutex::new(BTreeMap::new()),
        })
    }
}

fn transfer_text(t: &Transfer) -> String {
    format!(
        "{}/{} objects, {}",
        t.received_objects,
        t.total_objects,
        HumanBytes(t.received_bytes as u64)
    )
}

impl FetchObserver for FetchProgress {
    fn progress(&self, url: &str, transfer: &Transfer) {
        if self.quiet {
            return;
        }
        let mut fetches = self.fetches.lock().expect("progress lock");
        let (bar, last) = fetches.entry(url.to_owned()).or_insert_with(|| {
            let bar = match &self.multi {
                Some(multi) => {
                    let bar = multi.insert(0, ProgressBar::no_length());
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{prefix} [{bar:30}] {pos}/{len} objects, {msg} {elapsed}",
                        )
                        .expect("valid template")
                        .progress_chars("=> "),
                    );
                    bar.set_prefix(format!("fetching {url}"));
                    bar
                }
                None => ProgressBar::hidden(),
            };
            (bar, Instant::now())
        });
        if transfer.total_objects > 0 {
            bar.set_length(transfer.total_objects as u64);
        }
        bar.set_position(transfer.received_objects as u64);
        bar.set_message(HumanBytes(transfer.received_bytes as u64).to_string());
        if self.multi.is_none() && last.elapsed() >= PLAIN_EVERY {
            *last = Instant::now();
            line(
                None,
                &format!("   fetching {url}: {}", transfer_text(transfer)),
            );
        }
    }

    fn done(&self, url: &str, transfer: &Transfer) {
        if self.quiet {
            return;
        }
        if let Some((bar, _)) = self.fetches.lock().expect("progress lock").remove(url) {
            bar.finish_and_clear();
            if let Some(multi) = &self.multi {
                multi.remove(&bar);
            }
        }
        line(
            self.multi.as_ref(),
            &format!(
                "   fetched {url}: {} in {:.1}s",
                transfer_text(transfer),
                transfer.elapsed.as_secs_f64()
            ),
        );
    }
}
