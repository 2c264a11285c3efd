struct Connection {
    fd: i32,
}

#[spanbus::span(ret)]
fn connect() -> Connection {
    Connection { fd: 3 }
}

#[derive(serde::Serialize)]
struct NotFound;

impl std::fmt::Display for NotFound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not found")
    }
}

#[spanbus::span(ret)]
async fn open(path: String) -> Result<Connection, NotFound> {
    let _ = path;
    Err(NotFound)
}

fn main() {
    let _ = connect().fd;
    let _ = open(String::new());
}
