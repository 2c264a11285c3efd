#[derive(Debug)]
struct Opaque;

#[spanbus::span]
fn fallible(n: u32) -> Result<u32, Opaque> {
    if n == 0 { Err(Opaque) } else { Ok(n) }
}

fn main() {
    let _ = fallible(1);
}
