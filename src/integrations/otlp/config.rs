//! Where and how the exporter sends: the protocol, endpoint, headers, timeout, compression and
//! extra CA, from the builder and the `OTEL_EXPORTER_OTLP_*` variables; and the Langfuse preset.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::error::OtlpError;

use super::{ENDPOINT_ENV, OtlpExporterBuilder, TRACES_ENDPOINT_ENV, traces_endpoint};

/// The variable with the protocol of every OTLP signal: `http/protobuf`, `http/json` or `grpc`.
pub const PROTOCOL_ENV: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
/// The variable with the protocol of traces; wins over [`PROTOCOL_ENV`].
pub const TRACES_PROTOCOL_ENV: &str = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL";
/// The variable with headers for every OTLP signal: `key=value` pairs separated by commas,
/// values percent-encoded (`Authorization=Basic%20abc`).
pub const HEADERS_ENV: &str = "OTEL_EXPORTER_OTLP_HEADERS";
/// The variable with the headers of traces; when set, [`HEADERS_ENV`] is not read.
pub const TRACES_HEADERS_ENV: &str = "OTEL_EXPORTER_OTLP_TRACES_HEADERS";
/// The variable with the timeout of one export request, in milliseconds.
pub const TIMEOUT_ENV: &str = "OTEL_EXPORTER_OTLP_TIMEOUT";
/// The variable with the timeout of one traces export request; wins over [`TIMEOUT_ENV`].
pub const TRACES_TIMEOUT_ENV: &str = "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT";
/// The variable with the compression of requests: `gzip` or `none`.
pub const COMPRESSION_ENV: &str = "OTEL_EXPORTER_OTLP_COMPRESSION";
/// The variable with the compression of traces requests; wins over [`COMPRESSION_ENV`].
pub const TRACES_COMPRESSION_ENV: &str = "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION";
/// The variable with the path of a PEM file of CA certificates trusted besides the system's.
pub const CERTIFICATE_ENV: &str = "OTEL_EXPORTER_OTLP_CERTIFICATE";
/// The variable with the CA file of traces; wins over [`CERTIFICATE_ENV`].
pub const TRACES_CERTIFICATE_ENV: &str = "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE";

/// The endpoint used for gRPC when nothing is configured.
pub const DEFAULT_GRPC_ENDPOINT: &str = "http://localhost:4317";

/// How spans travel to the endpoint.
///
/// Each protocol but the default needs a cargo feature of spanbus; asking for one whose feature
/// is off makes [`build`](OtlpExporterBuilder::build) return
/// [`OtlpError::FeatureDisabled`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Protocol {
    /// OTLP/HTTP with a protobuf body (`http/protobuf`), to `…/v1/traces`. Feature `otlp`.
    #[default]
    HttpProtobuf,
    /// OTLP/HTTP with a JSON body (`http/json`), to `…/v1/traces`. Feature `otlp-json`.
    HttpJson,
    /// OTLP/gRPC (`grpc`), the `TraceService/Export` call, usually on port 4317. Feature
    /// `otlp-grpc`.
    Grpc,
}

