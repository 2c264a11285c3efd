struct Connection;

#[spanbus::span]
fn query(conn: &Connection, sql: &str) -> usize {
    let _ = conn;
    sql.len()
}

#[spanbus::span(skip(sql))]
async fn query_async(sql: String, pool: Connection) -> usize {
    let _ = pool;
    sql.len()
}

fn main() {
    query(&Connection, "select 1");
    let _ = query_async("select 1".into(), Connection);
}
