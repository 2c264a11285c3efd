//! With several lossless handlers, a handler's batch borrows its records from the channel's
//! queue instead of holding a reference count per record. A handler removed from outside while
//! it is in the middle of such a batch must still read every record of it whole, even after
//! the other handlers have moved on and the queue has let go of those records; and the others
//! lose nothing. (CI also runs this test under AddressSanitizer, which turns any read of a
//! freed record into a failure.)

use std::sync::{Arc, Mutex};

use serde::Serialize;
use spanbus::{Dispatcher, Handler, Record};
use tokio::sync::{Notify, oneshot};

#[derive(Serialize)]
struct Numbered {
    n: u64,
    text: String,
}
impl spanbus::Event for Numbered {
    const NAME: &'static str = "Numbered";
}

fn numbered(n: u64) -> Numbered {
    Numbered {
        n,
        text: format!("record number {n} with some heap text"),
    }
}

/// Reads a record and checks that it is whole: its number and its heap text agree.
fn read(record: &Record) -> u64 {
    let event = record.event::<Numbered>().expect("a Numbered event");
    assert_eq!(
        event.text,
        format!("record number {} with some heap text", event.n)
    );
    event.n
}

#[derive(Clone, Default)]
struct Collect(Arc<Mutex<Vec<u64>>>);

impl Handler for Collect {
    async fn handle(&mut self, record: &Record) {
        let n = read(record);
        self.0.lock().unwrap().push(n);
    }
}

/// Stops inside its first record until released, then reads on.
struct Stalls {
    holding: Option<oneshot::Sender<()>>,
    release: Arc<Notify>,
    read: Arc<Mutex<Vec<u64>>>,
    closed: Option<oneshot::Sender<()>>,
}

impl Handler for Stalls {
    async fn handle(&mut self, record: &Record) {
        if let Some(holding) = self.holding.take() {
            let _ = holding.send(());
            self.release.notified().await;
        }
        // Read only after the wait: the record must still be alive and whole.
        let n = read(record);
        self.read.lock().unwrap().push(n);
    }

    async fn close(&mut self) {
        if let Some(closed) = self.closed.take() {
            let _ = closed.send(());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_removed_in_the_middle_of_its_batch_reads_every_record_of_it_whole() {
    let d = Dispatcher::builder("lent")
        .capacity(std::num::NonZeroUsize::new(64).unwrap())
        .build()
        .unwrap();
    let (first, second) = (Collect::default(), Collect::default());
    d.add_handler(first.clone()).unwrap();
    d.add_handler(second.clone()).unwrap();
    let (holding_tx, holding_rx) = oneshot::channel();
    let (closed_tx, closed_rx) = oneshot::channel();
    let release = Arc::new(Notify::new());
    let stalled_read = Arc::new(Mutex::new(Vec::new()));
    let stalled = d
        .add_handler(Stalls {
            holding: Some(holding_tx),
            release: Arc::clone(&release),
            read: Arc::clone(&stalled_read),
            closed: Some(closed_tx),
        })
        .unwrap();

    // Several records at once, so that the stalled handler's batch holds more than one.
    for n in 0..32 {
        d.event(numbered(n)).now().unwrap();
    }
    holding_rx.await.unwrap();
    assert!(d.remove_handler(stalled));

    // The others move on far past the stalled batch: the queue lets go of those records.
    for n in 32..10_000 {
        d.event(numbered(n)).await.unwrap();
    }
    d.flush().await;

    release.notify_one();
    closed_rx.await.unwrap();

    let read = stalled_read.lock().unwrap().clone();
    assert!(!read.is_empty(), "the stalled handler read its batch");
    let expected: Vec<u64> = (0..read.len() as u64).collect();
    assert_eq!(
        read, expected,
        "the stalled batch is the first records, in order"
    );
    let all: Vec<u64> = (0..10_000).collect();
    assert_eq!(*first.0.lock().unwrap(), all);
    assert_eq!(*second.0.lock().unwrap(), all);
    println!(
        "stalled handler read {} lent records whole after removal",
        read.len()
    );
}
