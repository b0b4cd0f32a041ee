//! A tokio-postgres TLS connector over tokio-rustls, configured by libpq's `sslmode`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use dr_core::{Error, Result};
use rustls::ClientConfig;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

use super::explain::HandshakeError;
use super::files::{self, TlsFiles};
use super::{SslMode, TlsSettings};

/// Makes rustls connections for tokio-postgres, one per host.
#[derive(Clone)]
pub(crate) struct RustlsConnector {
    config: Arc<ClientConfig>,
}

impl RustlsConnector {
    /// Reads the files `settings` name (or libpq's defaults) and builds the client
    /// configuration: verifying as `settings.mode` says, with the client certificate if any.
    ///
    /// # Errors
    /// [`Error::Usage`] for files that cannot be used; [`Error::Internal`] when rustls
    /// refuses the configuration.
    pub(crate) async fn new(settings: &TlsSettings) -> Result<Self> {
        let owned = settings.clone();
        let files = tokio::task::spawn_blocking(move || files::load(&owned))
            .await
            .map_err(|e| Error::internal("reading the TLS files", e))??;
        Ok(RustlsConnector {
            config: Arc::new(client_config(settings.mode, files)?),
        })
    }
}

fn client_config(mode: SslMode, files: TlsFiles) -> Result<ClientConfig> {
    let invalid = |e: &dyn std::fmt::Display| Error::internal("setting up TLS", e);
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let algorithms = provider.signature_verification_algorithms;
    let verifier: Arc<dyn ServerCertVerifier> = match files.roots {
        None => Arc::new(super::verifier::AnyCertificate::new(algorithms)),
        Some(roots) => {
            let webpki = WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots.store),
                provider.clone(),
            )
            .build()
            .map_err(|e| invalid(&e))?;
            if mode == SslMode::VerifyFull {
                webpki
            } else {
                Arc::new(super::verifier::ChainOnly::new(webpki))
            }
        }
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(&e))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    match files.client {
        None => Ok(builder.with_no_client_auth()),
        Some(client) => builder
            .with_client_auth_cert(client.chain, client.key)
            .map_err(|e| {
                Error::Usage(format!(
                    "sslcert and sslkey in the source URL do not make a usable client certificate: {e}"
                ))
            }),
    }
}

impl<S> MakeTlsConnect<S> for RustlsConnector
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = rustls::pki_types::InvalidDnsNameError;

    fn make_tls_connect(
        &mut self,
        domain: &str,
    ) -> std::result::Result<RustlsConnect, Self::Error> {
        Ok(RustlsConnect {
            config: self.config.clone(),
            name: ServerName::try_from(domain.to_owned())?,
        })
    }
}

/// One TLS handshake to one host name.
pub(crate) struct RustlsConnect {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

type Handshake<S> =
    Pin<Box<dyn Future<Output = std::result::Result<RustlsStream<S>, HandshakeError>> + Send>>;

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = HandshakeError;
    type Future = Handshake<S>;

    fn connect(self, stream: S) -> Handshake<S> {
        Box::pin(async move {
            tokio_rustls::TlsConnector::from(self.config)
                .connect(self.name, stream)
                .await
                .map(RustlsStream)
                .map_err(HandshakeError::from_io)
        })
    }
}

/// An established TLS stream.
pub(crate) struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    /// No `tls-server-end-point` binding: SCRAM runs without channel binding, as libpq does
    /// with `channel_binding=prefer` when it cannot bind.
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}
