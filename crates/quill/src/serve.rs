//! `quill serve`: runs `quill-server` on a tokio runtime until Ctrl-C or SIGTERM.
//!
//! Once the listener is bound, one line `quill: listening on http://ADDR` goes to stdout (logs
//! go to stderr), so scripts and tests that pass `--listen 127.0.0.1:0` learn the port.

use std::io::Write as _;

use anyhow::Context as _;
use quill_server::ServerConfig;

/// Serves until a shutdown signal, then lets the server finish in-flight requests.
pub fn run(config: ServerConfig) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("quill-serve")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let scheme = if config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let data_dir = config.data_dir.clone();
        let (address, server) = quill_server::bind(config, shutdown_signal()).await?;
        tracing::info!(%address, data_dir = %data_dir.display(), "quill is serving");
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "quill: listening on {scheme}://{address}")?;
        stdout.flush()?;
        drop(stdout);
        server.await?;
        tracing::info!("quill stopped");
        Ok(())
    })
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM, whichever comes first.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received, shutting down"),
        () = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
}