impl Protocol {
    /// The name the `OTEL_EXPORTER_OTLP_PROTOCOL` variable uses: `http/protobuf`, `http/json`
    /// or `grpc`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::HttpProtobuf => "http/protobuf",
            Protocol::HttpJson => "http/json",
            Protocol::Grpc => "grpc",
        }
    }

    /// The protocol named `name` as `OTEL_EXPORTER_OTLP_PROTOCOL` spells it (case and
    /// surrounding spaces ignored), or `None`.
    pub fn from_name(name: &str) -> Option<Protocol> {
        let name = name.trim();
        [Protocol::HttpProtobuf, Protocol::HttpJson, Protocol::Grpc]
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(name))
    }

    fn is_http(self) -> bool {
        self != Protocol::Grpc
    }

    /// The cargo feature that brings this protocol, and whether it is on.
    pub(super) fn feature(self) -> (&'static str, &'static str, bool) {
        match self {
            Protocol::HttpProtobuf => ("OTLP/HTTP with protobuf", "otlp", true),
            Protocol::HttpJson => (
                "OTLP/HTTP with JSON",
                "otlp-json",
                cfg!(feature = "otlp-json"),
            ),
            Protocol::Grpc => ("OTLP over gRPC", "otlp-grpc", cfg!(feature = "otlp-grpc")),
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How request bodies are compressed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Compression {
    /// Not compressed (the default).
    #[default]
    None,
    /// gzip (`Content-Encoding: gzip` over HTTP, `grpc-encoding: gzip` over gRPC). Feature
    /// `otlp-gzip`.
    Gzip,
}

impl Compression {
    /// The name `OTEL_EXPORTER_OTLP_COMPRESSION` uses: `none` or `gzip`.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An extra CA certificate given to the builder.
#[derive(Debug, Clone)]
pub(super) enum CaSource {
    Pem(Vec<u8>),
    File(PathBuf),
}

/// Where the builder reads `OTEL_EXPORTER_OTLP_*` variables: the process environment, or a
/// set of variables given with [`OtlpExporterBuilder::environment`].
#[derive(Clone, Default)]
pub(super) struct EnvSource(Option<Arc<HashMap<String, String>>>);

impl fmt::Debug for EnvSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            None => f.write_str("process environment"),
            Some(vars) => {
                let mut names: Vec<&str> = vars.keys().map(String::as_str).collect();
                names.sort_unstable();
                f.debug_tuple("given variables").field(&names).finish()
            }
        }
    }
}

impl EnvSource {
    pub(super) fn given(vars: HashMap<String, String>) -> Self {
        EnvSource(Some(Arc::new(vars)))
    }

    /// The value of `name`, `None` when it is unset or blank (the OpenTelemetry spec treats an
    /// empty value as unset).
    fn get(&self, name: &'static str) -> Result<Option<String>, OtlpError> {
        let value = match &self.0 {
            Some(vars) => vars.get(name).cloned(),
            None => match std::env::var(name) {
                Ok(v) => Some(v),
                Err(std::env::VarError::NotPresent) => None,
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err(OtlpError::Env {
                        name,
                        why: "the value is not valid UTF-8".into(),
                    });
                }
            },
        };
        Ok(value.filter(|v| !v.trim().is_empty()))
    }

    /// The traces variable if set, else the generic one, with the name of the one read.
    fn pick(
        &self,
        traces: &'static str,
        generic: &'static str,
    ) -> Result<Option<(&'static str, String)>, OtlpError> {
        if let Some(v) = self.get(traces)? {
            return Ok(Some((traces, v)));
        }
        Ok(self.get(generic)?.map(|v| (generic, v)))
    }
}

/// The transport settings an exporter uses, resolved from the builder and the environment by
/// [`OtlpExporterBuilder::resolve`].
///
/// Its `Debug` shows header names only: header values often hold credentials.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OtlpConfig {
    /// The protocol.
    pub protocol: Protocol,
    /// The URL requests go to: the full traces URL for HTTP, the server's base URL for gRPC.
    pub endpoint: String,
    /// The headers (gRPC metadata) sent with every request, in name order; names are
    /// lowercase.
    pub headers: Vec<(String, String)>,
    /// The timeout of one export request.
    pub timeout: Duration,
    /// The compression of request bodies.
    pub compression: Compression,
    /// CA certificates (PEM) trusted besides the system's roots, for an `https://` endpoint;
    /// empty when none was given.
    pub tls_ca_pem: Vec<u8>,
}

impl fmt::Debug for OtlpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("OtlpConfig")
            .field("protocol", &self.protocol)
            .field("endpoint", &self.endpoint)
            .field("headers", &names)
            .field("timeout", &self.timeout)
            .field("compression", &self.compression)
            .field("tls_ca_pem_bytes", &self.tls_ca_pem.len())
            .finish()
    }
}

impl OtlpConfig {
    /// Whether the endpoint is `https://`.
    pub fn uses_tls(&self) -> bool {
        self.endpoint
            .get(..8)
            .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
    }

