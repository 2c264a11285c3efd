//! On a runtime built without tokio's time driver the exporter's task could not run (its
//! batching, backoff and request timeouts need timers): `build()` says so instead of starting
//! a task that panics and exports nothing.

use spanbus::error::OtlpError;
use spanbus::integrations::otlp::OtlpExporter;

#[test]
fn build_returns_no_time_driver_on_a_runtime_without_timers() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let built = rt.block_on(async {
        OtlpExporter::builder()
            .endpoint("http://127.0.0.1:9/v1/traces")
            .build()
    });
    let error = built.expect_err("a runtime without timers cannot run the exporter");
    println!("build() without a time driver: {error}");
    assert_eq!(error, OtlpError::NoTimeDriver);
    assert!(error.to_string().contains("enable_time"), "{error}");

    // With timers (and the IO driver for its connections) the same build succeeds.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        OtlpExporter::builder()
            .endpoint("http://127.0.0.1:9/v1/traces")
            .build()
    })
    .unwrap();
}
