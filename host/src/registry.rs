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
use crate::runtime::agent::Agent;
use crate::runtime::compile::sha256_hex;
use crate::runtime::guard::{Guard, unix_secs};

/// One immutable snapshot of the loaded components.
#[derive(Default)]
pub struct ComponentSet {
    /// Enabled guards in run order.
    pub guards: Vec<Arc<Guard>>,
    /// Loaded guards by name (enabled or not).
    pub all_guards: BTreeMap<String, Arc<Guard>>,
    /// Loaded agents by name (enabled or not).
    pub agents: BTreeMap<String, Arc<Agent>>,
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

/// Scan status of every file, per kind (`guard`, `agent`) and name.
pub type Statuses = BTreeMap<(&'static str, String), FileStatus>;

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

/// What the registry needs to know of a kind of component.
pub trait Kind: Sized + Send + Sync + 'static {
    /// `guard` or `agent`.
    const KIND: &'static str;
    /// The sub-folder: `guards` or `agents`.
    const DIR: &'static str;
    fn sha256(&self) -> &str;
    fn settings(&self) -> &ComponentSettings;
    fn version(&self) -> &str;
    fn load(
        runtime: &Runtime,
        name: &str,
        bytes: Arc<Vec<u8>>,
        sha256: String,
        settings: ComponentSettings,
    ) -> impl Future<Output = Result<Self, String>> + Send;
}

/// `Kind` for a component type: its names and how the runtime loads it.
macro_rules! kind {
    ($ty:ty, $kind:literal, $dir:literal, $load:ident) => {
        impl Kind for $ty {
            const KIND: &'static str = $kind;
            const DIR: &'static str = $dir;
            fn sha256(&self) -> &str {
                &self.sha256
            }
            fn settings(&self) -> &ComponentSettings {
                &self.settings
            }
            fn version(&self) -> &str {
                &self.info.version
            }
            async fn load(
                runtime: &Runtime,
                name: &str,
                bytes: Arc<Vec<u8>>,
                sha256: String,
                settings: ComponentSettings,
            ) -> Result<Self, String> {
                runtime.$load(name, bytes, sha256, settings).await
            }
        }
    };
}

kind!(Guard, "guard", "guards", load_guard);
kind!(Agent, "agent", "agents", load_agent);

pub struct Registry {
    current: ArcSwap<ComponentSet>,
    runtime: Arc<Runtime>,
    metrics: Arc<Metrics>,
    dir: PathBuf,
    defaults: ComponentDefaults,
    trusted: crate::signing::TrustedKeys,
    /// Serialises scans; holds the last status of every file.
    scan: Mutex<Statuses>,
    /// Set once the first scan finished.
    ready: std::sync::atomic::AtomicBool,
    events: broadcast::Sender<ReloadEvent>,
    /// Size and mtime of every file at the last scan. inotify also reports
    /// the scan's own reads (IN_OPEN), so an unchanged folder must not be
    /// read again, or each scan would trigger the next.
    fingerprint: std::sync::Mutex<Vec<(PathBuf, u64, Option<SystemTime>)>>,
}

impl Registry {
    pub fn new(
        runtime: Arc<Runtime>,
        metrics: Arc<Metrics>,
        dir: PathBuf,
        defaults: ComponentDefaults,
        trusted: crate::signing::TrustedKeys,
    ) -> Self {
        Self {
            current: ArcSwap::from_pointee(ComponentSet::default()),
            runtime,
            metrics,
            dir,
            defaults,
            trusted,
            scan: Mutex::new(BTreeMap::new()),
            ready: false.into(),
            events: broadcast::channel(256).0,
            fingerprint: std::sync::Mutex::new(Vec::new()),
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
        self.dir.join(Guard::DIR)
    }

    pub fn agents_dir(&self) -> PathBuf {
        self.dir.join(Agent::DIR)
    }

    /// Reload events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<ReloadEvent> {
        self.events.subscribe()
    }

    /// Last scan status of every file.
    pub async fn statuses(&self) -> Statuses {
        self.scan.lock().await.clone()
    }

