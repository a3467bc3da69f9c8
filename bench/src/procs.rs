//! Child processes (vllm-sim, wasmgate, peers) and what `/proc` says about
//! them: CPU time, resident memory.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};

use crate::http::{Target, parse_addr};

/// A child process in its own process group, killed (group and all) on drop.
pub struct Proc {
    child: Child,
    pub pid: u32,
    pub addr: SocketAddr,
}

impl Proc {
    /// Starts `bin` and waits (bounded) for its `listening on http://ADDR`
    /// line. stderr goes to `log`.
    pub fn spawn_listening(
        name: &str,
        bin: &Path,
        args: &[String],
        env: &[(&str, &str)],
        log: &Path,
    ) -> anyhow::Result<Self> {
        let mut child = command(bin, args, env, log)?
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = tx.send(line);
            let mut sink = Vec::new();
            let _ = reader.read_to_end(&mut sink);
        });
        let pid = child.id();
        let mut proc = Self {
            child,
            pid,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let line = rx.recv_timeout(Duration::from_secs(180)).map_err(|_| {
            anyhow!(
                "{name} did not print its address within 180 s (log: {})",
                log.display()
            )
        })?;
        let url = line.trim().strip_prefix("listening on ").ok_or_else(|| {
            anyhow!(
                "{name} printed {line:?} instead of `listening on URL` (log: {})",
                log.display()
            )
        })?;
        proc.addr = parse_addr(url)?;
        Ok(proc)
    }

    /// Starts `bin` (which prints nothing useful) on `addr`; the caller
    /// polls for readiness.
    pub fn spawn_at(
        name: &str,
        bin: &Path,
        args: &[String],
        env: &[(&str, &str)],
        log: &Path,
        addr: SocketAddr,
    ) -> anyhow::Result<Self> {
        let child = command(bin, args, env, log)?
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {name} ({})", bin.display()))?;
        Ok(Self {
            pid: child.id(),
            child,
            addr,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// This process as a request target.
    pub fn target(&self, label: &str) -> Target {
        Target::new(label, self.addr, Some(self.pid))
    }
}

fn command(
    bin: &Path,
    args: &[String],
    env: &[(&str, &str)],
    log: &Path,
) -> anyhow::Result<Command> {
    if !bin.exists() {
        bail!("{} is missing: build it first", bin.display());
    }
    let log_file = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::from(log_file))
        .process_group(0);
    for (k, v) in env {
        cmd.env(k, v);
    }
    Ok(cmd)
}

impl Drop for Proc {
    fn drop(&mut self) {
        // The child leads its own process group: end it and anything it forked.
        let pgid = i32::try_from(self.pid).unwrap_or(0);
        if pgid > 0 {
            // SAFETY: kill(2) on a process group this harness created.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port (bound, then released).
pub fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// utime + stime of one process (all its threads), in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    stat_fields(&format!("/proc/{pid}/stat"))
        .map(|(_, cpu)| cpu)
        .unwrap_or(0.0)
}

/// CPU seconds of this harness.
pub fn self_cpu_seconds() -> f64 {
    stat_fields("/proc/self/stat")
        .map(|(_, cpu)| cpu)
        .unwrap_or(0.0)
}

/// (ppid, cpu seconds) from a `/proc/PID/stat` file.
fn stat_fields(path: &str) -> Option<(u32, f64)> {
    let text = std::fs::read_to_string(path).ok()?;
    // The command name may contain spaces and parentheses: fields start
    // after the last ')'. Field 4 is ppid, 14 utime, 15 stime.
    let rest = &text[text.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ppid = f.get(1)?.parse().ok()?;
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((ppid, (utime + stime) / clock_ticks()))
}

/// CPU seconds of `pid` and every live descendant.
pub fn tree_cpu_seconds(pid: u32) -> f64 {
    let mut procs: Vec<(u32, u32, f64)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Some((ppid, cpu)) = stat_fields(&format!("/proc/{p}/stat")) {
                procs.push((p, ppid, cpu));
            }
        }
    }
    let mut family = vec![pid];
    let mut total = 0.0;
    let mut i = 0;
    while i < family.len() {
        let cur = family[i];
        for &(p, ppid, cpu) in &procs {
            if p == cur {
                total += cpu;
            }
            if ppid == cur && !family.contains(&p) {
                family.push(p);
            }
        }
        i += 1;
    }
    total
}

/// CPU seconds of a target's process (tree), 0 without one.
pub fn target_cpu(t: &Target) -> f64 {
    match (t.pid, t.tree) {
        (Some(p), true) => tree_cpu_seconds(p),
        (Some(p), false) => cpu_seconds(p),
        (None, _) => 0.0,
    }
}

/// A `kB` field of `/proc/PID/status` (VmRSS, VmHWM, ...), in KiB.
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    kib_field(&text, field)
}

/// A `kB` field of `/proc/PID/smaps_rollup` (Rss, Anonymous, ...), in KiB.
pub fn smaps_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    kib_field(&text, field)
}

fn kib_field(text: &str, field: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Polls `ready` every 200 ms until it is true or `limit` passes.
pub async fn wait_until<F, Fut>(limit: Duration, what: &str, mut ready: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if ready().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("{what} not ready after {limit:?}")
}

/// The machine, as the report states it.
pub fn machine() -> serde_json::Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_else(|| "unknown CPU".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = kib_field(&meminfo, "MemTotal").unwrap_or(0) as f64 / (1024.0 * 1024.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_owned();
    let load = std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    serde_json::json!({
        "cpu": model,
        "cores": cores,
        "memory_gib": (mem_gib * 10.0).round() / 10.0,
        "kernel": kernel,
        "loadavg_at_start": load,
    })
}

/// `git rev-parse` of the work tree, with `+dirty` for uncommitted changes.
pub fn commit() -> String {
    let run = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let Some(head) = run(&["rev-parse", "--short=12", "HEAD"]) else {
        return "unknown".into();
    };
    match run(&["status", "--porcelain", "--untracked-files=no"]) {
        Some(s) if !s.is_empty() => format!("{head}+dirty"),
        _ => head,
    }
}

/// The 1-minute load average now.
pub fn loadavg1() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// Waits (at most `limit`) until the processes in `pids` together use less
/// than 5% of a core over 250 ms: a slow peer may still be working on
/// streams a phase cut, and must not steal CPU from the next phase.
pub async fn settle(pids: &[u32], limit: std::time::Duration) {
    let deadline = Instant::now() + limit;
    let total = || pids.iter().map(|&p| tree_cpu_seconds(p)).sum::<f64>();
    while Instant::now() < deadline {
        let c0 = total();
        tokio::time::sleep(Duration::from_millis(250)).await;
        if total() - c0 < 0.05 * 0.25 {
            return;
        }
    }
}
