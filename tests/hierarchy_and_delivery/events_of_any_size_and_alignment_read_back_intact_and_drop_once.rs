//! A record stores its event inline, in the same shared allocation as its envelope. Events of
//! any size and alignment (zero-sized, over-aligned, large, owning heap data) read back intact
//! through `Record::event`, `kind()` and `to_json()`, on every handler; each event is dropped
//! exactly once, after the last handler is done with it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use spanbus::{Dispatcher, Event, Handler, Record, RecordKind};

#[derive(Serialize, Debug, PartialEq, Clone, Copy)]
struct Empty;
impl Event for Empty {
    const NAME: &'static str = "Empty";
}

#[derive(Serialize, Debug, PartialEq, Clone, Copy)]
#[repr(align(64))]
struct Aligned {
    v: u8,
}
impl Event for Aligned {
    const NAME: &'static str = "Aligned";
}

#[derive(Serialize, Debug, PartialEq, Clone)]
struct Large {
    words: Vec<u64>,
    fixed: [u64; 32],
    text: String,
}
impl Event for Large {
    const NAME: &'static str = "Large";
}

static DROPPED: AtomicUsize = AtomicUsize::new(0);

#[derive(Serialize)]
struct Counted {
    n: u64,
}
impl Event for Counted {
    const NAME: &'static str = "Counted";
}
impl Drop for Counted {
    fn drop(&mut self) {
        DROPPED.fetch_add(1, Ordering::SeqCst);
    }
}

/// What one handler saw, checked field by field.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<String>>>);

impl Handler for Seen {
    async fn handle(&mut self, record: &Record) {
        let RecordKind::Event(any) = record.kind() else {
            return;
        };
        assert_eq!(any.name(), record.class_name());
        assert!(record.is_event());
        let line = if let Some(e) = record.event::<Empty>() {
            format!("empty {e:?}")
        } else if let Some(e) = record.event::<Aligned>() {
            assert_eq!(std::ptr::from_ref(e) as usize % 64, 0, "over-aligned event");
            format!("aligned {}", e.v)
        } else if let Some(e) = record.event::<Large>() {
            assert_eq!(e.fixed[31], 31);
            format!("large {} {} {}", e.words.len(), e.words[999], e.text)
        } else if let Some(e) = record.event::<Counted>() {
            format!("counted {}", e.n)
        } else {
            format!("other {}", record.class_name())
        };
        let json = record.to_json().unwrap();
        assert_eq!(json["class_name"], record.class_name());
        assert_eq!(json["dispatcher"], "inline");
        self.0.lock().unwrap().push(line);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_read_back_intact_on_every_handler_and_drop_once() {
    let d = Dispatcher::new("inline").unwrap();
    let seen: Vec<Seen> = (0..3).map(|_| Seen::default()).collect();
    for s in &seen {
        d.add_handler(s.clone()).unwrap();
    }
    let large = Large {
        words: (0..1000).collect(),
        fixed: std::array::from_fn(|i| i as u64),
        text: "inline".repeat(10),
    };
    for round in 0..50u64 {
        d.event(Empty).await.unwrap();
        d.event(Aligned { v: round as u8 }).await.unwrap();
        d.event(large.clone()).now().unwrap();
        d.event(Counted { n: round }).await.unwrap();
    }
    d.flush().await;
    d.shutdown(std::time::Duration::from_secs(5)).await;
    for s in &seen {
        let lines = s.0.lock().unwrap();
        assert_eq!(lines.len(), 200);
        for (round, chunk) in lines.chunks(4).enumerate() {
            assert_eq!(chunk[0], "empty Empty");
            assert_eq!(chunk[1], format!("aligned {round}"));
            assert_eq!(chunk[2], format!("large 1000 999 {}", "inline".repeat(10)));
            assert_eq!(chunk[3], format!("counted {round}"));
        }
    }
    // Three handlers shared each record; each event was dropped once, with the last of them.
    assert_eq!(DROPPED.load(Ordering::SeqCst), 50);
}