    /// The value of header `name` (any case), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Resolves the builder's transport settings against its environment (see the module docs'
/// table): a builder setting wins over a variable, a traces variable over a generic one.
pub(super) fn resolve(b: &OtlpExporterBuilder) -> Result<OtlpConfig, OtlpError> {
    let env = &b.env;

    let protocol = match b.protocol {
        Some(p) => p,
        None => match env.pick(TRACES_PROTOCOL_ENV, PROTOCOL_ENV)? {
            Some((name, v)) => Protocol::from_name(&v).ok_or_else(|| OtlpError::Env {
                name,
                why: format!(
                    "{:?} is not an OTLP protocol (expected http/protobuf, http/json or grpc)",
                    v.trim()
                ),
            })?,
            None => Protocol::default(),
        },
    };
    let (needs, feature, on) = protocol.feature();
    if !on {
        return Err(OtlpError::FeatureDisabled { needs, feature });
    }

    let endpoint = match &b.endpoint {
        Some(e) => {
            let e = e.trim().to_owned();
            check_endpoint(&e).map_err(|why| OtlpError::Endpoint {
                endpoint: e.clone(),
                why,
            })?;
            e
        }
        None => {
            let from_env = match env.get(TRACES_ENDPOINT_ENV)? {
                Some(v) => Some((TRACES_ENDPOINT_ENV, v.trim().to_owned())),
                None => env.get(ENDPOINT_ENV)?.map(|v| {
                    // The generic variable is a base URL: HTTP appends the signal's path, gRPC
                    // takes it as is (the service path is the gRPC method's).
                    let url = if protocol.is_http() {
                        traces_endpoint(&v)
                    } else {
                        v.trim().to_owned()
                    };
                    (ENDPOINT_ENV, url)
                }),
            };
            match from_env {
                Some((name, url)) => {
                    check_endpoint(&url).map_err(|why| OtlpError::Env {
                        name,
                        why: format!("{url:?}: {why}"),
                    })?;
                    url
                }
                None if protocol.is_http() => super::DEFAULT_ENDPOINT.to_owned(),
                None => DEFAULT_GRPC_ENDPOINT.to_owned(),
            }
        }
    };

    // Headers: the environment's, then the builder's over them (a name in both takes the
    // builder's value).
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut put = |name: String, value: String| match headers.iter_mut().find(|(k, _)| *k == name) {
        Some(slot) => slot.1 = value,
        None => headers.push((name, value)),
    };
    if let Some((name, text)) = env.pick(TRACES_HEADERS_ENV, HEADERS_ENV)? {
        for (k, v) in parse_headers(&text).map_err(|why| OtlpError::Env { name, why })? {
            let k = check_header(&k, &v).map_err(|why| OtlpError::Env {
                name,
                why: format!("header {k:?}: {why}"),
            })?;
            put(k, v);
        }
    }
    let mut builder_headers: Vec<(&String, &String)> = b.headers.iter().collect();
    builder_headers.sort();
    for (k, v) in builder_headers {
        let name = check_header(k, v).map_err(|why| OtlpError::Header {
            name: k.clone(),
            why,
        })?;
        put(name, v.clone());
    }
    headers.sort();

    let timeout = if b.export_timeout_set {
        b.export_timeout
    } else {
        match env.pick(TRACES_TIMEOUT_ENV, TIMEOUT_ENV)? {
            Some((name, v)) => parse_timeout(&v).map_err(|why| OtlpError::Env { name, why })?,
            None => b.export_timeout,
        }
    };

    let compression = match b.compression {
        Some(c) => c,
        None => match env.pick(TRACES_COMPRESSION_ENV, COMPRESSION_ENV)? {
            Some((name, v)) => match v.trim().to_ascii_lowercase().as_str() {
                "gzip" => Compression::Gzip,
                "none" => Compression::None,
                _ => {
                    return Err(OtlpError::Env {
                        name,
                        why: format!(
                            "{:?} is not a compression (expected gzip or none)",
                            v.trim()
                        ),
                    });
                }
            },
            None => Compression::None,
        },
    };
    if compression == Compression::Gzip && !cfg!(feature = "otlp-gzip") {
        return Err(OtlpError::FeatureDisabled {
            needs: "gzip compression",
            feature: "otlp-gzip",
        });
    }

    let mut tls_ca_pem = Vec::new();
    if b.tls_ca.is_empty() {
        if let Some((name, path)) = env.pick(TRACES_CERTIFICATE_ENV, CERTIFICATE_ENV)? {
            let path = path.trim();
            let pem = std::fs::read(path).map_err(|e| OtlpError::Env {
                name,
                why: format!("cannot read the CA file {path:?}: {e}"),
            })?;
            check_ca_pem(&pem).map_err(|why| OtlpError::Env {
                name,
                why: format!("the CA file {path:?}: {why}"),
            })?;
            tls_ca_pem = pem;
        }
    } else {
        for source in &b.tls_ca {
            let (pem, what) = match source {
                CaSource::Pem(pem) => (pem.clone(), "the CA given to tls_ca_pem".to_owned()),
                CaSource::File(path) => {
                    let pem = std::fs::read(path).map_err(|e| {
                        OtlpError::Tls(format!("cannot read the CA file {path:?}: {e}"))
                    })?;
                    (pem, format!("the CA file {path:?}"))
                }
            };
            check_ca_pem(&pem).map_err(|why| OtlpError::Tls(format!("{what}: {why}")))?;
            tls_ca_pem.extend_from_slice(&pem);
            tls_ca_pem.push(b'\n');
        }
    }

    let config = OtlpConfig {
        protocol,
        endpoint,
        headers,
        timeout,
        compression,
        tls_ca_pem,
    };
    if config.uses_tls() && !cfg!(feature = "otlp-tls") {
        return Err(OtlpError::FeatureDisabled {
            needs: "an https:// endpoint (TLS)",
            feature: "otlp-tls",
        });
    }
    Ok(config)
}

/// Why `url` cannot be an endpoint, if it cannot.
fn check_endpoint(url: &str) -> Result<(), String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("not a URL ({e})"))?;
    match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https") => {}
        Some(s) => return Err(format!("the scheme is {s:?}; it must be http or https")),
        None => return Err("it has no scheme; start it with http:// or https://".into()),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("it has no host".into());
    }
    Ok(())
}

