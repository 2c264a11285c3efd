//! `spanbus::tags_guard`: tags for sync code spanning several statements, restored when the
//! guard is dropped, by scope end or by a panic unwinding through it.

use spanbus::context::Context;

use crate::support::spans::recorded;

fn tags() -> Vec<(String, String)> {
    Context::current()
        .tags()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn the_tag_guard_merges_its_tags_and_restores_the_previous_ones_on_drop() {
    assert!(tags().is_empty());
    {
        let _outer = spanbus::tags_guard([("user.id", "u-1"), ("tier", "pro")]);
        assert_eq!(tags(), pairs(&[("tier", "pro"), ("user.id", "u-1")]));
        {
            let _inner = spanbus::tags_guard([("tier", "free")]);
            assert_eq!(tags(), pairs(&[("tier", "free"), ("user.id", "u-1")]));
        }
        assert_eq!(tags(), pairs(&[("tier", "pro"), ("user.id", "u-1")]));
    }
    assert!(tags().is_empty());
}

#[test]
fn the_tag_guard_is_restored_when_a_panic_unwinds_through_it() {
    let _outer = spanbus::tags_guard([("session.id", "s-9")]);
    let caught = std::panic::catch_unwind(|| {
        let _inner = spanbus::tags_guard([("session.id", "s-10"), ("step", "rerank")]);
        assert_eq!(tags(), pairs(&[("session.id", "s-10"), ("step", "rerank")]));
        panic!("reranker failed");
    });
    assert!(caught.is_err());
    assert_eq!(tags(), pairs(&[("session.id", "s-9")]));
}

#[test]
fn a_tag_guard_dropped_before_a_later_one_ends_both_and_leaves_nothing_behind() {
    let outer = spanbus::tags_guard([("a", "1")]);
    let inner = spanbus::tags_guard([("b", "2")]);
    assert_eq!(tags(), pairs(&[("a", "1"), ("b", "2")]));
    drop(outer); // out of order: restores what it replaced, ending `inner`'s tags too
    assert!(tags().is_empty());
    drop(inner); // ended early: restores nothing, so `a` does not come back
    assert!(tags().is_empty());
    let _again = spanbus::tags_guard([("c", "3")]);
    assert_eq!(tags(), pairs(&[("c", "3")]));
}

#[tokio::test]
async fn records_emitted_under_a_tag_guard_carry_its_tags() {
    let (d, spans, _) = recorded("tags.guard");
    {
        let _tags = spanbus::tags_guard([("user.id", "u-7")]);
        d.span("under_guard").in_scope(|| ());
    }
    d.span("after_guard").in_scope(|| ());
    d.flush().await;
    assert_eq!(spans.one("under_guard").tags["user.id"], "u-7");
    assert!(spans.one("after_guard").tags.is_empty());
}
