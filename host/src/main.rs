//! `wasmgate`: a guarded gateway in front of an OpenAI-compatible LLM server.

use wasmgate::{api, cli, config, eval, metrics, registry, runtime, upstream, watcher};

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use axum::serve::ListenerExt;
use clap::Parser;

use cli::{CheckArgs, Cli, Command, KeygenArgs, ServeArgs, SignArgs};
use config::{ComponentDefaults, ComponentSettings, Settings};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json_logs = matches!(&cli.command, Command::Serve(a) if a.log_json);
    let filter = tracing_subscriber::EnvFilter::try_from_env("WASMGATE_LOG")
        .unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json_logs {
        logs.json().flatten_event(true).init();
    } else {
        logs.with_ansi(std::io::stderr().is_terminal()).init();
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            Command::Serve(args) => serve(*args).await,
            Command::Check(args) => check(args).await,
            Command::Eval(args) => eval::run(args).await,
            Command::Keygen(args) => keygen(&args),
            Command::Sign(args) => sign(&args),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let settings = Settings::from_args(&args)?;
    let keys = wasmgate::auth::Keys::new(&settings.keys).map_err(|e| anyhow::anyhow!(e))?;
    if keys.is_empty() && !settings.listen.ip().is_loopback() && !settings.insecure_no_auth {
        anyhow::bail!(
            "refusing to listen on {} without API keys: anyone who can reach it could use the model. \
             Add keys (--api-key NAME=SECRET, WASMGATE_API_KEYS or [[keys]] in the config file), \
             listen on a loopback address, or pass --insecure-no-auth",
            settings.listen
        );
    }
    let metrics = Arc::new(metrics::Metrics::new().context("registering metrics")?);
    let cache_dir = settings
        .cache_dir
        .clone()
        .unwrap_or_else(|| settings.components.join(".cache"));
    let runtime = runtime::Runtime::new(settings.max_instances, Some(cache_dir))
        .map_err(|e| anyhow::anyhow!("starting the component runtime: {e:#}"))?;
    let registry = Arc::new(registry::Registry::new(
        Arc::new(runtime),
        metrics.clone(),
        settings.components.clone(),
        settings.component_defaults.clone(),
        wasmgate::signing::TrustedKeys::parse(&settings.trusted_keys)
            .map_err(|e| anyhow::anyhow!(e))?,
    ));
    let _watcher = watcher::watch(registry.clone()).context("watching the components folder")?;
    registry.sync().await;

    let upstream = Arc::new(
        upstream::Upstream::new(
            settings.upstreams.clone(),
            upstream::Timeouts {
                connect: settings.upstream_connect_timeout,
                response: settings.upstream_timeout,
                first_token: settings.upstream_ttft_timeout,
                idle: settings.upstream_idle_timeout,
            },
            settings.upstream_retries,
        )
        .context("building the upstream client")?,
    );
    upstream.spawn_health_checks(metrics.clone());
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("binding {}", settings.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, upstreams = ?upstream.bases(), components = %settings.components.display(), "wasmgate listening");
    let (close_streams, closing) = tokio::sync::watch::channel(false);
    let grace = settings.shutdown_grace;
    let state = Arc::new(api::AppState {
        closing,
        keys,
        limiter: Arc::new(wasmgate::limits::InProcess::default()),
        inflight: Arc::new(tokio::sync::Semaphore::new(settings.max_inflight)),
        settings,
        metrics,
        registry,
        upstream,
    });
    // Test harnesses and scripts wait for this line.
    println!("listening on http://{addr}");
    std::io::stdout().flush()?;
    let server = axum::serve(listener.tap_io(nodelay), api::router(state)).with_graceful_shutdown(
        async move {
            shutdown_signal().await;
            // New connections are refused from here; open streams get the grace
            // period, then are ended with an error event and [DONE].
            tokio::spawn(async move {
                tokio::time::sleep(grace).await;
                tracing::warn!(
                    grace_ms = grace.as_millis() as u64,
                    "grace period over: ending open streams"
                );
                let _ = close_streams.send(true);
            });
        },
    );
    server.await?;
    tracing::info!("all connections closed; bye");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = term => {} }
    tracing::info!("shutting down: finishing open requests");
}

/// `wasmgate check FILE`: compile and validate, print the component's info.
async fn check(args: CheckArgs) -> anyhow::Result<()> {
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let sha = runtime::compile::sha256_hex(&bytes);
    let runtime = runtime::Runtime::new(0, None)
        .map_err(|e| anyhow::anyhow!("starting the component runtime: {e:#}"))?;
    let name = args
        .file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("component")
        .to_owned();
    let settings = ComponentSettings::load(
        &args.file.with_extension("toml"),
        &ComponentDefaults::default(),
    )?;
    let bytes = Arc::new(bytes);
    let invalid =
        |e: String| anyhow::anyhow!("{} is not a valid {}: {e}", args.file.display(), args.kind);
    let info = match args.kind.as_str() {
        "guard" => {
            runtime
                .load_guard(&name, bytes, sha.clone(), settings)
                .await
                .map_err(invalid)?
                .info
        }
        "agent" => {
            runtime
                .load_agent(&name, bytes, sha.clone(), settings)
                .await
                .map_err(invalid)?
                .info
        }
        other => anyhow::bail!("--kind must be `guard` or `agent`, not `{other}`"),
    };
    println!(
        "{}",
        serde_json::json!({
            "kind": args.kind,
            "name": info.name,
            "version": info.version,
            "description": info.description,
            "filters_output": info.filters_output,
            "sha256": sha,
        })
    );
    Ok(())
}

/// `wasmgate keygen`: writes the secret key, prints the public key.
fn keygen(args: &KeygenArgs) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    let (secret, public) = wasmgate::signing::generate()?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&args.out)
        .with_context(|| format!("creating {} (it must not exist yet)", args.out.display()))?;
    writeln!(f, "{secret}")?;
    println!("{public}");
    eprintln!(
        "secret key written to {}; start wasmgate with --trusted-key {public}",
        args.out.display()
    );
    Ok(())
}

/// `wasmgate sign`: writes NAME.sig beside NAME.wasm.
fn sign(args: &SignArgs) -> anyhow::Result<()> {
    let secret = std::fs::read_to_string(&args.key)
        .with_context(|| format!("reading {}", args.key.display()))?;
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let sig = wasmgate::signing::sign(&secret, &bytes).map_err(|e| anyhow::anyhow!(e))?;
    let out = args.file.with_extension("sig");
    std::fs::write(&out, format!("{sig}\n"))?;
    println!("{}", out.display());
    Ok(())
}

/// Small SSE writes must leave at once, not wait for Nagle's algorithm.
fn nodelay(tcp: &mut tokio::net::TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
}
