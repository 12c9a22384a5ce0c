//! Reloading a running server: re-reading the config file and the domain lists on SIGHUP, on a
//! feed change or when watched files change on disk, and doing the rebuild at the lowest CPU
//! priority so that query workers always win the core.
//!
//! Owns: the reload policy (a broken file keeps the configuration in force; keys that need a
//! restart are named in a warning, see `Config::restart_only_changes`), the fingerprint of the
//! watched files, and the reload thread. Does not own: what a reload swaps (`Running::reload`),
//! or when one is asked for (`nxguard serve`).

use std::{
    error::Error,
    fmt,
    path::{Path, PathBuf},
    time::SystemTime,
};

use tracing::{error, info, warn};

use super::Running;
use crate::{
    config::{Config, ConfigError},
    ops::systemd,
};

/// Names, sizes and modification times of the config file and the list files.
type Fingerprint = Vec<(PathBuf, u64, Option<SystemTime>)>;

/// The reload state of `nxguard serve`: the config file, the config it started with (keys that
/// need a restart are compared with it), the config in force, and the files last seen on disk.
pub struct Reloader {
    path: Option<PathBuf>,
    started_with: Config,
    current: Config,
    seen: Fingerprint,
}

impl Reloader {
    /// The state of a server just started from `config`, read from `path` (none: the embedded
    /// default).
    pub fn new(path: Option<&Path>, config: Config) -> Reloader {
        let path = path.map(Path::to_path_buf);
        let seen = fingerprint(path.as_deref(), &config);
        Reloader { path, started_with: config.clone(), current: config, seen }
    }

    /// A reload as systemd sees it: RELOADING=1, then READY=1 once the new configuration (or
    /// the previous one, when the new one is broken) is in force.
    pub fn reload(&mut self, running: &Running) {
        systemd::notify_or_warn("RELOADING=1");
        self.reload_quietly(running);
        systemd::notify_or_warn("READY=1");
    }

    /// Reloads when the config file or a list file changed on disk since last seen.
    pub fn reload_if_changed(&mut self, running: &Running) {
        if fingerprint(self.path.as_deref(), &self.current) != self.seen {
            info!("config or domain lists changed on disk");
            self.reload(running);
            self.seen = fingerprint(self.path.as_deref(), &self.current);
        }
    }

    /// Re-reads the config and the domain lists; a broken file keeps the running policy.
    /// `current` becomes the new config when the reload succeeds.
    fn reload_quietly(&mut self, running: &Running) {
        let config = match read(self.path.as_deref()) {
            Ok(config) => config,
            Err(failure) => {
                running.resolver.stats.reloaded(false);
                error!(error = %Chain(&failure), "reload failed; the previous configuration stays in force");
                return;
            }
        };
        for key in config.restart_only_changes(&self.started_with) {
            warn!(key, "changed in the config file; takes effect only after a restart");
        }
        match in_background(|| running.reload(&config)) {
            Ok(()) => {
                let live = running.resolver.live();
                info!(domains = live.policy.len(), policy_version = %live.policy.version(), "reloaded");
                self.current = config;
            }
            Err(failure) => {
                error!(error = %Chain(&failure), "reload failed; the previous configuration stays in force");
            }
        }
    }
}

fn read(path: Option<&Path>) -> Result<Config, ConfigError> {
    path.map_or_else(|| Ok(Config::embedded()), Config::read)
}

/// An error and its causes, `: `-separated, each said once: a cause the text so far already
/// words (most errors word their cause and also carry it as their source) is not repeated.
struct Chain<'a>(&'a dyn Error);

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = self.0.to_string();
        let mut source = self.0.source();
        while let Some(cause) = source {
            let cause_text = cause.to_string();
            let cause_text = cause_text.trim_end();
            if !text.contains(cause_text) {
                text.push_str(": ");
                text.push_str(cause_text);
            }
            source = cause.source();
        }
        f.write_str(&text)
    }
}

/// Names, sizes and modification times of the config file and the list files: a change in any
/// of them triggers a reload when watching is on.
fn fingerprint(path: Option<&Path>, config: &Config) -> Fingerprint {
    let mut files: Vec<PathBuf> = path.into_iter().map(Path::to_path_buf).collect();
    if let Some(Ok(entries)) = config.policy.domains_dir.as_ref().map(std::fs::read_dir) {
        files.extend(entries.filter_map(|e| e.ok().map(|e| e.path())));
    }
    files.sort();
    files
        .into_iter()
        .map(|f| {
            let meta = std::fs::metadata(&f).ok();
            let (len, modified) = meta.map_or((0, None), |m| (m.len(), m.modified().ok()));
            (f, len, modified)
        })
        .collect()
}

/// Runs `work` (a reload) on a thread of its own at the lowest CPU priority, inside the
/// async runtime. Rebuilding a 1M-domain list takes a few hundred milliseconds of CPU; where a
/// query worker shares the core (a small VM, or `workers` = all cores), the worker must win.
/// Without a thread to spare (out of resources), the work runs on the calling thread.
fn in_background<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    let runtime = tokio::runtime::Handle::current();
    let work = std::sync::Mutex::new(Some(work));
    let take = || work.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new().name("nxguard-reload".into()).spawn_scoped(scope, || {
            let _runtime = runtime.enter();
            lower_priority();
            take().map(|work| work())
        });
        let done = match thread {
            Ok(thread) => thread.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Err(error) => {
                warn!(%error, "cannot start a reload thread; reloading on the main thread");
                None
            }
        };
        done.or_else(|| take().map(|work| work())).expect("the reload ran on one of the two threads")
    })
}

/// Moves the calling thread to the SCHED_IDLE policy (Linux schedules each thread on its own):
/// it runs only when no query worker wants the core, and a query arriving preempts it at once.
/// Under sustained full load a reload therefore waits for the first idle moments.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: a plain system call on this thread's ID and a valid sched_param; a failure
        // (reported by its return value) leaves the thread's policy as it was.
        let result = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
        if result != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "cannot lower the reload thread's priority");
        }
    }
}
