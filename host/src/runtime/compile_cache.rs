//! Compile each component once and keep the artifact on disk.
//!
//! Key: wasmtime version, the engine's compatibility hash (its compilation settings) and the
//! SHA-256 of the component. Only artifacts this host wrote are ever deserialized: the cache
//! directory belongs to the host, files are written atomically, and each file also starts
//! with the key it was written for, so a file renamed or swapped under another key is refused.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// How a component was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoadSource {
    /// Compiled with Cranelift now (and written to the cache).
    Compiled,
    /// Loaded from a precompiled artifact.
    Cache,
}

/// The on-disk compile cache.
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: Option<PathBuf>,
}

const MAGIC: &[u8; 8] = b"PBXCWASM";

impl CompileCache {
    /// A cache in `dir` (created if missing); `None` compiles every time.
    pub fn new(dir: Option<PathBuf>) -> std::io::Result<Self> {
        if let Some(d) = &dir {
            std::fs::create_dir_all(d)?;
        }
        Ok(CompileCache { dir })
    }

    /// The cache key of `wasm` for `engine`.
    pub fn key(engine: &Engine, wasm_digest: &[u8; 32]) -> String {
        let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
        engine
            .precompile_compatibility_hash()
            .hash(&mut engine_hash);
        let mut h = Sha256::new();
        h.update(b"wasmtime-48.0.8\0");
        h.update(engine_hash.finish().to_le_bytes());
        h.update(wasm_digest);
        hex::encode(h.finalize())
    }

    /// Load `wasm` as a component: from the cache when possible, else compile and store.
    pub fn load(
        &self,
        engine: &Engine,
        wasm: &[u8],
    ) -> anyhow::Result<(Component, LoadSource, [u8; 32])> {
        let digest: [u8; 32] = Sha256::digest(wasm).into();
        let Some(dir) = &self.dir else {
            let c = Component::new(engine, wasm).map_err(|e| anyhow::anyhow!("{e:#}"))?;
            return Ok((c, LoadSource::Compiled, digest));
        };
        let key = Self::key(engine, &digest);
        let path = dir.join(format!("{key}.cwasm"));
        if let Some(component) = self.try_read(engine, &path, &key) {
            return Ok((component, LoadSource::Cache, digest));
        }
        let artifact = engine
            .precompile_component(wasm)
            .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        if let Err(e) = write_atomically(&path, &key, &artifact) {
            tracing::warn!("cannot write the compile cache {}: {e}", path.display());
        }
        // SAFETY: `artifact` was produced by this engine just now.
        let component = unsafe { Component::deserialize(engine, &artifact) }
            .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        Ok((component, LoadSource::Compiled, digest))
    }

    fn try_read(&self, engine: &Engine, path: &Path, key: &str) -> Option<Component> {
        let bytes = std::fs::read(path).ok()?;
        let header_len = MAGIC.len() + key.len();
        if bytes.len() < header_len
            || &bytes[..MAGIC.len()] != MAGIC
            || &bytes[MAGIC.len()..header_len] != key.as_bytes()
        {
            tracing::warn!(
                "ignoring a foreign or damaged cache file {}",
                path.display()
            );
            return None;
        }
        // SAFETY: the file is in the host's own cache directory, carries the header this
        // host writes with the key of this engine and component, and wasmtime still checks
        // the artifact's engine compatibility and refuses a mismatch with an error.
        match unsafe { Component::deserialize(engine, &bytes[header_len..]) } {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(
                    "recompiling: cache file {} is unusable: {e}",
                    path.display()
                );
                None
            }
        }
    }
}

fn write_atomically(path: &Path, key: &str, artifact: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(MAGIC)?;
        f.write_all(key.as_bytes())?;
        f.write_all(artifact)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}