/// The header's name, lowercase, if the name and value can be sent.
fn check_header(name: &str, value: &str) -> Result<String, String> {
    let header = http::HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| "not a valid header name".to_owned())?;
    http::HeaderValue::from_str(value)
        .map_err(|_| "the value holds characters a header cannot carry".to_owned())?;
    Ok(header.as_str().to_owned())
}

/// `key=value` pairs separated by commas, keys and values percent-decoded, blank entries
/// skipped. The error names the entry's position and key, never its value.
fn parse_headers(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (i, entry) in text.split(',').enumerate() {
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        let n = i + 1;
        let Some((k, v)) = entry.split_once('=') else {
            return Err(format!(
                "entry {n} has no '=' (expected key=value pairs separated by commas)"
            ));
        };
        let k = percent_decode(k.trim())
            .ok_or_else(|| format!("entry {n}: the key is not valid percent-encoded UTF-8"))?;
        if k.is_empty() {
            return Err(format!("entry {n} has an empty key"));
        }
        let v = percent_decode(v.trim()).ok_or_else(|| {
            format!("entry {n} ({k:?}): the value is not valid percent-encoded UTF-8")
        })?;
        out.push((k, v));
    }
    Ok(out)
}

/// `%XY` sequences decoded (and nothing else: `+` stays `+`); `None` for a malformed sequence
/// or bytes that are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn parse_timeout(v: &str) -> Result<Duration, String> {
    let v = v.trim();
    let ms: u64 = v
        .parse()
        .map_err(|_| format!("{v:?} is not a whole number of milliseconds"))?;
    if ms == 0 {
        return Err("0 ms: the timeout must be at least 1 millisecond".into());
    }
    Ok(Duration::from_millis(ms))
}