    /// Brings the loaded set in line with the folder: new and changed files
    /// are compiled and validated before they replace anything; a file that
    /// fails keeps its previous version serving; a deleted file is unloaded.
    pub async fn sync(&self) {
        let mut statuses = self.scan.lock().await;
        let now = self.fingerprint_now();
        if self.is_ready()
            && let Ok(mut last) = self.fingerprint.lock()
        {
            if *last == now {
                return;
            }
            *last = now;
        }
        let old = self.current();
        let all_guards = self.scan_kind(&old.all_guards, &mut statuses).await;
        let agents = self.scan_kind(&old.agents, &mut statuses).await;

        let mut guards: Vec<Arc<Guard>> = all_guards
            .values()
            .filter(|g| g.settings.enabled)
            .cloned()
            .collect();
        guards.sort_by(|a, b| (a.settings.order, &a.name).cmp(&(b.settings.order, &b.name)));

        self.metrics.component_info.reset();
        for g in all_guards.values() {
            self.info_metric(g.as_ref(), &g.name);
        }
        for a in agents.values() {
            self.info_metric(a.as_ref(), &a.name);
        }
        self.current.store(Arc::new(ComponentSet {
            guards,
            all_guards,
            agents,
        }));
        self.ready.store(true, std::sync::atomic::Ordering::Release);
    }

