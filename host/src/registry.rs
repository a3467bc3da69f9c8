//! The set of loaded components, swapped atomically on every change of the
//! components folder. A request takes one snapshot (`current()`) and keeps it,
//! so in-flight requests finish on the versions they started with.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use tokio::sync::{Mutex, broadcast};

use crate::config::{ComponentDefaults, ComponentSettings};
use crate::metrics::Metrics;
use crate::runtime::Runtime;
use crate::runtime::compile::sha256_hex;
use crate::runtime::guard::{Guard, unix_secs};

/// One immutable snapshot of the loaded components.
#[derive(Default)]
pub struct ComponentSet {
    /// Enabled guards in run order.
    pub guards: Vec<Arc<Guard>>,
    /// Loaded guards by name (enabled or not).
    pub all_guards: BTreeMap<String, Arc<Guard>>,
    /// Agent files found (name → sha256). Running agents is not built yet.
    pub agents: BTreeMap<String, String>,
}

/// What happened to a file on the last scan.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FileStatus {
    pub sha256: String,
    /// `None` when the file is loaded; the reason otherwise.
    pub error: Option<String>,
    /// Unix seconds.
    pub at: u64,
}

/// A change of the loaded set, for `/admin/events`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReloadEvent {
    pub kind: &'static str,
    pub name: String,
    /// `loaded`, `replaced`, `removed` or `rejected`.
    pub result: &'static str,
    pub sha256: String,
    pub error: Option<String>,
    pub at: u64,
}

/// Why an upload or removal through the admin API failed.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("{0}")]
    Invalid(String),
    #[error("no such component")]
    NotFound,
    #[error("cannot write the component: {0}")]
    Io(#[from] std::io::Error),
}

pub struct Registry {
    current: ArcSwap<ComponentSet>,
    runtime: Arc<Runtime>,
    metrics: Arc<Metrics>,
    dir: PathBuf,
    defaults: ComponentDefaults,
    /// Serialises scans; holds the last status of every guard file.
    scan: Mutex<BTreeMap<String, FileStatus>>,
    /// Set once the first scan finished.
    ready: std::sync::atomic::AtomicBool,
    events: broadcast::Sender<ReloadEvent>,
}

impl Registry {
    pub fn new(
        runtime: Arc<Runtime>,
        metrics: Arc<Metrics>,
        dir: PathBuf,
        defaults: ComponentDefaults,
    ) -> Self {
        Self {
            current: ArcSwap::from_pointee(ComponentSet::default()),
            runtime,
            metrics,
            dir,
            defaults,
            scan: Mutex::new(BTreeMap::new()),
            ready: false.into(),
            events: broadcast::channel(256).0,
        }
    }

    /// The components to use for one request.
    pub fn current(&self) -> Arc<ComponentSet> {
        self.current.load_full()
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn guards_dir(&self) -> PathBuf {
        self.dir.join("guards")
    }

    pub fn agents_dir(&self) -> PathBuf {
        self.dir.join("agents")
    }

    /// Reload events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<ReloadEvent> {
        self.events.subscribe()
    }

    /// Last scan status of every guard file.
    pub async fn statuses(&self) -> BTreeMap<String, FileStatus> {
        self.scan.lock().await.clone()
    }

    /// Brings the loaded set in line with the folder: new and changed files
    /// are compiled and validated before they replace anything; a file that
    /// fails keeps its previous version serving; a deleted file is unloaded.
    pub async fn sync(&self) {
        let mut statuses = self.scan.lock().await;
        let old = self.current();
        let mut all_guards = BTreeMap::new();
        let files = wasm_files(&self.guards_dir());
        for (name, path) in &files {
            let loaded = old.all_guards.get(name);
            match self.load_guard_file(name, path, loaded, &statuses).await {
                Ok(Some(guard)) => {
                    let result = if loaded.is_some() {
                        "replaced"
                    } else {
                        "loaded"
                    };
                    tracing::info!(
                        component = name,
                        version = %guard.info.version,
                        sha256 = %guard.sha256,
                        "guard {result}"
                    );
                    self.report(name, result, &guard.sha256, None);
                    statuses.insert(name.clone(), status(&guard.sha256, None));
                    all_guards.insert(name.clone(), Arc::new(guard));
                }
                Ok(None) => {
                    if let Some(g) = loaded {
                        all_guards.insert(name.clone(), g.clone());
                    }
                }
                Err((sha, why)) => {
                    tracing::error!(
                        component = name,
                        path = %path.display(),
                        error = %why,
                        "rejected guard file; {}",
                        if loaded.is_some() { "the previous version keeps serving" } else { "it is not loaded" }
                    );
                    if statuses
                        .get(name)
                        .is_none_or(|st| st.sha256 != sha || st.error.as_ref() != Some(&why))
                    {
                        self.report(name, "rejected", &sha, Some(why.clone()));
                    }
                    statuses.insert(name.clone(), status(&sha, Some(why)));
                    if let Some(g) = loaded {
                        all_guards.insert(name.clone(), g.clone());
                    }
                }
            }
        }
        for (name, g) in &old.all_guards {
            if !files.contains_key(name) {
                tracing::info!(component = name, "guard removed");
                self.report(name, "removed", &g.sha256, None);
                statuses.remove(name);
            }
        }
        statuses.retain(|name, _| files.contains_key(name));

        let mut guards: Vec<Arc<Guard>> = all_guards
            .values()
            .filter(|g| g.settings.enabled)
            .cloned()
            .collect();
        guards.sort_by(|a, b| (a.settings.order, &a.name).cmp(&(b.settings.order, &b.name)));
        let agents = wasm_files(&self.agents_dir())
            .into_iter()
            .filter_map(|(name, path)| {
                let bytes = std::fs::read(&path).ok()?;
                Some((name, sha256_hex(&bytes)))
            })
            .collect();

        self.metrics.component_info.reset();
        for g in all_guards.values() {
            self.metrics
                .component_info
                .with_label_values(&[&*g.name, "guard", &g.info.version, &g.sha256])
                .set(1);
        }
        self.current.store(Arc::new(ComponentSet {
            guards,
            all_guards,
            agents,
        }));
        self.ready.store(true, std::sync::atomic::Ordering::Release);
    }

