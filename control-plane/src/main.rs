//! `tokengate [serve]`: config from the environment, then pool, migrations, signing key,
//! first admin, then serve until SIGINT or SIGTERM. Any other subcommand is the command
//! line client (src/cli).

use std::process::ExitCode;

use clap::Parser as _;
use tokengate_control_plane::cli::{Cli, Command};
use tokengate_control_plane::{serve, start, Config};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        None | Some(Command::Serve) => {}
        Some(command) => return client(cli.global, command),
    }
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();

    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tokengate: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tokengate: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tokengate: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A client subcommand on a current-thread runtime; errors on stderr with their exit code.
fn client(global: tokengate_control_plane::cli::Global, command: Command) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tokengate: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(tokengate_control_plane::cli::run(global, command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tokengate: {}", e.message);
            ExitCode::from(e.exit)
        }
    }
}

async fn run(config: Config) -> Result<(), String> {
    tracing::info!(?config, "starting");
    let listen = config.listen;
    let tls = match &config.tls {
        Some((cert, key)) => Some(tokengate_control_plane::http::tls::server_config(cert, key).map_err(|e| e.to_string())?),
        None => None,
    };
    let no_proxy_secret = config.proxy_secret.is_none();
    let (state, generated) = start(config).await.map_err(|e| e.to_string())?;
    if let Some(admin) = generated {
        // Shown once, on stdout, so it can be read off the terminal or captured apart
        // from the logs.
        println!("tokengate: created admin user {:?} with password {:?} (shown once)", admin.username, admin.password);
    }
    if no_proxy_secret {
        tracing::warn!("TOKENGATE_PROXY_SECRET is not set: the sync endpoint refuses every proxy");
    }
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    match tls {
        Some(tls) => {
            use axum::serve::ListenerExt as _;
            let listener = tokengate_control_plane::http::tls::TlsListener::new(listener, tls)
                .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
            // Through `tap_io`, for which axum provides the peer address as `ConnectInfo`.
            let listener = listener.tap_io(|_| {});
            tracing::info!(address = %listen, "listening (HTTPS)");
            serve(state, listener, shutdown_signal()).await
        }
        None => {
            tracing::info!(address = %listen, "listening");
            serve(state, listener, shutdown_signal()).await
        }
    }
    .map_err(|e| format!("server error: {e}"))?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
    tracing::info!("shutting down");
}