/// Why `pem` is not a set of PEM certificates, if it is not (checked only when TLS is built
/// in; without it the CA is never used).
fn check_ca_pem(pem: &[u8]) -> Result<(), String> {
    #[cfg(feature = "otlp-tls")]
    {
        super::tls::parse_ca_pem(pem).map(|_| ())
    }
    #[cfg(not(feature = "otlp-tls"))]
    {
        let _ = pem;
        Ok(())
    }
}

/// The variable with the Langfuse public key (the Basic auth user).
pub const LANGFUSE_PUBLIC_KEY_ENV: &str = "LANGFUSE_PUBLIC_KEY";
/// The variable with the Langfuse secret key (the Basic auth password).
pub const LANGFUSE_SECRET_KEY_ENV: &str = "LANGFUSE_SECRET_KEY";
/// The variable with the Langfuse base URL (default [`LANGFUSE_DEFAULT_HOST`]).
pub const LANGFUSE_HOST_ENV: &str = "LANGFUSE_HOST";
/// The newer Langfuse SDKs' name for [`LANGFUSE_HOST_ENV`], read when that one is not set.
pub const LANGFUSE_BASE_URL_ENV: &str = "LANGFUSE_BASE_URL";
/// Langfuse Cloud (EU region); `https://us.cloud.langfuse.com` is the US region.
pub const LANGFUSE_DEFAULT_HOST: &str = "https://cloud.langfuse.com";
/// Where Langfuse takes OTLP/HTTP traces, under its base URL.
pub const LANGFUSE_TRACES_PATH: &str = "/api/public/otel/v1/traces";
/// The header that tells Langfuse which ingestion pipeline to use.
pub const LANGFUSE_INGESTION_VERSION_HEADER: &str = "x-langfuse-ingestion-version";
/// The ingestion version sent: `4`, what Langfuse asks direct OpenTelemetry exporters to send
/// (with it, spans show up in real time instead of minutes later).
pub const LANGFUSE_INGESTION_VERSION: &str = "4";

/// Langfuse credentials and host, for [`OtlpExporterBuilder::langfuse`].
///
/// Its `Debug` does not show the secret key.
///
/// ```
/// use spanbus::integrations::otlp::Langfuse;
///
/// let lf = Langfuse::new("pk-lf-1", "sk-lf-1").host("http://localhost:3000/");
/// assert_eq!(lf.traces_endpoint(), "http://localhost:3000/api/public/otel/v1/traces");
/// assert_eq!(lf.authorization(), "Basic cGstbGYtMTpzay1sZi0x");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Langfuse {
    public_key: String,
    secret_key: String,
    host: String,
}

impl fmt::Debug for Langfuse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Langfuse")
            .field("public_key", &self.public_key)
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

impl Langfuse {
    /// A project's keys, on Langfuse Cloud ([`LANGFUSE_DEFAULT_HOST`]).
    pub fn new(public_key: impl Into<String>, secret_key: impl Into<String>) -> Self {
        Langfuse {
            public_key: public_key.into().trim().to_owned(),
            secret_key: secret_key.into().trim().to_owned(),
            host: LANGFUSE_DEFAULT_HOST.to_owned(),
        }
    }

    /// Another Langfuse: a region (`https://us.cloud.langfuse.com`) or a self-hosted one.
    pub fn host(mut self, base_url: impl Into<String>) -> Self {
        self.host = base_url.into().trim().trim_end_matches('/').to_owned();
        self
    }

    /// From the process environment: [`LANGFUSE_PUBLIC_KEY_ENV`], [`LANGFUSE_SECRET_KEY_ENV`],
    /// and [`LANGFUSE_HOST_ENV`] (or [`LANGFUSE_BASE_URL_ENV`]; default
    /// [`LANGFUSE_DEFAULT_HOST`]).
    ///
    /// # Errors
    ///
    /// [`OtlpError::MissingEnv`] when a key is unset or empty; [`OtlpError::Env`] when a value
    /// is not UTF-8.
    pub fn from_env() -> Result<Self, OtlpError> {
        Self::read(&EnvSource::default())
    }

