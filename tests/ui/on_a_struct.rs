#[spanbus::span]
struct Retriever {
    k: usize,
}

fn main() {
    let _ = Retriever { k: 1 }.k;
}
