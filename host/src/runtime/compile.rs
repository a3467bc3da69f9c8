//! Compiling components, with an on-disk cache keyed by the wasm's sha256 and
//! the engine's compatibility hash, so a restart does not recompile.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The `\0asm` magic and the component-model layer/version.
const COMPONENT_HEADER: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];

/// Why a file could not become a component.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("not a WebAssembly component (a core module, a truncated file, or not wasm at all)")]
    NotAComponent,
    #[error("compilation failed: {0}")]
    Compile(String),
}

/// Hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Compiles `bytes`, reusing `cache_dir/<sha256>-<engine>.cwasm` when present.
pub fn compile(
    engine: &Engine,
    bytes: &[u8],
    sha256: &str,
    cache_dir: Option<&Path>,
) -> Result<Component, CompileError> {
    if bytes.len() < COMPONENT_HEADER.len() || bytes[..8] != COMPONENT_HEADER {
        return Err(CompileError::NotAComponent);
    }
    let cached = cache_dir.map(|dir| cache_path(engine, dir, sha256));
    if let Some(path) = &cached
        && path.exists()
    {
        // SAFETY: the file was written by `Component::serialize` of an engine
        // with the same compatibility hash (it is in the file name) into a
        // cache folder only this process writes.
        match unsafe { Component::deserialize_file(engine, path) } {
            Ok(component) => return Ok(component),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring a bad cache entry")
            }
        }
    }
    let component =
        Component::new(engine, bytes).map_err(|e| CompileError::Compile(format!("{e:#}")))?;
    if let Some(path) = &cached
        && let Err(e) = write_cache(&component, path)
    {
        tracing::warn!(path = %path.display(), error = %e, "cannot write the compile cache");
    }
    Ok(component)
}

fn cache_path(engine: &Engine, dir: &Path, sha256: &str) -> PathBuf {
    let mut h = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    dir.join(format!("{sha256}-{:016x}.cwasm", h.finish()))
}

/// Writes atomically: a temporary file, fsync, rename.
fn write_cache(component: &Component, path: &Path) -> std::io::Result<()> {
    let bytes = component
        .serialize()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}