    /// As [`from_env`](Self::from_env), from these variables instead of the process
    /// environment.
    pub fn from_vars<K, V>(vars: impl IntoIterator<Item = (K, V)>) -> Result<Self, OtlpError>
    where
        K: Into<String>,
        V: Into<String>,
    {
        let vars = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        Self::read(&EnvSource::given(vars))
    }

    fn read(env: &EnvSource) -> Result<Self, OtlpError> {
        let needed_by = "the Langfuse preset";
        let public = env
            .get(LANGFUSE_PUBLIC_KEY_ENV)?
            .ok_or(OtlpError::MissingEnv {
                name: LANGFUSE_PUBLIC_KEY_ENV,
                needed_by,
            })?;
        let secret = env
            .get(LANGFUSE_SECRET_KEY_ENV)?
            .ok_or(OtlpError::MissingEnv {
                name: LANGFUSE_SECRET_KEY_ENV,
                needed_by,
            })?;
        let lf = Langfuse::new(public, secret);
        Ok(match env.pick(LANGFUSE_HOST_ENV, LANGFUSE_BASE_URL_ENV)? {
            Some((_, host)) => lf.host(host),
            None => lf,
        })
    }

    /// The OTLP/HTTP traces URL: the host and [`LANGFUSE_TRACES_PATH`].
    pub fn traces_endpoint(&self) -> String {
        format!("{}{LANGFUSE_TRACES_PATH}", self.host)
    }

    /// The `Authorization` header's value: `Basic base64(public_key:secret_key)`.
    pub fn authorization(&self) -> String {
        format!(
            "Basic {}",
            base64(format!("{}:{}", self.public_key, self.secret_key).as_bytes())
        )
    }
}

impl OtlpExporterBuilder {
    /// Sends to Langfuse: OTLP/HTTP protobuf to [`Langfuse::traces_endpoint`], with the
    /// `Authorization` of [`Langfuse::authorization`] and
    /// [`LANGFUSE_INGESTION_VERSION_HEADER`]: [`LANGFUSE_INGESTION_VERSION`]. These are
    /// builder settings, so they win over `OTEL_EXPORTER_OTLP_*` variables; a later builder
    /// call can still change them. An `https://` host (Langfuse Cloud) needs the feature
    /// `otlp-tls`. See also [`OtlpExporter::langfuse_from_env`](super::OtlpExporter::langfuse_from_env).
    pub fn langfuse(self, langfuse: Langfuse) -> Self {
        self.endpoint(langfuse.traces_endpoint())
            .protocol(Protocol::HttpProtobuf)
            .header("authorization", langfuse.authorization())
            .header(
                LANGFUSE_INGESTION_VERSION_HEADER,
                LANGFUSE_INGESTION_VERSION,
            )
    }
}

/// Standard base64 with padding (RFC 4648), for Basic auth.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded, "{plain:?}");
        }
    }

    #[test]
    fn headers_are_parsed_and_percent_decoded() {
        assert_eq!(
            parse_headers(" a=1 , Authorization=Basic%20x%3D%3D,, b = c=d ").unwrap(),
            [
                ("a".to_owned(), "1".to_owned()),
                ("Authorization".to_owned(), "Basic x==".to_owned()),
                ("b".to_owned(), "c=d".to_owned()),
            ]
        );
        assert!(parse_headers("a=1,nokey").unwrap_err().contains("entry 2"));
        assert!(parse_headers("=1").unwrap_err().contains("empty key"));
        assert!(parse_headers("a=%zz").is_err());
        assert!(parse_headers("a=%ff").is_err(), "not UTF-8");
        assert_eq!(percent_decode("a+b%2Bc"), Some("a+b+c".into()));
        assert_eq!(percent_decode("%4"), None);
    }

    #[test]
    fn endpoints_need_an_http_scheme_and_a_host() {
        assert!(check_endpoint("http://127.0.0.1:4318/v1/traces").is_ok());
        assert!(check_endpoint("HTTPS://collector").is_ok());
        assert!(check_endpoint("collector:4317").is_err());
        assert!(check_endpoint("ftp://collector").is_err());
        assert!(check_endpoint("not a url").is_err());
        assert!(check_endpoint("").is_err());
    }
}
