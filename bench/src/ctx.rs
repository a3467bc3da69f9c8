//! What every scenario needs: the binaries, a work folder, and helpers to
//! start vllm-sim, wasmgate with a given components folder, and peers.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use serde_json::json;

use crate::http::{Conn, Target};
use crate::procs::{Proc, free_port, wait_until};

/// The model name vllm-sim serves in every scenario.
pub const MODEL: &str = "bench-model";

pub struct Ctx {
    /// Tiny sizes, for `make test`.
    pub smoke: bool,
    pub wasmgate: PathBuf,
    pub sim: PathBuf,
    /// Built components (`guard.wasm`, `banned_words.wasm`, `agent.wasm`).
    pub components: PathBuf,
    /// Scratch folders of this run (components folders, scripts, data).
    pub work: PathBuf,
    /// Compiled-component cache shared by every gateway of the run.
    pub cache: PathBuf,
    /// stderr of every child process.
    pub logs: PathBuf,
    /// LiteLLM's `litellm` executable, when peers are measured.
    pub litellm: Option<PathBuf>,
    /// The project's docs, the agent's knowledge base.
    pub docs: PathBuf,
}

/// A guard to install: built file stem, installed name, optional `NAME.toml`.
pub struct GuardSpec {
    pub file: &'static str,
    pub name: &'static str,
    pub toml: Option<&'static str>,
}

impl GuardSpec {
    pub const fn new(file: &'static str, name: &'static str) -> Self {
        Self {
            file,
            name,
            toml: None,
        }
    }
}

impl Ctx {
    pub fn component(&self, stem: &str) -> anyhow::Result<PathBuf> {
        let p = self.components.join(format!("{stem}.wasm"));
        anyhow::ensure!(
            p.exists(),
            "{} is missing: run `make components`",
            p.display()
        );
        Ok(p)
    }

    /// Starts vllm-sim serving [`MODEL`] with `flags`.
    pub fn sim(&self, name: &str, flags: &[&str]) -> anyhow::Result<Proc> {
        let mut args: Vec<String> = ["--port", "0", "--model", MODEL]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(flags.iter().map(|s| s.to_string()));
        Proc::spawn_listening(
            &format!("vllm-sim ({name})"),
            &self.sim,
            &args,
            &[("RUST_LOG", "warn")],
            &self.logs.join(format!("{name}-vllm-sim.log")),
        )
    }

    /// A fresh components folder `work/NAME` with these guards (and the
    /// default agent as `expert` when `agent` is true).
    pub fn components_dir(
        &self,
        name: &str,
        guards: &[GuardSpec],
        agent: bool,
    ) -> anyhow::Result<PathBuf> {
        let dir = self.work.join(name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(dir.join("guards"))?;
        std::fs::create_dir_all(dir.join("agents"))?;
        for g in guards {
            std::fs::copy(
                self.component(g.file)?,
                dir.join("guards").join(format!("{}.wasm", g.name)),
            )?;
            if let Some(t) = g.toml {
                std::fs::write(dir.join("guards").join(format!("{}.toml", g.name)), t)?;
            }
        }
        if agent {
            let kb = self.work.join("kb");
            copy_markdown(&self.docs, &kb)?;
            std::fs::write(
                dir.join("agents/expert.toml"),
                format!(
                    "tools = [\"kb-search\", \"calculator\", \"now\"]\nkb_dir = \"{}\"\nmodels = [\"{MODEL}\"]\n",
                    kb.display()
                ),
            )?;
            std::fs::copy(self.component("agent")?, dir.join("agents/expert.wasm"))?;
        }
        Ok(dir)
    }

    /// Starts wasmgate in front of `sim` with the components in `comps`.
    pub fn gateway(
        &self,
        name: &str,
        sim: &Proc,
        comps: &Path,
        extra: &[&str],
    ) -> anyhow::Result<Proc> {
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--upstream".into(),
            format!("{}/v1", sim.url()),
            "--components".into(),
            comps.display().to_string(),
            "--cache-dir".into(),
            self.cache.display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        Proc::spawn_listening(
            &format!("wasmgate ({name})"),
            &self.wasmgate,
            &args,
            &[],
            &self.logs.join(format!("{name}-wasmgate.log")),
        )
    }

    /// With `--litellm`, starts the peer in front of `sim` and adds its target;
    /// the returned process lives as long as the scenario needs it.
    pub async fn peer(
        &self,
        name: &str,
        sim: &Proc,
        targets: &mut Vec<Target>,
    ) -> anyhow::Result<Option<Proc>> {
        if self.litellm.is_none() {
            return Ok(None);
        }
        let (proc, target) = self.litellm(name, sim).await?;
        targets.push(target);
        Ok(Some(proc))
    }

    /// Starts LiteLLM's proxy (one worker) in front of `sim`, waits until it
    /// answers a chat request, and returns it with its target.
    pub async fn litellm(&self, name: &str, sim: &Proc) -> anyhow::Result<(Proc, Target)> {
        let bin = self
            .litellm
            .clone()
            .context("no LiteLLM executable given (--litellm)")?;
        let key = format!("sk-bench-{}", random_hex(16));
        let config = self.work.join(format!("{name}-litellm.yaml"));
        std::fs::write(
            &config,
            format!(
                "model_list:\n  - model_name: {MODEL}\n    litellm_params:\n      model: openai/{MODEL}\n      api_base: {}/v1\n      api_key: dummy\ngeneral_settings:\n  master_key: {key}\n",
                sim.url()
            ),
        )?;
        let port = free_port()?;
        let args: Vec<String> = vec![
            "--config".into(),
            config.display().to_string(),
            "--host".into(),
            "127.0.0.1".into(),
            "--port".into(),
            port.to_string(),
            "--num_workers".into(),
            "1".into(),
        ];
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let proc = Proc::spawn_at(
            &format!("litellm ({name})"),
            &bin,
            &args,
            &[
                ("LITELLM_LOCAL_MODEL_COST_MAP", "True"),
                ("LITELLM_LOG", "ERROR"),
                ("LITELLM_MASTER_KEY", key.as_str()),
                ("NO_DOCS", "True"),
            ],
            &self.logs.join(format!("{name}-litellm.log")),
            addr,
        )?;
        let mut target = Target::new("litellm", addr, Some(proc.pid));
        target.auth = Some(format!("Bearer {key}"));
        target.tree = true;
        let probe = target.clone();
        let body = Bytes::from(
            json!({"model": MODEL, "max_tokens": 2, "messages": [{"role": "user", "content": "hello"}]})
                .to_string(),
        );
        wait_until(Duration::from_secs(180), "LiteLLM", || {
            let probe = probe.clone();
            let body = body.clone();
            async move {
                let mut c = Conn::new(probe.addr);
                matches!(
                    c.unary(probe.post("/v1/chat/completions", body)).await,
                    Ok((200, _))
                )
            }
        })
        .await?;
        Ok((proc, target))
    }
}

/// Copies the `*.md` files of `from` (not recursive) into `to`.
fn copy_markdown(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "md")
            && let Some(name) = p.file_name()
        {
            // The generated page is not knowledge.
            if name != "benchmarks.md" {
                std::fs::copy(&p, to.join(name))?;
            }
        }
    }
    Ok(())
}

/// `n` random bytes as hex, from the kernel.
pub fn random_hex(n: usize) -> String {
    use std::io::Read as _;
    let mut b = vec![0u8; n];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut b);
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}
