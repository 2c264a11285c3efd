//! Configuration by the standard `OTEL_EXPORTER_OTLP_*` variables, read here from explicit
//! sets of variables (`environment`), never by changing the process environment: a builder
//! call wins over a variable, a `TRACES_` variable over the generic one; the generic endpoint
//! gets `/v1/traces` for HTTP and not for gRPC; headers are percent-decoded `key=value` pairs;
//! bad values are typed errors that name the variable (and never repeat a header's value). An
//! exporter configured only by variables sends where, how and with what they say.

use std::time::Duration;

use spanbus::Dispatcher;
use spanbus::error::OtlpError;
use spanbus::integrations::otlp::{
    CERTIFICATE_ENV, COMPRESSION_ENV, Compression, DEFAULT_ENDPOINT, ENDPOINT_ENV, HEADERS_ENV,
    OtlpConfig, OtlpExporter, OtlpExporterBuilder, PROTOCOL_ENV, Protocol, TIMEOUT_ENV,
    TRACES_CERTIFICATE_ENV, TRACES_ENDPOINT_ENV, TRACES_HEADERS_ENV, TRACES_PROTOCOL_ENV,
    TRACES_TIMEOUT_ENV,
};

use crate::support::otlp_endpoint::{Answer, Endpoint};

fn with_env(vars: &[(&str, &str)]) -> OtlpExporterBuilder {
    OtlpExporter::builder().environment(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
}

fn resolve(vars: &[(&str, &str)]) -> OtlpConfig {
    with_env(vars).resolve().unwrap()
}

fn env_error(vars: &[(&str, &str)]) -> (&'static str, String) {
    match with_env(vars).resolve() {
        Err(e @ OtlpError::Env { name, .. }) => (name, e.to_string()),
        other => panic!("{vars:?}: expected an Env error, got {other:?}"),
    }
}

#[test]
fn with_nothing_set_the_defaults_apply() {
    let c = resolve(&[]);
    println!("defaults: {c:?}");
    assert_eq!(c.protocol, Protocol::HttpProtobuf);
    assert_eq!(c.endpoint, DEFAULT_ENDPOINT);
    assert!(c.headers.is_empty());
    assert_eq!(c.timeout, Duration::from_secs(10));
    assert_eq!(c.compression, Compression::None);
    assert!(c.tls_ca_pem.is_empty());
    assert!(!c.uses_tls());
}

#[test]
fn the_endpoint_comes_from_the_builder_then_the_traces_variable_then_the_generic_one() {
    let generic = [(ENDPOINT_ENV, "http://collector:4318/")];
    assert_eq!(
        resolve(&generic).endpoint,
        "http://collector:4318/v1/traces"
    );
    let both = [
        (ENDPOINT_ENV, "http://collector:4318"),
        (TRACES_ENDPOINT_ENV, " http://traces:9999/custom "),
    ];
    assert_eq!(
        resolve(&both).endpoint,
        "http://traces:9999/custom",
        "used as is"
    );
    let c = with_env(&both)
        .endpoint("http://builder:1/v1/traces")
        .resolve()
        .unwrap();
    assert_eq!(c.endpoint, "http://builder:1/v1/traces");
    // A blank variable is unset.
    assert_eq!(
        resolve(&[(TRACES_ENDPOINT_ENV, "  "), (ENDPOINT_ENV, "http://c:1")]).endpoint,
        "http://c:1/v1/traces"
    );
    println!("endpoint precedence: builder > {TRACES_ENDPOINT_ENV} > {ENDPOINT_ENV} + /v1/traces");
}

#[test]
fn the_protocol_comes_from_the_builder_then_the_traces_variable_then_the_generic_one() {
    assert_eq!(
        resolve(&[(PROTOCOL_ENV, " HTTP/Protobuf ")]).protocol,
        Protocol::HttpProtobuf
    );
    #[cfg(all(feature = "otlp-json", feature = "otlp-grpc"))]
    {
        let vars = [(PROTOCOL_ENV, "grpc"), (TRACES_PROTOCOL_ENV, "http/json")];
        assert_eq!(resolve(&vars).protocol, Protocol::HttpJson, "traces wins");
        let c = with_env(&vars).protocol(Protocol::Grpc).resolve().unwrap();
        assert_eq!(c.protocol, Protocol::Grpc, "builder wins");
        // gRPC takes the generic endpoint as is (the path is the gRPC method's), and has its
        // own default.
        let grpc = [
            (PROTOCOL_ENV, "grpc"),
            (ENDPOINT_ENV, "http://collector:4317"),
        ];
        assert_eq!(resolve(&grpc).endpoint, "http://collector:4317");
        assert_eq!(
            resolve(&[(PROTOCOL_ENV, "grpc")]).endpoint,
            spanbus::integrations::otlp::DEFAULT_GRPC_ENDPOINT
        );
        println!("protocol precedence: builder > {TRACES_PROTOCOL_ENV} > {PROTOCOL_ENV}");
    }
}

#[test]
fn headers_are_percent_decoded_pairs_the_traces_variable_replaces_the_generic_one_and_the_builder_wins()
 {
    let c = resolve(&[(
        HEADERS_ENV,
        "Authorization=Basic%20cGs6c2s%3D, x-tenant = acme ,,",
    )]);
    assert_eq!(
        c.headers,
        [
            ("authorization".to_owned(), "Basic cGs6c2s=".to_owned()),
            ("x-tenant".to_owned(), "acme".to_owned()),
        ]
    );
    let vars = [
        (HEADERS_ENV, "x-tenant=acme,x-generic=1"),
        (TRACES_HEADERS_ENV, "x-tenant=traces"),
    ];
    let c = resolve(&vars);
    assert_eq!(c.header("x-tenant"), Some("traces"));
    assert_eq!(
        c.header("x-generic"),
        None,
        "the traces variable replaces the generic one"
    );
    let c = with_env(&vars)
        .header("X-Tenant", "builder")
        .header("x-extra", "2")
        .resolve()
        .unwrap();
    assert_eq!(c.header("x-tenant"), Some("builder"));
    assert_eq!(c.header("x-extra"), Some("2"));
    let shown = format!("{c:?}");
    println!("resolved with headers: {shown}");
    assert!(!shown.contains("builder"), "Debug shows header names only");
}

#[test]
fn the_timeout_is_milliseconds_and_the_builders_export_timeout_wins() {
    assert_eq!(
        resolve(&[(TIMEOUT_ENV, "2500")]).timeout,
        Duration::from_millis(2500)
    );
    let vars = [(TIMEOUT_ENV, "2500"), (TRACES_TIMEOUT_ENV, "750")];
    assert_eq!(resolve(&vars).timeout, Duration::from_millis(750));
    let c = with_env(&vars)
        .export_timeout(Duration::from_secs(3))
        .resolve()
        .unwrap();
    assert_eq!(c.timeout, Duration::from_secs(3));
}

#[test]
fn compression_is_gzip_or_none() {
    assert_eq!(
        resolve(&[(COMPRESSION_ENV, "none")]).compression,
        Compression::None
    );
    #[cfg(feature = "otlp-gzip")]
    {
        use spanbus::integrations::otlp::TRACES_COMPRESSION_ENV;
        assert_eq!(
            resolve(&[(COMPRESSION_ENV, "GZIP")]).compression,
            Compression::Gzip
        );
        let vars = [(COMPRESSION_ENV, "gzip"), (TRACES_COMPRESSION_ENV, "none")];
        assert_eq!(resolve(&vars).compression, Compression::None);
        let c = with_env(&[(COMPRESSION_ENV, "gzip")])
            .compression(Compression::None)
            .resolve()
            .unwrap();
        assert_eq!(c.compression, Compression::None, "builder wins");
    }
}

#[test]
fn the_certificate_variable_names_a_pem_file_and_the_builders_ca_replaces_it() {
    let dir = std::env::temp_dir().join(format!("spanbus-otlp-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pki = crate::support::test_pki::TestPki::new();
    let other = crate::support::test_pki::TestPki::new();
    let path = dir.join("ca.pem");
    std::fs::write(&path, &pki.ca_pem).unwrap();
    let path_text = path.to_str().unwrap();

    let c = resolve(&[(CERTIFICATE_ENV, path_text)]);
    assert_eq!(c.tls_ca_pem, pki.ca_pem.as_bytes());
    let c = resolve(&[
        (CERTIFICATE_ENV, "/nonexistent/generic.pem"),
        (TRACES_CERTIFICATE_ENV, path_text),
    ]);
    assert_eq!(c.tls_ca_pem, pki.ca_pem.as_bytes(), "traces wins");
    let c = with_env(&[(CERTIFICATE_ENV, "/nonexistent/ignored.pem")])
        .tls_ca_pem(other.ca_pem.as_bytes())
        .resolve()
        .unwrap();
    assert!(
        c.tls_ca_pem.starts_with(other.ca_pem.as_bytes()),
        "builder wins"
    );
    let c = with_env(&[]).tls_ca_file(&path).resolve().unwrap();
    assert!(c.tls_ca_pem.starts_with(pki.ca_pem.as_bytes()));

    let (name, message) = env_error(&[(CERTIFICATE_ENV, "/nonexistent/ca.pem")]);
    println!("missing CA file: {message}");
    assert_eq!(name, CERTIFICATE_ENV);
    assert!(message.contains("/nonexistent/ca.pem"));
    #[cfg(feature = "otlp-tls")]
    {
        std::fs::write(dir.join("not.pem"), "hello").unwrap();
        let not_pem = dir.join("not.pem");
        let (name, message) = env_error(&[(CERTIFICATE_ENV, not_pem.to_str().unwrap())]);
        println!("not a PEM file: {message}");
        assert_eq!(name, CERTIFICATE_ENV);
        let e = with_env(&[]).tls_ca_pem("garbage").resolve().unwrap_err();
        println!("not a PEM given to tls_ca_pem: {e}");
        assert!(matches!(e, OtlpError::Tls(_)), "{e:?}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_values_are_typed_errors_that_name_the_variable_and_never_a_header_value() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[(PROTOCOL_ENV, "xml")], PROTOCOL_ENV),
        (&[(TRACES_PROTOCOL_ENV, "http")], TRACES_PROTOCOL_ENV),
        (&[(TIMEOUT_ENV, "ten")], TIMEOUT_ENV),
        (&[(TRACES_TIMEOUT_ENV, "0")], TRACES_TIMEOUT_ENV),
        (&[(TIMEOUT_ENV, "-5")], TIMEOUT_ENV),
        (&[(COMPRESSION_ENV, "brotli")], COMPRESSION_ENV),
        (&[(ENDPOINT_ENV, "collector:4318")], ENDPOINT_ENV),
        (
            &[(TRACES_ENDPOINT_ENV, "ftp://collector/v1/traces")],
            TRACES_ENDPOINT_ENV,
        ),
        (
            &[(HEADERS_ENV, "authorization=Bearer%20s3cr3t,oops")],
            HEADERS_ENV,
        ),
        (&[(HEADERS_ENV, "authorization=s3cr3t%zz")], HEADERS_ENV),
        (
            &[(TRACES_HEADERS_ENV, "bad name=s3cr3t")],
            TRACES_HEADERS_ENV,
        ),
        (&[(HEADERS_ENV, "x-ok=s3cr3t%0A")], HEADERS_ENV),
    ];
    for (vars, expected) in cases {
        let (name, message) = env_error(vars);
        println!("{vars:?} -> {message}");
        assert_eq!(name, *expected, "{vars:?}");
        assert!(
            message.starts_with(&format!("invalid {expected}: ")),
            "{message}"
        );
        assert!(
            !message.contains("s3cr3t"),
            "a header value leaked: {message}"
        );
    }

    let e = OtlpExporter::builder()
        .endpoint("ftp://collector")
        .resolve()
        .unwrap_err();
    println!("{e}");
    assert!(matches!(e, OtlpError::Endpoint { .. }), "{e:?}");
    let e = OtlpExporter::builder()
        .environment(Vec::<(String, String)>::new())
        .header("bad name", "s3cr3t")
        .resolve()
        .unwrap_err();
    println!("{e}");
    assert!(matches!(e, OtlpError::Header { .. }), "{e:?}");
    assert!(!e.to_string().contains("s3cr3t"));
}

#[cfg(not(all(
    feature = "otlp-json",
    feature = "otlp-grpc",
    feature = "otlp-tls",
    feature = "otlp-gzip"
)))]
#[test]
fn asking_for_a_transport_whose_feature_is_off_is_a_typed_error_naming_the_feature() {
    let off = |b: OtlpExporterBuilder, feature: &str| {
        let e = b.resolve().unwrap_err();
        println!("{e}");
        assert!(
            matches!(e, OtlpError::FeatureDisabled { feature: f, .. } if f == feature),
            "{e:?}"
        );
    };
    #[cfg(not(feature = "otlp-json"))]
    off(with_env(&[(PROTOCOL_ENV, "http/json")]), "otlp-json");
    #[cfg(not(feature = "otlp-grpc"))]
    off(with_env(&[]).protocol(Protocol::Grpc), "otlp-grpc");
    #[cfg(not(feature = "otlp-tls"))]
    off(
        with_env(&[]).endpoint("https://collector/v1/traces"),
        "otlp-tls",
    );
    #[cfg(not(feature = "otlp-gzip"))]
    off(with_env(&[]).compression(Compression::Gzip), "otlp-gzip");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exporter_configured_only_by_variables_sends_where_and_how_they_say() {
    let endpoint = Endpoint::start(|_, _| Answer::ok()).await;
    let base = endpoint.url().trim_end_matches("/v1/traces").to_owned();
    let mut vars = vec![
        (ENDPOINT_ENV.to_owned(), base),
        (
            HEADERS_ENV.to_owned(),
            "x-tenant=acme,authorization=Bearer%20t0k3n".to_owned(),
        ),
        (TIMEOUT_ENV.to_owned(), "4000".to_owned()),
    ];
    if cfg!(feature = "otlp-json") {
        vars.push((PROTOCOL_ENV.to_owned(), "http/json".to_owned()));
    }
    if cfg!(feature = "otlp-gzip") {
        vars.push((COMPRESSION_ENV.to_owned(), "gzip".to_owned()));
    }
    let exporter = OtlpExporter::builder()
        .environment(vars.clone())
        .scheduled_delay(Duration::from_millis(5))
        .build()
        .unwrap();
    let handle = exporter.handle();
    let d = Dispatcher::new("env-configured").unwrap();
    d.add_handler(exporter).unwrap();
    for i in 0..20 {
        d.span(format!("configured-{i}")).in_scope(|| ());
    }
    d.flush().await;
    let report = d.shutdown(Duration::from_secs(5)).await;
    assert!(report.is_clean(), "{report:?}");

    let requests = endpoint.requests();
    let r = &requests[0];
    println!(
        "variables {:?} -> {} requests to {} with content-type {:?}, content-encoding {:?}, \
         x-tenant {:?}; {:?}",
        vars.iter().map(|(k, _)| k).collect::<Vec<_>>(),
        requests.len(),
        handle.endpoint(),
        r.header("content-type"),
        r.header("content-encoding"),
        r.header("x-tenant"),
        handle.stats()
    );
    assert_eq!(handle.endpoint(), endpoint.url());
    assert_eq!(r.path, "/v1/traces");
    assert_eq!(r.header("x-tenant"), Some("acme"));
    assert_eq!(r.header("authorization"), Some("Bearer t0k3n"));
    let content_type = if cfg!(feature = "otlp-json") {
        "application/json"
    } else {
        "application/x-protobuf"
    };
    assert_eq!(r.header("content-type"), Some(content_type));
    let encoding = cfg!(feature = "otlp-gzip").then_some("gzip");
    assert_eq!(r.header("content-encoding"), encoding);
    assert!(requests.iter().all(|r| r.decoded));
    assert_eq!(endpoint.accepted_spans().len(), 20);
    assert_eq!(handle.stats().exported, 20);
}

#[test]
fn the_builders_debug_shows_header_names_not_their_values() {
    let builder = OtlpExporter::builder()
        .langfuse(spanbus::integrations::otlp::Langfuse::new(
            "pk-lf-1234",
            "sk-lf-secret",
        ))
        .header("x-api-key", "key-value-9");
    let shown = format!("{builder:?}");
    println!("{shown}");
    assert!(shown.contains("authorization") && shown.contains("x-api-key"));
    for secret in ["sk-lf-secret", "key-value-9", "Basic "] {
        assert!(!shown.contains(secret), "{secret:?} in {shown}");
    }
}