    /// `Ok(None)`: unchanged. `Err((sha, why))`: rejected.
    async fn load_guard_file(
        &self,
        name: &str,
        path: &Path,
        loaded: Option<&Arc<Guard>>,
        statuses: &BTreeMap<String, FileStatus>,
    ) -> Result<Option<Guard>, (String, String)> {
        let bytes =
            std::fs::read(path).map_err(|e| (String::new(), format!("cannot read: {e}")))?;
        let sha = sha256_hex(&bytes);
        let settings = ComponentSettings::load(&path.with_extension("toml"), &self.defaults)
            .map_err(|e| (sha.clone(), e.to_string()))?;
        if let Some(g) = loaded
            && g.sha256 == sha
            && g.settings == settings
        {
            return Ok(None);
        }
        // The same bytes failed before: do not recompile on every scan.
        if let Some(st) = statuses.get(name)
            && st.sha256 == sha
            && let Some(err) = &st.error
            && loaded.is_none_or(|g| g.settings == settings)
        {
            return Err((sha, err.clone()));
        }
        self.runtime
            .load_guard(name, Arc::new(bytes), sha.clone(), settings)
            .await
            .map(Some)
            .map_err(|why| (sha, why))
    }

    fn report(&self, name: &str, result: &'static str, sha256: &str, error: Option<String>) {
        self.metrics
            .component_reloads
            .with_label_values(&[name, result])
            .inc();
        let _ = self.events.send(ReloadEvent {
            kind: "guard",
            name: name.to_owned(),
            result,
            sha256: sha256.to_owned(),
            error,
            at: unix_secs(SystemTime::now()),
        });
    }

    /// Validates `bytes` as guard `name` (compile, link, `info`) and only then
    /// writes it into the folder atomically and loads it. Returns the loaded
    /// guard and whether it is new.
    pub async fn install_guard(
        &self,
        name: &str,
        bytes: Vec<u8>,
    ) -> Result<(Arc<Guard>, bool), DeployError> {
        if !valid_name(name) {
            return Err(DeployError::Invalid(format!(
                "invalid component name `{name}`: use 1-64 of A-Z a-z 0-9 _ -"
            )));
        }
        let sha = sha256_hex(&bytes);
        let path = self.guards_dir().join(format!("{name}.wasm"));
        let settings = ComponentSettings::load(&path.with_extension("toml"), &self.defaults)
            .map_err(|e| DeployError::Invalid(e.to_string()))?;
        let bytes = Arc::new(bytes);
        if let Err(why) = self
            .runtime
            .load_guard(name, bytes.clone(), sha.clone(), settings)
            .await
        {
            self.report(name, "rejected", &sha, Some(why.clone()));
            return Err(DeployError::Invalid(why));
        }
        let existed = path.exists();
        write_atomically(&path, &bytes)?;
        self.sync().await;
        match self.current().all_guards.get(name) {
            Some(g) if g.sha256 == sha => Ok((g.clone(), !existed)),
            _ => Err(DeployError::Invalid(
                "the component validated but did not load; see /readyz".into(),
            )),
        }
    }

    /// Deletes guard `name`'s file and unloads it.
    pub async fn remove_guard(&self, name: &str) -> Result<(), DeployError> {
        if !valid_name(name) {
            return Err(DeployError::NotFound);
        }
        let path = self.guards_dir().join(format!("{name}.wasm"));
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(DeployError::NotFound);
            }
            Err(e) => return Err(e.into()),
        }
        self.sync().await;
        Ok(())
    }
}

fn status(sha: &str, error: Option<String>) -> FileStatus {
    FileStatus {
        sha256: sha.to_owned(),
        error,
        at: unix_secs(SystemTime::now()),
    }
}

/// Writes `bytes` to `path` so that readers see the old file or the whole
/// new one: a hidden temporary file in the same folder, fsync, rename, fsync
/// of the folder. The watcher ignores the hidden name.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("component");
    let tmp = dir.join(format!(
        ".{file_name}.upload-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// `*.wasm` files of `dir` by stem. Names must be plain (`[A-Za-z0-9_-]`);
/// hidden and temporary files are ignored, so `cp x.wasm .x.tmp && mv` deploys atomically.
pub fn wasm_files(dir: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("wasm") || !path.is_file() {
            continue;
        }
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if valid_name(stem) {
            out.insert(stem.to_owned(), path);
        }
    }
    out
}

/// A component name: 1–64 of `[A-Za-z0-9_-]`, not starting with `-`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}
