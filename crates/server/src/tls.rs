//! HTTPS for deployments without a proxy in front: rustls with the certificate chain and key
//! of `tls:`, read again from their files on SIGHUP, so a renewed certificate needs no
//! restart (a file that does not load leaves the old certificate in place).

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use axum_server::tls_rustls::RustlsConfig;
use tokio::net::TcpListener;

use crate::config::TlsConfig;

/// Serves `app` over TLS until `shutdown`, then lets requests finish for up to `grace`.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    tls: &TlsConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> anyhow::Result<()> {
    let config = RustlsConfig::from_pem_file(&tls.cert_file, &tls.key_file)
        .await
        .with_context(|| {
            format!(
                "loading the TLS certificate {} and key {}",
                tls.cert_file.display(),
                tls.key_file.display()
            )
        })?;
    let reloader = tokio::spawn(reload_on_hangup(config.clone(), tls.clone()));
    let handle = axum_server::Handle::new();
    let stopper = {
        let handle = handle.clone();
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutting down: finishing in-flight requests");
            handle.graceful_shutdown(Some(grace));
        })
    };
    // TCP_NODELAY, as for plain HTTP (`serve_plain`).
    let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(config)
        .acceptor(axum_server::accept::NoDelayAcceptor::new());
    let result = axum_server::from_tcp(listener.into_std()?)?
        .acceptor(acceptor)
        .handle(handle)
        .serve(app.into_make_service_with_connect_info::<SocketAddr>())
        .await;
    reloader.abort();
    stopper.abort();
    result.context("serving HTTPS")
}

#[cfg(unix)]
async fn reload_on_hangup(config: RustlsConfig, tls: TlsConfig) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; the TLS certificate will not be reloaded");
        return;
    };
    while hangups.recv().await.is_some() {
        match config
            .reload_from_pem_file(&tls.cert_file, &tls.key_file)
            .await
        {
            Ok(()) => {
                tracing::info!(cert = %tls.cert_file.display(), "reloaded the TLS certificate")
            }
            Err(e) => {
                tracing::warn!(error = %e, "reloading the TLS certificate failed; keeping the one in use")
            }
        }
    }
}

#[cfg(not(unix))]
async fn reload_on_hangup(_: RustlsConfig, _: TlsConfig) {}