    /// `stat` of every file in the component folders (no file is opened).
    fn fingerprint_now(&self) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
        let mut out = Vec::new();
        for dir in [self.guards_dir(), self.agents_dir()] {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                if let Ok(m) = e.metadata() {
                    out.push((e.path(), m.len(), m.modified().ok()));
                }
            }
        }
        out.sort();
        out
    }

    fn info_metric<K: Kind>(&self, c: &K, name: &str) {
        self.metrics
            .component_info
            .with_label_values(&[name, K::KIND, c.version(), c.sha256()])
            .set(1);
    }

    /// Scans one kind's folder against what is loaded.
    async fn scan_kind<K: Kind>(
        &self,
        loaded: &BTreeMap<String, Arc<K>>,
        statuses: &mut Statuses,
    ) -> BTreeMap<String, Arc<K>> {
        let mut out = BTreeMap::new();
        let files = wasm_files(&self.dir.join(K::DIR));
        for (name, path) in &files {
            let key = (K::KIND, name.clone());
            let previous = loaded.get(name);
            match self
                .load_file::<K>(name, path, previous, statuses.get(&key))
                .await
            {
                Ok(Some(c)) => {
                    let result = if previous.is_some() {
                        "replaced"
                    } else {
                        "loaded"
                    };
                    tracing::info!(
                        component = name,
                        kind = K::KIND,
                        version = %c.version(),
                        sha256 = %c.sha256(),
                        "{} {result}",
                        K::KIND
                    );
                    self.report(K::KIND, name, result, c.sha256(), None);
                    statuses.insert(key, status(c.sha256(), None));
                    out.insert(name.clone(), Arc::new(c));
                }
                Ok(None) => {
                    if let Some(c) = previous {
                        out.insert(name.clone(), c.clone());
                    }
                }
                Err((sha, why)) => {
                    tracing::error!(
                        component = name,
                        kind = K::KIND,
                        path = %path.display(),
                        error = %why,
                        "rejected component file; {}",
                        if previous.is_some() { "the previous version keeps serving" } else { "it is not loaded" }
                    );
                    let changed = statuses
                        .get(&key)
                        .is_none_or(|st| st.sha256 != sha || st.error.as_ref() != Some(&why));
                    if changed {
                        self.report(K::KIND, name, "rejected", &sha, Some(why.clone()));
                    }
                    statuses.insert(key, status(&sha, Some(why)));
                    if let Some(c) = previous {
                        out.insert(name.clone(), c.clone());
                    }
                }
            }
        }
        for (name, c) in loaded {
            if !files.contains_key(name) {
                tracing::info!(component = name, kind = K::KIND, "{} removed", K::KIND);
                self.report(K::KIND, name, "removed", c.sha256(), None);
            }
        }
        statuses.retain(|(kind, name), _| *kind != K::KIND || files.contains_key(name));
        out
    }

    /// `Ok(None)`: unchanged. `Err((sha, why))`: rejected.
    async fn load_file<K: Kind>(
        &self,
        name: &str,
        path: &Path,
        loaded: Option<&Arc<K>>,
        last: Option<&FileStatus>,
    ) -> Result<Option<K>, (String, String)> {
        let bytes =
            std::fs::read(path).map_err(|e| (String::new(), format!("cannot read: {e}")))?;
        let sha = sha256_hex(&bytes);
        self.trusted
            .verify_file(path, &bytes)
            .map_err(|e| (sha.clone(), e))?;
        let settings = ComponentSettings::load(&path.with_extension("toml"), &self.defaults)
            .map_err(|e| (sha.clone(), e.to_string()))?;
        if let Some(c) = loaded
            && c.sha256() == sha
            && *c.settings() == settings
        {
            return Ok(None);
        }
        // The same bytes failed before: do not recompile on every scan.
        // (With signatures on, the signature file may have changed instead.)
        if self.trusted.is_empty()
            && let Some(st) = last
            && st.sha256 == sha
            && let Some(err) = &st.error
            && loaded.is_none_or(|c| *c.settings() == settings)
        {
            return Err((sha, err.clone()));
        }
        K::load(&self.runtime, name, Arc::new(bytes), sha.clone(), settings)
            .await
            .map(Some)
            .map_err(|why| (sha, why))
    }

    fn report(
        &self,
        kind: &'static str,
        name: &str,
        result: &'static str,
        sha256: &str,
        error: Option<String>,
    ) {
        self.metrics
            .component_reloads
            .with_label_values(&[name, result])
            .inc();
        let _ = self.events.send(ReloadEvent {
            kind,
            name: name.to_owned(),
            result,
            sha256: sha256.to_owned(),
            error,
            at: unix_secs(SystemTime::now()),
        });
    }

    /// Validates `bytes` as component `name` of kind `K` (compile, link,
    /// `info`) and only then writes it into the folder atomically and loads
    /// it. Returns the loaded component and whether it is new.
    pub async fn install<K: Kind>(
        &self,
        name: &str,
        bytes: Vec<u8>,
        signature: Option<&str>,
        pick: impl Fn(&ComponentSet) -> Option<Arc<K>>,
    ) -> Result<(Arc<K>, bool), DeployError> {
        if !valid_name(name) {
            return Err(DeployError::Invalid(format!(
                "invalid component name `{name}`: use 1-64 of A-Z a-z 0-9 _ -"
            )));
        }
        let sha = sha256_hex(&bytes);
        let path = self.dir.join(K::DIR).join(format!("{name}.wasm"));
        let settings = ComponentSettings::load(&path.with_extension("toml"), &self.defaults)
            .map_err(|e| DeployError::Invalid(e.to_string()))?;
        if let Err(why) = self.trusted.verify(&bytes, signature) {
            self.report(K::KIND, name, "rejected", &sha, Some(why.clone()));
            return Err(DeployError::Invalid(why));
        }
        let bytes = Arc::new(bytes);
        if let Err(why) = K::load(&self.runtime, name, bytes.clone(), sha.clone(), settings).await {
            self.report(K::KIND, name, "rejected", &sha, Some(why.clone()));
            return Err(DeployError::Invalid(why));
        }
        let existed = path.exists();
        if let Some(sig) = signature {
            write_atomically(&path.with_extension("sig"), sig.trim().as_bytes())?;
        }
        write_atomically(&path, &bytes)?;
        self.sync().await;
        match pick(&self.current()) {
            Some(c) if c.sha256() == sha => Ok((c, !existed)),
            _ => Err(DeployError::Invalid(
                "the component validated but did not load; see /readyz".into(),
            )),
        }
    }

    /// Deletes component `name` of kind `dir` (`guards`/`agents`) and unloads it.
    pub async fn remove(&self, dir: &str, name: &str) -> Result<(), DeployError> {
        if !valid_name(name) {
            return Err(DeployError::NotFound);
        }
        let path = self.dir.join(dir).join(format!("{name}.wasm"));
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
