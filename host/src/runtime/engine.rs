//! The one `wasmtime::Engine`: epoch interruption, pooling allocator, and a
//! background thread that ticks the epoch every millisecond while any store
//! exists (and sleeps while none does).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// One epoch tick. Deadlines are counted in ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Largest memory cap a component may ask for (pool slot size).
pub const MAX_MEMORY_BYTES: usize = 512 << 20;

/// Per pool slot, how many bytes of the pages the last instance wrote are
/// reset in place (copied back from the module's image or zeroed) instead of
/// being handed back to the kernel. The default guard writes ~13 pages of
/// linear memory per `check-input`; more than this is decommitted as before.
pub const MEMORY_KEEP_RESIDENT: usize = 256 << 10;

/// The same for tables (a Rust guard's tables fit in one page).
pub const TABLE_KEEP_RESIDENT: usize = 16 << 10;

/// Builds the engine. With `max_instances` > 0 the pooling allocator holds
/// that many instances; if the OS refuses the reservation, falls back to
/// on-demand allocation and says so.
pub fn build(max_instances: u32) -> wasmtime::Result<Engine> {
    let mut config = base_config();
    if max_instances > 0 {
        let mut pool = PoolingAllocationConfig::new();
        // A Rust wasip2 component is ~4 core instances (module, WASI adapter,
        // shims), 1 memory and a few tables.
        pool.total_component_instances(max_instances)
            .total_core_instances(max_instances.saturating_mul(8))
            .total_memories(max_instances.saturating_mul(2))
            .total_tables(max_instances.saturating_mul(4))
            .total_stacks(max_instances)
            .max_memory_size(MAX_MEMORY_BYTES)
            .max_core_instances_per_component(32)
            .max_memories_per_component(4)
            .max_tables_per_component(16);
        // A fresh instance per call reuses a warm slot of the same component.
        // By default the slot's memory and tables are `madvise`d away when the
        // instance is dropped (a syscall with TLB shootdowns per memory and per
        // table) and faulted in again by the next instance. With PAGEMAP_SCAN
        // (Linux ≥ 6.7) wasmtime finds the pages the instance wrote and resets
        // just those with memcpy, so no state survives and nothing is faulted
        // back in. Without it, keeping memory resident would mean a memset of
        // the slot's first bytes on every drop, which costs more than it saves.
        let pagemap = PoolingAllocationConfig::is_pagemap_scan_available();
        if pagemap {
            pool.pagemap_scan(Enabled::Yes)
                .linear_memory_keep_resident(MEMORY_KEEP_RESIDENT)
                .table_keep_resident(TABLE_KEEP_RESIDENT);
        }
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        match Engine::new(&config) {
            Ok(engine) => {
                tracing::debug!(
                    max_instances,
                    reset_in_place = pagemap,
                    "pooling allocator ready"
                );
                return Ok(engine);
            }
            Err(e) => {
                tracing::warn!(error = %e, "pooling allocator unavailable; using on-demand allocation")
            }
        }
        config = base_config();
    }
    Engine::new(&config)
}

fn base_config() -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true).epoch_interruption(true);
    config
}

/// Stores alive in the process. Epochs only matter to running code, so the
/// ticker sleeps while there is none instead of waking 1,000 times a second.
static LIVE_STORES: AtomicUsize = AtomicUsize::new(0);
static WAKE_LOCK: Mutex<()> = Mutex::new(());
static WAKE: Condvar = Condvar::new();

/// Held by every store (in its data): while one exists, the ticker ticks.
#[derive(Debug)]
pub struct LiveStore(());

impl LiveStore {
    pub fn enter() -> Self {
        if LIVE_STORES.fetch_add(1, Ordering::SeqCst) == 0 {
            wake_tickers();
        }
        LiveStore(())
    }
}

impl Drop for LiveStore {
    fn drop(&mut self) {
        LIVE_STORES.fetch_sub(1, Ordering::SeqCst);
    }
}

fn wake_tickers() {
    // Taking the lock orders this wake-up after a ticker's last check.
    let _guard = WAKE_LOCK.lock().unwrap_or_else(PoisonError::into_inner);
    WAKE.notify_all();
}

/// Ticks `engine`'s epoch until the returned handle is dropped.
pub fn start_epoch_ticker(engine: &Engine) -> EpochTicker {
    let stop = Arc::new(AtomicBool::new(false));
    let engine = engine.clone();
    let flag = stop.clone();
    let spawned = std::thread::Builder::new()
        .name("wasm-epoch".into())
        .spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                if LIVE_STORES.load(Ordering::SeqCst) == 0 {
                    let guard = WAKE_LOCK.lock().unwrap_or_else(PoisonError::into_inner);
                    if LIVE_STORES.load(Ordering::SeqCst) == 0 && !flag.load(Ordering::Relaxed) {
                        let _ = WAKE.wait_timeout(guard, Duration::from_secs(1));
                    }
                    continue;
                }
                std::thread::sleep(EPOCH_TICK);
                engine.increment_epoch();
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the epoch thread: component deadlines will not fire");
    }
    EpochTicker { stop }
}

/// Stops the epoch thread when dropped.
pub struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        wake_tickers();
    }
}

/// Deadline in epoch ticks, at least one.
pub fn ticks(d: Duration) -> u64 {
    (d.as_micros() / EPOCH_TICK.as_micros()).max(1) as u64
}
