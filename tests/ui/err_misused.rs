#[spanbus::span(err)]
fn count(n: u32) -> u32 {
    n
}

#[derive(Debug)]
struct Opaque;

impl std::fmt::Display for Opaque {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("opaque")
    }
}

#[spanbus::span(err)]
fn fallible(n: u32) -> Result<u32, Opaque> {
    if n == 0 { Err(Opaque) } else { Ok(n) }
}

struct Store;

#[spanbus::span(ret)]
impl Store {
    fn get(&self) -> u32 {
        1
    }
}

#[spanbus::span(ret)]
fn numbers() -> impl futures::Stream<Item = u32> {
    futures::stream::iter([1, 2])
}

fn main() {
    let _ = count(1);
    let _ = fallible(1);
    let _ = Store.get();
    let _ = numbers();
}
