//! User text in the HTML report (span names, arguments, tags, event fields, the title) cannot
//! inject markup or script: the raw file has no stray tags, and the embedded data still holds
//! the original text exactly.

use serde::Serialize;
use serde_json::{Value, json};
use spanbus::handlers::{HtmlReport, HtmlReportOptions};
use spanbus::{Dispatcher, Event};

const EVIL_NAME: &str =
    "</script><img src=x onerror=\"document.body.setAttribute('data-pwned','1')\">";

#[derive(Serialize)]
struct Note {
    text: String,
}

impl Event for Note {
    const NAME: &'static str = "Note";
}

#[tokio::test]
async fn hostile_names_and_fields_stay_text() {
    let path = std::env::temp_dir()
        .join(format!("spanbus-test-{}", std::process::id()))
        .join("escaping.html");
    let d = Dispatcher::new("html.escaping").unwrap();
    let report = HtmlReport::with_options(
        &path,
        HtmlReportOptions::new().title("<b>bold</b> & \"quoted\""),
    )
    .unwrap();
    let status = report.status();
    d.add_handler(report).unwrap();

    let args = json!({"q": "<!-- <script>alert(1)</script>", "sep": "a\u{2028}b\u{2029}c"});
    d.span(EVIL_NAME)
        .args(args.clone())
        .tag("who", "<svg onload=alert(2)>")
        .in_scope(|| {
            d.event(Note {
                text: "</SCRIPT ><iframe src=javascript:alert(3)>".into(),
            })
            .now()
            .unwrap();
        });
    let report = d.shutdown(std::time::Duration::from_secs(5)).await;
    assert!(report.is_clean());
    assert_eq!(status.failed_writes(), 0);

    let page = std::fs::read_to_string(&path).unwrap();
    let lower = page.to_lowercase();
    // Only the page's own two script elements open and close.
    assert_eq!(lower.matches("<script").count(), 2, "{page}");
    assert_eq!(lower.matches("</script").count(), 2, "{page}");
    for bad in [
        "<img", "<svg", "<iframe", "<!--", "<b>", "\u{2028}", "\u{2029}",
    ] {
        assert!(!lower.contains(bad), "raw {bad:?} in the page");
    }
    assert!(page.contains("<title>&lt;b&gt;bold&lt;/b&gt; &amp; &quot;quoted&quot;</title>"));

    // The data block parses back to exactly the original strings.
    let start = page.find("id=\"spanbus-data\">").unwrap() + "id=\"spanbus-data\">".len();
    let end = start + page[start..].find("</script>").unwrap();
    let data: Value = serde_json::from_str(&page[start..end]).unwrap();
    let span = &data["spans"][0];
    assert_eq!(span["name"], EVIL_NAME);
    assert_eq!(span["args"], args);
    assert_eq!(span["tags"]["who"], "<svg onload=alert(2)>");
    assert_eq!(
        span["events"][0]["data"]["text"],
        "</SCRIPT ><iframe src=javascript:alert(3)>"
    );
    std::fs::remove_file(&path).unwrap();
}
