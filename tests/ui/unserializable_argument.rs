struct Connection;

#[spanbus::span]
fn query(conn: &Connection, sql: &str) -> usize {
    let _ = conn;
    sql.len()
}

fn main() {
    query(&Connection, "select 1");
}
