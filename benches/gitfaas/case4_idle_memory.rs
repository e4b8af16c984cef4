//! Case 4, idle RSS serving `examples/hello`.

use std::path::Path;
use std::time::Duration;

use crate::support::{mb, status_kb, Bench, Res, Server};

pub(crate) async fn case_idle_memory(b: &mut Bench) -> Res<()> {
    eprintln!("bench: case 4: idle memory serving examples/hello");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello");
    let mut server = Server::start(b, "case4", &["--dir", &dir.display().to_string()])?;
    server.ready(&b.http, Duration::from_secs(60)).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss = status_kb(server.pid(), "VmRSS");
    let hwm = status_kb(server.pid(), "VmHWM");
    let threads = std::fs::read_to_string(format!("/proc/{}/status", server.pid()))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Threads:").map(|v| v.trim().to_string()))
        .unwrap_or_default();
    server.stop();
    eprintln!(
        "bench: case 4: RSS {:.1} MB, peak {:.1} MB, {threads} threads",
        mb(rss),
        mb(hwm)
    );
    b.row(
        "4 idle memory",
        "gitfaas RSS serving examples/hello, 3 s after ready",
        format!("{:.1} MB ({threads} threads)", mb(rss)),
        "< 20 MB",
        Some(mb(rss) < 20.0),
    );
    Ok(())
}
