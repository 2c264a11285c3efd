//! Reading a JSON Lines file with bad lines in the middle: every good line comes back as a
//! record, every bad line as an error naming its 1-based number.

use spanbus::jsonl::{self, JsonKind};

fn good(n: u32, class_name: &str, extra: &str) -> String {
    format!(
        r#"{{"id_":"67e55044-10b1-426f-9247-bb680e5fe{n:03x}","timestamp":"2026-01-01T00:00:00.{n:06}Z","span_id":"00f067aa0ba902b7","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","tags":{{}},"class_name":"{class_name}","dispatcher":"app"{extra}}}"#
    )
}

#[test]
fn bad_lines_in_the_middle_are_reported_and_skipped() {
    let mut bytes = Vec::new();
    let mut line = |b: &[u8]| {
        bytes.extend_from_slice(b);
        bytes.push(b'\n');
    };
    line(
        good(
            1,
            "SpanEnter",
            r#","parent_span_id":null,"name":"query","args":null"#,
        )
        .as_bytes(),
    ); // 1
    line(b"{\"id_\": "); // 2: truncated
    line(good(2, "QueryStartEvent", r#","query":"hi""#).as_bytes()); // 3
    line(br#"{"timestamp":"2026-01-01T00:00:00Z","class_name":"X"}"#); // 4: no id_
    line(b""); // 5: blank, skipped silently
    line(b"[1, 2, 3]"); // 6: not an object
    line(b"{\"id_\":\"\xff\xfe\"}"); // 7: not UTF-8
    line(good(3, "SpanExit", "").as_bytes()); // 8
    line(good(4, "SpanEnter", "").as_bytes()); // 9: enter without a name
    line(good(5, "SpanDrop", r#","reason":"Cancelled","err_str":"""#).as_bytes()); // 10
    line(br#"{"id_":"67e55044-10b1-426f-9247-bb680e5fe0c8","timestamp":"yesterday","class_name":"X"}"#); // 11
    line(br#"{"id_":"67e55044-10b1-426f-9247-bb680e5fe0c8","timestamp":"2026-01-01T00:00:00","span_id":"XYZ","class_name":"X"}"#); // 12
    bytes
        .extend_from_slice(good(6, "QueryEndEvent", r#","query":"hi","response":null"#).as_bytes()); // 13, no final newline

    let read = jsonl::from_reader(&bytes[..]).unwrap();
    for e in &read.errors {
        println!("{e}");
    }
    let lines: Vec<usize> = read.errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, [2, 4, 6, 7, 9, 11, 12]);
    let names: Vec<&str> = read.records.iter().map(|r| r.class_name.as_str()).collect();
    assert_eq!(
        names,
        [
            "SpanEnter",
            "QueryStartEvent",
            "SpanExit",
            "SpanDrop",
            "QueryEndEvent"
        ]
    );
    assert!(
        read.errors[1]
            .to_string()
            .starts_with("line 4: missing field `id_`")
    );
    assert!(
        read.errors[4].to_string().contains("name"),
        "{}",
        read.errors[4]
    );
    assert!(
        read.errors[5].to_string().contains("invalid timestamp"),
        "{}",
        read.errors[5]
    );
    assert!(
        read.errors[6].to_string().contains("span_id"),
        "{}",
        read.errors[6]
    );
    assert!(matches!(
        read.records[3].kind,
        JsonKind::SpanDrop(ref d) if d.reason == spanbus::DropReason::Cancelled
    ));
}

#[test]
fn a_file_of_only_bad_lines_gives_no_records_and_one_error_each() {
    let read = jsonl::from_reader(&b"x\ny\n\nz"[..]).unwrap();
    assert!(read.records.is_empty());
    let lines: Vec<usize> = read.errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, [1, 2, 4]);
}
