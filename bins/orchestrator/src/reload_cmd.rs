//! `orchestrator reload`: asks the running orchestrator to apply its changed configuration
//! file (`POST /api/config/reload` with the token from `admin.token`), so it works the same on
//! Windows, where there is no SIGHUP. Over HTTPS it trusts exactly the configured certificate
//! (pinned: the server must present that certificate, whatever names it carries).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use gateway_http::Config;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// A reload stops removed services and restarts changed ones: it may take their stop timeouts.
const RELOAD_WAIT: Duration = Duration::from_secs(300);

/// Sends the reload and prints the plan (or the refusal); exit status 0 when applied.
#[allow(clippy::print_stdout)]
pub fn run(config: &Config) -> anyhow::Result<ExitCode> {
    let token_file = config.gateway.data_dir.join("admin.token");
    let token = std::fs::read_to_string(&token_file)
        .with_context(|| format!("reading the operator token {}", token_file.display()))?;
    let mut addr = config.gateway.bind_addr()?;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() { [127, 0, 0, 1].into() } else { std::net::Ipv6Addr::LOCALHOST.into() });
    }
    let (client, url) = match &config.gateway.tls {
        Some(tls) => {
            let pinned = CertificateDer::from_pem_file(&tls.cert)
                .with_context(|| format!("reading the certificate {}", tls.cert.display()))?;
            (pinned_client(pinned)?, format!("https://localhost:{}/api/config/reload", addr.port()))
        }
        None => (awc::Client::builder().timeout(RELOAD_WAIT).finish(), format!("http://{addr}/api/config/reload")),
    };
    actix_rt::System::new().block_on(async move {
        let mut response = client
            .post(&url)
            .bearer_auth(token.trim())
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| format!("is the orchestrator running? POST {url}"))?;
        let body: serde_json::Value =
            response.json().limit(1 << 20).await.map_err(|e| anyhow::anyhow!("{e}")).context("reading the answer")?;
        if response.status().is_success() {
            println!("{}", serde_json::to_string_pretty(&body["data"]).unwrap_or_default());
            Ok(ExitCode::SUCCESS)
        } else {
            println!("reload refused ({}): {}", response.status().as_u16(), body["error"].as_str().unwrap_or("?"));
            Ok(ExitCode::FAILURE)
        }
    })
}

fn pinned_client(pinned: CertificateDer<'static>) -> anyhow::Result<awc::Client> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(Pinned { cert: pinned, provider: provider.clone() });
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = awc::Connector::new().rustls_0_23(Arc::new(tls));
    Ok(awc::Client::builder().connector(connector).timeout(RELOAD_WAIT).finish())
}

/// Accepts exactly one certificate (the configured one), and checks the handshake signatures
/// against it as usual.
#[derive(Debug)]
struct Pinned {
    cert: CertificateDer<'static>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.cert.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General("not the configured certificate".into()))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}
